// Package postgres stores the ledger in PostgreSQL or CockroachDB.
//
// All SQL of the ledger lives here, next to the code that scans it, and so
// does the translation of SQLSTATEs into ledger error kinds.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/cockroachdb/cockroach-go/v2/crdb"
	crdbpgx "github.com/cockroachdb/cockroach-go/v2/crdb/crdbpgxv5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coinledger/coinledger/ledger"
)

// WriterRole is the role the service writes as. It may insert transactions
// and entries but holds no UPDATE or DELETE on them.
const WriterRole = "coinledger_writer"

// Config tunes the store; zero values take the defaults.
type Config struct {
	// MaxConns sizes the pool: one connection per commit lane plus readers.
	MaxConns int32
	// MaxAttempts bounds how often a conflicting transaction is run. Default 20.
	MaxAttempts int
	// AsWriter makes every pooled connection SET ROLE coinledger_writer, so
	// the database itself refuses UPDATE and DELETE on posted entries even
	// when the login role owns the tables. Default on; turn it off only when
	// the login role already is a writer-only role.
	AsWriter *bool
	Logger   *slog.Logger
}

// DB is the ledger's store.
type DB struct {
	pool      *pgxpool.Pool
	cockroach bool
	// bytewiseNames: account names sort by their bytes (CockroachDB, or a
	// PostgreSQL database created with the C collation), so a name prefix is
	// a range of the name index.
	bytewiseNames bool
	maxAttempts   int
	log           *slog.Logger
	// When a balance as of an instant is kept (balancesAsOf): the instant
	// is settled, and its sum counted at least this many entries.
	checkpointSettled    time.Duration
	checkpointMinEntries int64
}

var _ ledger.Store = (*DB)(nil)

// Open connects to the database at url, which must already be migrated.
func Open(ctx context.Context, url string, cfg Config) (*DB, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err) // pgx masks the password
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	} else {
		pc.MaxConns = 16
	}
	asWriter := cfg.AsWriter == nil || *cfg.AsWriter
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		registerTypes(c.TypeMap())
		if asWriter {
			_, err := c.Exec(ctx, "SET ROLE "+WriterRole)
			return err
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	db := &DB{pool: pool, maxAttempts: cfg.MaxAttempts, log: cfg.Logger,
		checkpointSettled: ledger.Settled, checkpointMinEntries: checkpointMinEntries}
	if db.maxAttempts <= 0 {
		db.maxAttempts = 20
	}
	if db.log == nil {
		db.log = slog.Default()
	}
	if db.cockroach, err = isCockroach(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	db.bytewiseNames = db.cockroach
	if !db.cockroach {
		var collate string
		if err := pool.QueryRow(ctx, "SELECT datcollate FROM pg_database WHERE datname = current_database()").Scan(&collate); err != nil {
			pool.Close()
			return nil, fmt.Errorf("connect: %w", err)
		}
		db.bytewiseNames = collate == "C" || collate == "POSIX"
	}
	return db, nil
}

// Close closes the pool.
func (db *DB) Close() { db.pool.Close() }

// PoolStats are the connection pool's counts, for the metrics page.
type PoolStats struct {
	Max, Total, Idle, Acquired int32
	// Acquires counts connections handed out; EmptyAcquires those a caller
	// waited for, the pool having none idle; AcquireWait is the time spent
	// acquiring, waits included.
	Acquires, EmptyAcquires int64
	AcquireWait             time.Duration
}

// PoolStats reads the pool's counts.
func (db *DB) PoolStats() PoolStats {
	st := db.pool.Stat()
	return PoolStats{Max: st.MaxConns(), Total: st.TotalConns(), Idle: st.IdleConns(), Acquired: st.AcquiredConns(),
		Acquires: st.AcquireCount(), EmptyAcquires: st.EmptyAcquireCount(), AcquireWait: st.AcquireDuration()}
}

// Ping reaches the database over one of the pool's connections.
func (db *DB) Ping(ctx context.Context) error { return db.pool.Ping(ctx) }

// retryableConflict marks a unique violation that a re-run resolves: a
// concurrent batch committed the same idempotency key or reversal first.
type retryableConflict struct{ err error }

func (e retryableConflict) Error() string { return e.err.Error() }
func (e retryableConflict) Unwrap() error { return e.err }

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func retryable(err error) bool {
	var rc retryableConflict
	if errors.As(err, &rc) {
		return true
	}
	switch sqlState(err) {
	case "40001", "40P01": // serialization_failure, deadlock_detected
		return true
	}
	return false
}

// isCockroach tells CockroachDB from PostgreSQL by the server's version.
func isCockroach(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (bool, error) {
	var version string
	if err := q.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return false, err
	}
	return strings.Contains(version, "CockroachDB"), nil
}

// inTx runs fn in a transaction until it commits, retrying serialization
// failures and deadlocks with jittered exponential backoff.
//
// On PostgreSQL the whole transaction is re-run and success is reported only
// when COMMIT itself succeeded: a SERIALIZABLE or deferred-constraint failure
// surfaces at COMMIT. (crdbpgxv5.ExecuteTx ignores COMMIT's error, which is
// right for CockroachDB's savepoint protocol only.) On CockroachDB that
// savepoint protocol is used.
func (db *DB) inTx(ctx context.Context, iso pgx.TxIsoLevel, fn func(pgx.Tx) error) error {
	if db.cockroach {
		ctx = crdb.WithMaxRetries(ctx, db.maxAttempts)
		err := crdbpgx.ExecuteTx(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.Serializable}, fn)
		if err != nil && retryable(err) {
			db.log.Warn("transaction retries exhausted", "err", err)
			return ledger.ErrRetriesExhausted
		}
		return err
	}
	return db.retry(ctx, retryable, func() error { return db.attempt(ctx, iso, fn) })
}

