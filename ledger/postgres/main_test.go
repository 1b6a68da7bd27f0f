package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/postgres"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// env is a ledger service on a fresh database.
type env struct {
	t        testing.TB
	svc      *ledger.Service
	db       *postgres.DB
	ownerURL string
}

func newEnv(t testing.TB, b *dbtest.Backend, opts ledger.Options) *env {
	t.Helper()
	db, u := b.Open(t, postgres.Config{})
	svc := ledger.NewService(db, opts)
	t.Cleanup(svc.Close)
	e := &env{t: t, svc: svc, db: db, ownerURL: u}
	for _, a := range []ledger.Asset{{Code: "USD", Scale: 2}, {Code: "COIN", Scale: 0}, {Code: "JPY", Scale: 0}} {
		if _, err := svc.CreateAsset(context.Background(), a); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// account opens a credit-normal account; negative allows it to go below zero.
func (e *env) account(name, asset string, negative bool, shards int) *ledger.Account {
	e.t.Helper()
	a, err := e.svc.CreateAccount(context.Background(), ledger.Account{
		Name: name, Asset: asset, Normal: ledger.Credit, AllowNegative: negative, Shards: shards,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func transfer(key, from, to string, amount string) ledger.PostRequest {
	return ledger.PostRequest{
		IdempotencyKey: key,
		Kind:           "transfer",
		Postings: []ledger.PostingRequest{
			{Account: from, Side: ledger.Debit, Amount: decimal.RequireFromString(amount)},
			{Account: to, Side: ledger.Credit, Amount: decimal.RequireFromString(amount)},
		},
	}
}

func (e *env) post(req ledger.PostRequest) *ledger.Transaction {
	e.t.Helper()
	tx, err := e.svc.Post(context.Background(), req)
	if err != nil {
		e.t.Fatalf("post %s: %v", req.IdempotencyKey, err)
	}
	return tx
}

func (e *env) balance(name string) decimal.Decimal {
	e.t.Helper()
	b, err := e.svc.Balance(context.Background(), name, zeroTime)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// owner connects as the schema's owner, to tamper behind the service's back.
func (e *env) owner() *pgx.Conn {
	e.t.Helper()
	c, err := pgx.Connect(context.Background(), e.ownerURL)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// wantBalance fails the test unless name's balance equals want.
func (e *env) wantBalance(name, want string) {
	e.t.Helper()
	if got := e.balance(name); !got.Equal(decimal.RequireFromString(want)) {
		e.t.Errorf("%s = %s, want %s", name, got, want)
	}
}

func (e *env) verifyClean() {
	e.t.Helper()
	r, err := e.svc.Verify(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if !r.Clean() {
		e.t.Fatalf("verify found violations: %v", fmt.Sprint(r.Violations))
	}
}

func sqlStateOf(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// seedLots writes n open lots of 10 units for holder straight into the
// tables (with the transactions that opened them), keyed prefix1..prefixN:
// fixtures for plans and reads, not for the ledger's own accounting.
func seedLots(t testing.TB, db interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, prefix string, holder uuid.UUID, n int) {
	t.Helper()
	if _, err := db.Exec(context.Background(), `
WITH t AS (
  INSERT INTO transactions (id, idempotency_key, fingerprint, kind, effective_at, recorded_at, batch_seq, metadata)
  SELECT gen_random_uuid(), $1 || g, '\x00', 'seed', now(), now(), g, '{}' FROM generate_series(1, $2::int) g
  RETURNING id, batch_seq)
INSERT INTO lots (id, account_id, opened_at, batch_seq, units, units_left, value_account_id, value_asset, value, value_left)
SELECT id, $3, now(), batch_seq, 10, 10, $3, 'USD', 1, 1 FROM t`, prefix, n, holder); err != nil {
		t.Fatal(err)
	}
}
