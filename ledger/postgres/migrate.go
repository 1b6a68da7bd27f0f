package postgres

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/coinledger/coinledger/migrations"
)

const (
	createMigrationTables = `
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    TEXT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS schema_migrations_lock (
    id         INT PRIMARY KEY CHECK (id = 1),
    holder     UUID NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
)`
	// A lease row instead of an advisory lock: CockroachDB has none that work.
	// An expired lease (a migrator that died) can be taken over.
	takeMigrationLock = `
INSERT INTO schema_migrations_lock (id, holder, expires_at) VALUES (1, $1, now() + $2::interval)
ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE schema_migrations_lock.expires_at < now()
RETURNING holder`
	releaseMigrationLock = `DELETE FROM schema_migrations_lock WHERE id = 1 AND holder = $1`
	renewMigrationLock   = `UPDATE schema_migrations_lock SET expires_at = now() + $2::interval WHERE id = 1 AND holder = $1`
)

// migrationLease is how long a migrator holds the lease unless it renews
// it: one that died loses it after this. A live one renews it every quarter
// of the term, so that a migration outlasting it (an index built over a
// large table) is not taken over by a second migrator.
const migrationLease = 10 * time.Minute

// Migrate applies the embedded migrations not yet applied, each in its own
// transaction, while holding the migration lease. url must connect as the
// schema's owner (not as the writer role). It reports the versions applied.
func Migrate(ctx context.Context, url string, log *slog.Logger) ([]string, error) {
	if log == nil {
		log = slog.Default()
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := createBookkeeping(ctx, conn); err != nil {
		return nil, err
	}
	holder, started := uuid.New(), time.Now()
	var logged time.Time // the last "waiting" line: one every 15 s, not every try
	for {
		var got uuid.UUID
		err := conn.QueryRow(ctx, takeMigrationLock, holder, interval(migrationLease)).Scan(&got)
		if err == nil {
			break
		}
		if err != pgx.ErrNoRows {
			return nil, fmt.Errorf("migration lock: %w", err)
		}
		if logged.IsZero() || time.Since(logged) >= 15*time.Second {
			log.Info("waiting for another migrator to finish", "waited", time.Since(started).Round(time.Second).String())
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	defer conn.Exec(context.WithoutCancel(ctx), releaseMigrationLock, holder)
	ctx, lost := context.WithCancel(ctx)
	defer lost()
	var running atomic.Pointer[runningMigration]
	defer keepLease(ctx, url, holder, migrationLease, log, &running, lost)()

	if err := ensureWriterRole(ctx, conn); err != nil {
		return nil, err
	}
	names, err := embeddedMigrations()
	if err != nil {
		return nil, err
	}
	var applied []string
	for _, name := range names {
		version := strings.TrimSuffix(name, ".sql")
		var done bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)", version).Scan(&done); err != nil {
			return applied, err
		}
		if done {
			continue
		}
		body, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			return applied, err
		}
		running.Store(&runningMigration{version, time.Now()})
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", version)
			return err
		})
		running.Store(nil)
		if err != nil {
			return applied, fmt.Errorf("migration %s: %w", name, err)
		}
		log.Info("applied migration", "version", version)
		applied = append(applied, version)
	}
	return applied, tuneStorage(ctx, conn)
}

// runningMigration is the migration being applied, and since when.
type runningMigration struct {
	version string
	since   time.Time
}

