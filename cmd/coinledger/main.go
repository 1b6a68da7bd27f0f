// Command coinledger runs the coinledger ledger: migrate, verify and demo.
// With no --database-url it runs on a private PostgreSQL it starts itself.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/coinledger/coinledger/internal/gctune"
)

func main() {
	gctune.Apply()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