// retry runs attempt until it succeeds or fails for a reason a re-run cannot
// fix (again says which), with jittered exponential backoff; each attempt is
// a whole transaction, from BEGIN to COMMIT.
func (db *DB) retry(ctx context.Context, again func(error) bool, attempt func() error) error {
	backoff := time.Millisecond
	for n := 1; ; n++ {
		err := attempt()
		if err == nil || !again(err) {
			return err
		}
		if n >= db.maxAttempts {
			if !retryable(err) {
				return err // a database out of reach, not contention: the caller says so
			}
			// The database's words go to the log; a caller is told to retry.
			db.log.Warn("transaction retries exhausted", "attempts", n, "err", err)
			return &ledger.Error{Err: ledger.ErrRetriesExhausted, Message: fmt.Sprintf("after %d attempts", n)}
		}
		db.log.Debug("transaction retry", "attempt", n, "sqlstate", sqlState(err))
		sleep := time.Duration(rand.Int64N(int64(backoff))) + backoff/2
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(sleep):
		}
		if backoff < 100*time.Millisecond {
			backoff *= 2
		}
	}
}

func (db *DB) attempt(ctx context.Context, iso pgx.TxIsoLevel, fn func(pgx.Tx) error) error {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: iso})
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return tx.Commit(ctx)
}

// storeError gives a database error its kind at the store's boundary: one
// the ledger already classified (or a cancellation) passes as it is, a
// database out of reach is Unavailable, anything else Internal.
func storeError(op string, err error) error {
	var le *ledger.Error
	if errors.As(err, &le) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if sqlState(err) == "22021" { // character_not_in_repertoire: a NUL or bytes that are not UTF-8
		return &ledger.Error{Op: op, Kind: ledger.Invalid, Err: err, Message: "a string holds a character the database cannot store"}
	}
	if unreachable(err) {
		return &ledger.Error{Op: op, Kind: ledger.Unavailable, Err: err,
			Message: "database unavailable; a write may or may not have committed: retry it with the same idempotency key"}
	}
	return &ledger.Error{Op: op, Kind: ledger.Internal, Err: err}
}

// unreachable tells a database that could not be reached, or that went away
// in the middle of a request (shut down, crashed, the connection cut), from
// a fault of the request or of ours.
func unreachable(err error) bool {
	code := sqlState(err)
	if strings.HasPrefix(code, "28") || code == "3D000" {
		return false // refused credentials or no such database: configuration, not an outage
	}
	var connect *pgconn.ConnectError
	if errors.As(err, &connect) || errors.Is(err, pgconn.ErrConnClosed) {
		return true
	}
	switch {
	case strings.HasPrefix(code, "08"): // connection_exception
		return true
	case code == "57P01", code == "57P02", code == "57P03": // admin_shutdown, crash_shutdown, cannot_connect_now
		return true
	case code != "":
		return false
	}
	var netErr net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &netErr)
}