// keepLease renews holder's migration lease every quarter of its term, on
// a connection of its own (the migrator's is inside a migration), and logs
// the migration running then, so that a long one shows it is alive. When
// the lease turns out lost (it expired and another migrator took it) it
// calls lost, which cancels the migration. stop ends it.
func keepLease(ctx context.Context, url string, holder uuid.UUID, lease time.Duration, log *slog.Logger,
	running *atomic.Pointer[runningMigration], lost context.CancelFunc) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(lease / 4)
		defer tick.Stop()
		var conn *pgx.Conn
		defer func() {
			if conn != nil {
				conn.Close(context.Background())
			}
		}()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if conn == nil {
				c, err := pgx.Connect(ctx, url)
				if err != nil {
					log.Warn("migration lease: cannot connect to renew it", "err", err)
					continue
				}
				conn = c
			}
			tag, err := conn.Exec(ctx, renewMigrationLock, holder, interval(lease))
			switch {
			case err != nil:
				log.Warn("migration lease: renewal failed", "err", err)
				conn.Close(context.Background())
				conn = nil
			case tag.RowsAffected() == 0:
				log.Error("migration lease lost to another migrator; stopping")
				lost()
				return
			}
			if m := running.Load(); m != nil {
				log.Info("still applying migration", "version", m.version, "for", time.Since(m.since).Round(time.Second).String())
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// interval renders d for a ::interval parameter.
func interval(d time.Duration) string { return fmt.Sprintf("%d milliseconds", d.Milliseconds()) }

// Pending reports the embedded migrations that the database at url has not
// applied; all of them where it has none (no coinledger schema at all).
func Pending(ctx context.Context, url string) ([]string, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	applied := map[string]bool{}
	rows, _ := conn.Query(ctx, "SELECT version FROM schema_migrations")
	var version string
	_, err = pgx.ForEachRow(rows, []any{&version}, func() error { applied[version] = true; return nil })
	if err != nil && sqlState(err) != "42P01" { // 42P01: no schema_migrations, nothing applied
		return nil, err
	}
	names, err := embeddedMigrations()
	if err != nil {
		return nil, err
	}
	var pending []string
	for _, name := range names {
		if v := strings.TrimSuffix(name, ".sql"); !applied[v] {
			pending = append(pending, v)
		}
	}
	return pending, nil
}

// embeddedMigrations are the migration files' names, in the order they apply.
func embeddedMigrations() ([]string, error) {
	names, err := fs.Glob(migrations.FS, "*.sql")
	sort.Strings(names)
	return names, err
}

// fillFactors leave room on PostgreSQL's heap pages for the rows the write
// path updates in every batch (balances) and every gift (lots), so that they
// update in place (HOT) instead of pruning a full page or moving. They are
// physical settings, not schema: CockroachDB has no heap pages. A table an
// operator has already given a fill factor keeps it.
var fillFactors = []struct {
	table   string
	percent int
}{{"balances", 20}, {"lots", 70}}

func tuneStorage(ctx context.Context, conn *pgx.Conn) error {
	if cockroach, err := isCockroach(ctx, conn); err != nil || cockroach {
		return err
	}
	for _, f := range fillFactors {
		var set bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_class c, unnest(c.reloptions) o
WHERE c.oid = to_regclass($1) AND o LIKE 'fillfactor=%')`, f.table).Scan(&set)
		if err != nil {
			return fmt.Errorf("fill factor of %s: %w", f.table, err)
		}
		if set {
			continue
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s SET (fillfactor = %d)", f.table, f.percent)); err != nil {
			return fmt.Errorf("fill factor of %s: %w", f.table, err)
		}
	}
	return nil
}

// createBookkeeping creates the migration tables. Two migrators starting at
// once on PostgreSQL can both pass IF NOT EXISTS and collide in the catalog
// (23505 on pg_type, 42P07 or 42710); the loser simply tries again.
func createBookkeeping(ctx context.Context, conn *pgx.Conn) error {
	for attempt := 1; ; attempt++ {
		_, err := conn.Exec(ctx, createMigrationTables)
		if err == nil {
			return nil
		}
		if code := sqlState(err); (code != "23505" && code != "42P07" && code != "42710") || attempt == 5 {
			return fmt.Errorf("migration tables: %w", err)
		}
		time.Sleep(time.Duration(attempt) * 20 * time.Millisecond)
	}
}

// ensureWriterRole creates the writer role once per cluster (roles are
// cluster-wide in PostgreSQL) and lets the migrating user assume it.
func ensureWriterRole(ctx context.Context, conn *pgx.Conn) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", WriterRole).Scan(&exists); err != nil {
		return fmt.Errorf("writer role: %w", err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE ROLE "+WriterRole+" NOLOGIN"); err != nil && sqlState(err) != "42710" {
			return fmt.Errorf("create writer role: %w", err)
		}
	}
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
		return err
	}
	if user == WriterRole {
		return nil
	}
	if _, err := conn.Exec(ctx, "GRANT "+WriterRole+" TO "+pgx.Identifier{user}.Sanitize()); err != nil {
		return fmt.Errorf("grant writer role to %s: %w", user, err)
	}
	return nil
}
