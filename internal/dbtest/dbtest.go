// Package dbtest gives tests a real, migrated database: a fresh database per
// test in one throwaway PostgreSQL cluster per test binary (started with
// pgembed unless DATABASE_URL names a server), and the same on CockroachDB
// when COCKROACH_URL or COCKROACH_BINARY is set.
package dbtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/cockroach-go/v2/testserver"
	"github.com/jackc/pgx/v5"

	"github.com/coinledger/coinledger/internal/pgembed"
	"github.com/coinledger/coinledger/ledger/postgres"
)

// Backend is a database server tests can create databases on.
type Backend struct {
	Name string
	url  string // a database on the server to connect to for CREATE DATABASE
}

var (
	pg       *Backend
	pgServer *pgembed.Server
	crdbOnce sync.Once
	crdb     *Backend
	crdbErr  error
	crdbSrv  testserver.TestServer
	counter  atomic.Int64
	cleanups []func()
)

// Main runs the tests of a package that needs databases: it starts the
// throwaway cluster first and stops it after.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		pg = &Backend{Name: "postgres", url: u}
	} else {
		// Clusters that test binaries which panicked left running.
		for _, prefix := range []string{"coinledger-test-", "coinledger-bench-"} {
			pgembed.RemoveAbandoned(filepath.Join(os.TempDir(), prefix+"*"))
		}
		dir, err := pgembed.MkdirTemp("coinledger-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "dbtest:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pgServer, err = pgembed.Start(ctx, pgembed.Config{
			DataDir: dir + "/data", Throwaway: true, Logger: quiet(),
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "dbtest: start PostgreSQL:", err)
			return 1
		}
		defer pgServer.Stop()
		pg = &Backend{Name: "postgres", url: pgServer.URL("postgres")}
	}
	defer func() {
		if crdbSrv != nil {
			crdbSrv.Stop()
		}
		for _, f := range cleanups {
			f()
		}
	}()
	return m.Run()
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Postgres is the PostgreSQL backend.
func Postgres() *Backend { return pg }

// Cockroach is the CockroachDB backend, or skips t when none is configured.
func Cockroach(t testing.TB) *Backend {
	crdbOnce.Do(func() {
		if u := os.Getenv("COCKROACH_URL"); u != "" {
			crdb = &Backend{Name: "cockroach", url: u}
			return
		}
		if bin := os.Getenv("COCKROACH_BINARY"); bin != "" {
			crdbSrv, crdbErr = testserver.NewTestServer(testserver.CockroachBinaryPathOpt(bin))
			if crdbErr == nil {
				crdb = &Backend{Name: "cockroach", url: crdbSrv.PGURL().String()}
			}
		}
	})
	if crdbErr != nil {
		t.Fatalf("start CockroachDB: %v", crdbErr)
	}
	if crdb == nil {
		t.Skip("CockroachDB suite skipped: set COCKROACH_URL or COCKROACH_BINARY to run it")
	}
	return crdb
}

// Backends runs f once per configured backend as a subtest.
func Backends(t *testing.T, f func(t *testing.T, b *Backend)) {
	t.Run("postgres", func(t *testing.T) { f(t, Postgres()) })
	t.Run("cockroach", func(t *testing.T) { f(t, Cockroach(t)) })
}

// NewDatabase creates and migrates a fresh database and returns the owner's
// URL for it.
func (b *Backend) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), counter.Add(1))
	conn, err := pgx.Connect(ctx, b.url)
	if err != nil {
		t.Fatalf("connect to %s: %v", b.Name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	u, err := url.Parse(b.url)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	if _, err := postgres.Migrate(ctx, u.String(), quiet()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return u.String()
}

// Open returns a store on a fresh database, closed when the test ends,
// and the owner's URL (for tampering behind the service's back).
func (b *Backend) Open(t testing.TB, cfg postgres.Config) (*postgres.DB, string) {
	t.Helper()
	u := b.NewDatabase(t)
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	db, err := postgres.Open(context.Background(), u, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(db.Close)
	return db, u
}

var (
	durableOnce sync.Once
	durable     *Backend
	durableErr  error
)

// Durable is a PostgreSQL cluster with production durability (fsync and
// synchronous commit on), started on first use, for benchmarks.
func Durable(t testing.TB) *Backend {
	durableOnce.Do(func() {
		dir, err := pgembed.MkdirTemp("coinledger-bench-")
		if err != nil {
			durableErr = err
			return
		}
		srv, err := pgembed.Start(context.Background(), pgembed.Config{DataDir: dir + "/data", Logger: quiet()})
		if err != nil {
			durableErr = err
			return
		}
		cleanups = append(cleanups, func() { srv.Stop(); os.RemoveAll(dir) })
		durable = &Backend{Name: "postgres-durable", url: srv.URL("postgres")}
	})
	if durableErr != nil {
		t.Fatalf("start durable PostgreSQL: %v", durableErr)
	}
	return durable
}
