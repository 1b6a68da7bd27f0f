package postgres_test

import (
	"context"
	"io/fs"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/internal/syncbuf"
	"github.com/coinledger/coinledger/ledger/postgres"
	"github.com/coinledger/coinledger/migrations"
)

// Migrating again applies nothing; concurrent migrators apply each file once.
func TestMigrateOnceUnderLock(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		u := b.NewDatabase(t) // already migrated once
		ctx := context.Background()
		applied, err := postgres.Migrate(ctx, u, nil)
		if err != nil || len(applied) != 0 {
			t.Fatalf("second migrate applied %v, %v", applied, err)
		}

		// A fresh database, five migrators at once.
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		// Named after this test's database, so that -count=N runs again.
		pu, _ := url.Parse(u)
		pu.Path += "_race"
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pu.Path[1:]); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		total := make([]int, 5)
		for i := range total {
			wg.Add(1)
			go func() {
				defer wg.Done()
				applied, err := postgres.Migrate(ctx, pu.String(), slog.New(slog.DiscardHandler))
				if err != nil {
					t.Errorf("migrator %d: %v", i, err)
				}
				total[i] = len(applied)
			}()
		}
		wg.Wait()
		sum := 0
		for _, n := range total {
			sum += n
		}
		race, err := pgx.Connect(ctx, pu.String())
		if err != nil {
			t.Fatal(err)
		}
		defer race.Close(ctx)
		var rows int
		if err := race.QueryRow(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if sum != rows || rows == 0 {
			t.Fatalf("migrators applied %d files in all, schema_migrations has %d", sum, rows)
		}
	})
}

// Pending names the migrations a database has not applied: none once
// migrated, the one whose record is gone, all of them where there is no
// schema.
func TestPendingMigrations(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		u := b.NewDatabase(t)
		ctx := context.Background()
		if pending, err := postgres.Pending(ctx, u); err != nil || len(pending) != 0 {
			t.Fatalf("migrated database: pending %v, %v", pending, err)
		}
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DELETE FROM schema_migrations WHERE version LIKE '0011%'`); err != nil {
			t.Fatal(err)
		}
		if pending, err := postgres.Pending(ctx, u); err != nil || len(pending) != 1 || !strings.HasPrefix(pending[0], "0011_") {
			t.Errorf("one record gone: pending %v, %v", pending, err)
		}
		if _, err := conn.Exec(ctx, `DROP TABLE schema_migrations`); err != nil {
			t.Fatal(err)
		}
		all, _ := fs.Glob(migrations.FS, "*.sql")
		if pending, err := postgres.Pending(ctx, u); err != nil || len(pending) != len(all) || pending[0] != "0001_ledger" {
			t.Errorf("no schema: pending %v, %v", pending, err)
		}
	})
}

// Migration 0009 indexes the pending accounts that exist when it runs: the
// release job finds accounts by day from then on, so one left out would
// never be released.
func TestPendingDaysBackfill(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		u := b.NewDatabase(t)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		// The state before 0009: pending accounts, no index of them.
		for _, sql := range []string{
			`INSERT INTO assets (code, scale) VALUES ('DIAMOND', 0) ON CONFLICT DO NOTHING`,
			`INSERT INTO accounts (id, name, asset, normal_side, allow_negative, shards, status, created_at)
			 VALUES (gen_random_uuid(), 'DIAMOND:pending:c1:20261128', 'DIAMOND', 'credit', false, 1, 'open', now()),
			        (gen_random_uuid(), 'DIAMOND:available:c1', 'DIAMOND', 'credit', false, 1, 'open', now())`,
			`DROP TABLE pending_days, release_progress`,
			`DELETE FROM schema_migrations WHERE version LIKE '0009%'`,
		} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		if applied, err := postgres.Migrate(ctx, u, nil); err != nil || len(applied) != 1 {
			t.Fatalf("migrate: %v %v", applied, err)
		}
		var got []string
		rows, _ := conn.Query(ctx, `SELECT day || ' ' || account FROM pending_days ORDER BY 1`)
		if got, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != "20261128 DIAMOND:pending:c1:20261128" {
			t.Errorf("pending_days after the migration: %q", got)
		}
	})
}

// A migrator renews its lease while a migration runs, on a connection of
// its own, and logs the migration that is running: a migration that
// outlasts the lease's term is not taken over by a second migrator. A
// lease found lost stops the migration.
func TestMigrationLeaseRenewed(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) { testMigrationLeaseRenewed(t, b.NewDatabase(t)) })
}

func testMigrationLeaseRenewed(t *testing.T, u string) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	const term = time.Second // renewed every 250 ms: ample against a busy machine's stalls
	take := func(holder uuid.UUID) bool {
		t.Helper()
		var got uuid.UUID
		err := conn.QueryRow(ctx, `INSERT INTO schema_migrations_lock (id, holder, expires_at) VALUES (1, $1, now() + interval '1 second')
ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE schema_migrations_lock.expires_at < now() RETURNING holder`, holder).Scan(&got)
		if err != nil && err != pgx.ErrNoRows {
			t.Fatal(err)
		}
		return err == nil
	}
	first, second := uuid.New(), uuid.New()
	if !take(first) {
		t.Fatal("the first migrator could not take a free lease")
	}
	var logged syncbuf.Buffer
	var running atomic.Pointer[postgres.Running]
	running.Store(postgres.NewRunning("0099_slow", time.Now()))
	lost := make(chan struct{})
	stop := postgres.KeepLease(ctx, u, first, term, slog.New(slog.NewTextHandler(&logged, nil)), &running, func() { close(lost) })
	time.Sleep(3 * term)
	if take(second) {
		t.Fatal("a second migrator took the lease of a migration still running")
	}
	if !strings.Contains(logged.String(), "still applying migration") || !strings.Contains(logged.String(), "version=0099_slow") {
		t.Errorf("no progress in the log:\n%s", logged.String())
	}
	stop()
	time.Sleep(2 * term)
	if !take(second) {
		t.Fatal("the lease was not free a term after its migrator stopped renewing it")
	}
	// The first migrator, renewing again, finds the lease lost and stops.
	stop = postgres.KeepLease(ctx, u, first, term, slog.New(slog.DiscardHandler), &running, func() { close(lost) })
	defer stop()
	select {
	case <-lost:
	case <-time.After(5 * term):
		t.Fatal("a migrator whose lease was taken over did not stop")
	}
}
