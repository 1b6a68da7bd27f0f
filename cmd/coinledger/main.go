// Command coinledger runs the coinledger ledger: migrate, verify, demo,
// serve and bench.
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
	// Go ends a process that writes to a closed pipe on stdout or stderr
	// (`coinledger verify | head`, a log collector restarting) with SIGPIPE
	// at once, leaving its private PostgreSQL running. Ignored, the write
	// fails instead: serve goes on, the other commands stop as if
	// interrupted (run). PostgreSQL ignores SIGPIPE too.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
