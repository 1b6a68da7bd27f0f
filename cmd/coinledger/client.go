package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
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

// clientOptions say how a command reaches a gRPC server. With no address the
// command starts a server in its own process (on --database-url or the
// private PostgreSQL) and talks to it over loopback, through the same
// listener, interceptors and authentication as any caller.
type clientOptions struct {
	addr, token, caFile string
	certFile, keyFile   string // the client's certificate, for a server that asks for one
}

func (o *clientOptions) register(fs *flag.FlagSet, scopes string) {
	fs.StringVar(&o.addr, "addr", os.Getenv("COINLEDGER_ADDR"), "server address; empty starts a server in this process (env COINLEDGER_ADDR)")
	secretFlag(fs, &o.token, "token", "COINLEDGER_TOKEN", "bearer `token` with the scopes "+scopes+"; needed with --addr")
	fs.StringVar(&o.caFile, "tls-ca", os.Getenv("COINLEDGER_TLS_CA"), "CA bundle (PEM) to verify the server with; empty: plaintext")
	fs.StringVar(&o.certFile, "client-cert", os.Getenv("COINLEDGER_CLIENT_CERT"), "client certificate (PEM) for a server that requires mutual TLS; needs --tls-ca")
	fs.StringVar(&o.keyFile, "client-key", os.Getenv("COINLEDGER_CLIENT_KEY"), "the client certificate's private key (PEM)")
}

// dial connects to the server the options name, or starts one in this
// process (local; nil with --addr); closeAll closes the connection and stops
// whatever was started, server first.
func (c *common) dial(ctx context.Context, o *clientOptions) (conn *grpc.ClientConn, local *api.Server, closeAll func(), err error) {
	addr, token := o.addr, o.token
	stop := func() {}
	if addr == "" {
		token = newToken()
		tokens, err := api.ParseTokens(strings.NewReader("local iap,gifting,creator-portal,finance,admin,commerce,treasury " + token))
		if err != nil {
			return nil, nil, nil, err
		}
		// A line per request would bury the command's own output: the
		// server it starts logs warnings and errors only, unless asked for
		// debug.
		srvLog := c.log
		if c.level > slog.LevelDebug {
			srvLog = slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: max(c.level, slog.LevelWarn)}))
		}
		// Its after-check's Verify may run longer than a server allows by default.
		srv, _, closeServer, err := c.apiServer(ctx, api.Config{Tokens: tokens, Logger: srvLog, MaxDeadline: loadgen.VerifyTimeout})
		if err != nil {
			return nil, nil, nil, err
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			closeServer()
			return nil, nil, nil, err
		}
		go srv.Serve(lis)
		local = srv
		stop = func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			closeServer()
		}
		addr = lis.Addr().String()
	} else if token == "" {
		return nil, nil, nil, errors.New("--token (or COINLEDGER_TOKEN) is required with --addr")
	}
	creds, err := o.credentials()
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	dial := append(api.DialOptions(), grpc.WithTransportCredentials(creds), grpc.WithPerRPCCredentials(api.Bearer{Token: token, Plaintext: o.caFile == ""}))
	conn, err = grpc.NewClient(addr, dial...)
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	return conn, local, func() { conn.Close(); stop() }, nil
}

// credentials are plaintext, or TLS verified against --tls-ca with the
// client's certificate when one is given.
func (o *clientOptions) credentials() (credentials.TransportCredentials, error) {
	if o.caFile == "" {
		if o.certFile != "" || o.keyFile != "" {
			return nil, errors.New("--client-cert and --client-key need --tls-ca")
		}
		return insecure.NewCredentials(), nil
	}
	pool, err := certPool("--tls-ca", o.caFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if o.certFile != "" || o.keyFile != "" {
		pair, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--client-cert/--client-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(cfg), nil
}

// newToken returns a random bearer token for a server this process starts.
func newToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}
