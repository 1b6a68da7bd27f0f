package economy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
	"github.com/coinledger/coinledger/ledger/postgres"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

type env struct {
	db  *postgres.DB
	svc *ledger.Service
	cat *economy.Catalog
	eco *economy.Economy
}

// newEnv is a bootstrapped economy on a fresh database; lanes (default the
// ledger's) pins the commit lanes, and with one lane carries are exact.
func newEnv(t *testing.T, lanes ...int) *env {
	t.Helper()
	db, _ := dbtest.Postgres().Open(t, postgres.Config{})
	clock := func() time.Time { return t0 }
	opts := ledger.Options{Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if len(lanes) > 0 {
		opts.Lanes = lanes[0]
	}
	svc := ledger.NewService(db, opts)
	t.Cleanup(svc.Close)
	cat := economy.NewCatalog(db, clock)
	e := &env{db: db, svc: svc, cat: cat, eco: economy.New(svc, cat, clock)}
	ctx := context.Background()
	if err := e.eco.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.eco.Bootstrap(ctx); err != nil {
		t.Fatalf("bootstrap is not idempotent: %v", err)
	}
	for _, p := range []economy.CoinPack{
		{ID: "p1321", Channel: economy.Apple, Coins: 1321, FeeRate: dec("0.30"), Prices: map[string]decimal.Decimal{"USD": dec("19.99")}},
		{ID: "p1321", Channel: economy.Google, Coins: 1321, FeeRate: dec("0.15"), Prices: map[string]decimal.Decimal{"JPY": dec("3000")}},
		{ID: "p330", Channel: economy.Web, Coins: 330, FeeRate: dec("0.029"), Prices: map[string]decimal.Decimal{"USD": dec("4.99")}},
		{ID: "tiny", Channel: economy.Apple, Coins: 1, FeeRate: dec("0.30"), Prices: map[string]decimal.Decimal{"USD": dec("0.05")}},
	} {
		if _, err := cat.AddCoinPack(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// postings renders a transaction's postings sorted, as "side account amount".
func postings(tx *ledger.Transaction) string {
	var out []string
	for _, p := range tx.Postings {
		out = append(out, fmt.Sprintf("%s %s %s", p.Side, p.Account, p.Amount))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

func TestPurchasePostings(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tests := []struct {
		name string
		req  economy.PurchaseRequest
		want string
	}{
		{"apple 30% of 19.99 is 5.997, rounded to 6.00", economy.PurchaseRequest{Channel: economy.Apple, StoreTransactionID: "a-1", User: "u1", PackID: "p1321", AmountPaid: dec("19.99"), Currency: "USD", PurchasedAt: t0},
			"credit COIN:wallet:u1 1321; credit Liability:DeferredRevenue:Coins:USD 19.99; debit COIN:issued 1321; debit Expense:StoreCommission:USD 6; debit Receivable:AppStore:apple:USD 13.99"},
		{"google in JPY, scale 0", economy.PurchaseRequest{Channel: economy.Google, StoreTransactionID: "GPA.1", User: "u2", PackID: "p1321", AmountPaid: dec("3000"), Currency: "JPY", PurchasedAt: t0},
			"credit COIN:wallet:u2 1321; credit Liability:DeferredRevenue:Coins:JPY 3000; debit COIN:issued 1321; debit Expense:StoreCommission:JPY 450; debit Receivable:AppStore:google:JPY 2550"},
		{"web: 2.9% of 4.99 is 0.14471, rounded to 0.14", economy.PurchaseRequest{Channel: economy.Web, StoreTransactionID: "ch_1", User: "u1", PackID: "p330", AmountPaid: dec("4.99"), Currency: "USD", PurchasedAt: t0},
			"credit COIN:wallet:u1 330; credit Liability:DeferredRevenue:Coins:USD 4.99; debit COIN:issued 330; debit Clearing:PSP:stripe:USD 4.85; debit Expense:PaymentFees:USD 0.14"},
		{"half a cent rounds up: 30% of 0.05", economy.PurchaseRequest{Channel: economy.Apple, StoreTransactionID: "a-2", User: "u3", PackID: "tiny", AmountPaid: dec("0.05"), Currency: "USD", PurchasedAt: t0},
			"credit COIN:wallet:u3 1; credit Liability:DeferredRevenue:Coins:USD 0.05; debit COIN:issued 1; debit Expense:StoreCommission:USD 0.02; debit Receivable:AppStore:apple:USD 0.03"},
	}
	for _, tt := range tests {
		tx, err := e.eco.Purchase(ctx, tt.req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := postings(tx); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
		if !strings.Contains(string(tx.Metadata), `"store_transaction_id":"`+tt.req.StoreTransactionID+`"`) {
			t.Errorf("%s: lot not recorded: %s", tt.name, tx.Metadata)
		}
	}

	// The store notification arrives again: the original, nothing posted twice.
	again, err := e.eco.Purchase(ctx, tests[0].req)
	if err != nil || !again.Replayed {
		t.Fatalf("retried purchase: %+v %v", again, err)
	}
	bal, _ := e.svc.Balance(ctx, economy.CoinWallet("u1"), time.Time{})
	if !bal.Equal(dec("1651")) {
		t.Fatalf("u1 holds %s coins, want 1651", bal)
	}
}

func TestPurchaseRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ok := economy.PurchaseRequest{Channel: economy.Apple, StoreTransactionID: "a-1", User: "u1", PackID: "p1321", AmountPaid: dec("19.99"), Currency: "USD", PurchasedAt: t0}
	if _, err := e.eco.Purchase(ctx, ok); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edit  func(*economy.PurchaseRequest)
		kind  ledger.Kind
		field string
	}{
		{"same store transaction, other user", func(r *economy.PurchaseRequest) { r.User = "u9" }, ledger.Conflict, "idempotency_key"},
		{"unknown pack", func(r *economy.PurchaseRequest) { r.StoreTransactionID, r.PackID = "a-2", "nope" }, ledger.NotFound, "pack_id"},
		// It reached the catalog's query and failed there (FuzzRequests).
		{"a NUL in the pack id", func(r *economy.PurchaseRequest) { r.StoreTransactionID, r.PackID = "a-2", "p\x00" }, ledger.Invalid, "pack_id"},
		{"pack before its first version", func(r *economy.PurchaseRequest) { r.StoreTransactionID, r.PurchasedAt = "a-3", t0.Add(-time.Hour) }, ledger.NotFound, "pack_id"},
		{"currency not sold", func(r *economy.PurchaseRequest) { r.StoreTransactionID, r.Currency = "a-4", "EUR" }, ledger.Invalid, "currency"},
		{"wrong amount", func(r *economy.PurchaseRequest) { r.StoreTransactionID, r.AmountPaid = "a-5", dec("9.99") }, ledger.Invalid, "amount_paid"},
		{"no purchase time", func(r *economy.PurchaseRequest) { r.StoreTransactionID, r.PurchasedAt = "a-6", time.Time{} }, ledger.Invalid, "purchased_at"},
		{"future purchase time", func(r *economy.PurchaseRequest) { r.StoreTransactionID, r.PurchasedAt = "a-7", t0.Add(time.Hour) }, ledger.Invalid, "purchased_at"},
		{"bad channel", func(r *economy.PurchaseRequest) { r.Channel = "steam" }, ledger.Invalid, "channel"},
		{"user with colon", func(r *economy.PurchaseRequest) { r.StoreTransactionID, r.User = "a-8", "u:1" }, ledger.Invalid, "user"},
		{"empty store id", func(r *economy.PurchaseRequest) { r.StoreTransactionID = "" }, ledger.Invalid, "store_transaction_id"},
	}
	for _, tt := range tests {
		r := ok
		tt.edit(&r)
		_, err := e.eco.Purchase(ctx, r)
		if ledger.KindOf(err) != tt.kind || ledger.FieldOf(err) != tt.field {
			t.Errorf("%s: got %v (kind %v, field %q)", tt.name, err, ledger.KindOf(err), ledger.FieldOf(err))
		}
	}
}

func TestPromoGrantAndConservation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tx, err := e.eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: "welcome:u1", User: "u1", Coins: 100, Reason: "welcome"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := postings(tx), "credit COIN:promo:u1 100; debit COIN:issued 100"; got != want {
		t.Fatalf("promo postings %s, want %s", got, want)
	}
	if _, err := e.eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: "welcome:u1", User: "u1", Coins: 200, Reason: "welcome"}); !errors.Is(err, ledger.ErrIdempotencyConflict) {
		t.Fatalf("promo key reused: %v", err)
	}
	if _, err := e.eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: "x", User: "u1", Coins: 0}); ledger.FieldOf(err) != "coins" {
		t.Fatalf("zero coins: %v", err)
	}
	if _, err := e.eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: "has space", User: "u1", Coins: 1}); ledger.FieldOf(err) != "idempotency_key" {
		t.Fatalf("key with a space: %v", err)
	}
	// A promo's key is the promo service's own: one that reads like another
	// flow's key must not take that key from it.
	if _, err := e.eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: "purchase:apple:a-1", User: "u1", Coins: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eco.Purchase(ctx, economy.PurchaseRequest{Channel: economy.Apple, StoreTransactionID: "a-1", User: "u1", PackID: "p1321", AmountPaid: dec("19.99"), Currency: "USD", PurchasedAt: t0}); err != nil {
		t.Fatal(err)
	}
	held := decimal.Zero
	for _, name := range []string{economy.CoinWallet("u1"), economy.PromoWallet("u1")} {
		b, err := e.svc.Balance(ctx, name, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		held = held.Add(b)
	}
	issued, _ := e.svc.Balance(ctx, economy.CoinIssued, time.Time{})
	if !held.Equal(issued.Neg()) || !held.Equal(dec("1426")) { // 100 + 5 promo, 1,321 bought
		t.Fatalf("coins held %s, -COIN:issued %s", held, issued.Neg())
	}
	r, err := e.svc.Verify(ctx)
	if err != nil || !r.Clean() {
		t.Fatalf("verify: %v %+v", err, r)
	}
}

// A database whose chart an earlier version made differently is refused at
// bootstrap with a message that says so and names what differs.
func TestBootstrapOnAnOlderChart(t *testing.T) {
	db, _ := dbtest.Postgres().Open(t, postgres.Config{})
	svc := ledger.NewService(db, ledger.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(svc.Close)
	ctx := context.Background()
	if _, err := svc.CreateAsset(ctx, ledger.Asset{Code: "USD", Scale: 2}); err != nil {
		t.Fatal(err)
	}
	// As the chart once defined it: may not go negative, one row.
	if _, err := svc.CreateAccount(ctx, ledger.Account{Name: economy.FiatAccount(economy.DeferredRevenue, "USD"), Asset: "USD", Normal: ledger.Credit, Shards: 1}); err != nil {
		t.Fatal(err)
	}
	err := economy.New(svc, economy.NewCatalog(db, nil), nil).Bootstrap(ctx)
	if !errors.Is(err, ledger.ErrAccountExists) {
		t.Fatalf("bootstrap on an older chart: %v", err)
	}
	for _, want := range []string{"earlier coinledger", "Liability:DeferredRevenue:Coins:USD has allow negative false, asked true; shards 1, asked 4"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}
