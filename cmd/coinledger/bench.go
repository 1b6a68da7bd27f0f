package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/coinledger/coinledger/api"
	"github.com/coinledger/coinledger/internal/loadgen"
)

type benchOptions struct {
	addr, token, caFile string
	workload            string
	concurrency         int
	requests            int
	duration            time.Duration
	viewers, accounts   int
}

func (o *benchOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.addr, "addr", os.Getenv("COINLEDGER_ADDR"), "server address; empty starts a private PostgreSQL and a server in this process (env COINLEDGER_ADDR)")
	fs.StringVar(&o.token, "token", os.Getenv("COINLEDGER_TOKEN"), "bearer token with the scopes iap, gifting, creator-portal, finance, admin and treasury; needed with --addr (env COINLEDGER_TOKEN)")
	fs.StringVar(&o.caFile, "tls-ca", os.Getenv("COINLEDGER_TLS_CA"), "CA bundle (PEM) to verify the server with; empty: plaintext")
	fs.StringVar(&o.workload, "workload", loadgen.GiftHot, strings.Join(loadgen.Workloads, ", "))
	fs.IntVar(&o.concurrency, "c", 32, "concurrent callers")
	fs.IntVar(&o.requests, "n", 0, "stop after this many requests (0: run for -d)")
	fs.DurationVar(&o.duration, "d", 30*time.Second, "how long to run when -n is 0")
	fs.IntVar(&o.viewers, "viewers", 1000, "gift-hot, mixed: viewers, each buying coins before the run")
	fs.IntVar(&o.accounts, "accounts", 1000, "transfer workloads: accounts, each funded before the run")
}

// cmdBench runs a workload against a server, prints what it measured, and
// exits 1 if a request failed, an acknowledged write is missing or the ledger
// does not verify.
func cmdBench(ctx context.Context, c *common, o *benchOptions, args []string, stdout io.Writer) (int, error) {
	if len(args) > 0 {
		return exitError, fmt.Errorf("unexpected arguments %q", args)
	}
	if err := loadgen.CheckWorkload(o.workload); err != nil {
		return exitError, err
	}
	addr, token, creds := o.addr, o.token, insecure.NewCredentials()
	if addr == "" {
		if c.databaseURL != "" {
			c.log.Warn("bench: the server runs on --database-url; the figure includes whatever else that database does")
		}
		token = newToken()
		tokens, err := api.ParseTokens(strings.NewReader("bench iap,gifting,creator-portal,finance,admin,treasury " + token))
		if err != nil {
			return exitError, err
		}
		srv, closeAll, err := c.apiServer(ctx, api.Config{Tokens: tokens, Logger: c.log})
		if err != nil {
			return exitError, err
		}
		defer closeAll()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return exitError, err
		}
		go srv.Serve(lis)
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		}()
		addr = lis.Addr().String()
	} else if token == "" {
		return exitError, errors.New("--token (or COINLEDGER_TOKEN) is required with --addr")
	}
	if o.caFile != "" {
		pool, err := certPool("--tls-ca", o.caFile)
		if err != nil {
			return exitError, err
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithPerRPCCredentials(api.Bearer{Token: token, Plaintext: o.caFile == ""}))
	if err != nil {
		return exitError, err
	}
	defer conn.Close()
	rep, err := loadgen.Run(ctx, loadgen.Config{Conn: conn, Workload: o.workload, Concurrency: o.concurrency, Requests: o.requests,
		Duration: o.duration, Viewers: o.viewers, Accounts: o.accounts, Progress: c.stderr})
	if rep != nil {
		rep.WriteTo(stdout)
	}
	if err != nil {
		return exitError, err
	}
	if !rep.Clean() {
		return exitViolations, errors.New("requests failed, acknowledged writes are missing or the ledger does not verify")
	}
	return exitOK, nil
}

// newToken returns a random bearer token for a server this process starts.
func newToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}
