package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
)

// carryEnv: a fractional unit FRAC (scale 6) whose per-shard carry converts,
// two units at a time, into whole DIA (minted from DIA:issued into pending)
// and 0.01 USD of payable per granule.
func carryEnv(t *testing.T, b *dbtest.Backend, lanes int) *env {
	e := newEnv(t, b, ledger.Options{Lanes: lanes})
	ctx := context.Background()
	for _, a := range []ledger.Asset{{Code: "FRAC", Scale: 6}, {Code: "DIA", Scale: 0}} {
		if _, err := e.svc.CreateAsset(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.CreateAccount(ctx, ledger.Account{Name: "carry", Asset: "FRAC", Normal: ledger.Credit, Shards: 2, PerShard: true}); err != nil {
		t.Fatal(err)
	}
	e.account("frac:issued", "FRAC", true, 2)
	e.account("dia:issued", "DIA", true, 2)
	e.account("pending", "DIA", false, 2)
	e.account("cost", "USD", true, 2)
	e.account("payable", "USD", false, 2)
	return e
}

func carry(key, fraction string) ledger.PostRequest {
	return ledger.PostRequest{IdempotencyKey: key, Kind: "carry",
		Carries: []ledger.Carry{{Account: "carry", Source: "frac:issued", Fraction: decimal.RequireFromString(fraction),
			Granule: decimal.NewFromInt(2), Legs: []ledger.CarryLeg{
				{From: "dia:issued", To: "pending", PerGranule: decimal.NewFromInt(2)},
				{From: "cost", To: "payable", PerGranule: decimal.RequireFromString("0.01")},
			}}}}
}

// TestCarry pins each step's postings: the carry stays in [0, 2) and every
// fraction ends up either in it or converted.
func TestCarry(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := carryEnv(t, b, 1) // one lane: every step sees the same carry row
		steps := []struct {
			fraction, carry, pending, payable string
			postings                          string
		}{
			{"0.5", "0.5", "0", "0", "debit frac:issued 0.5, credit carry 0.5"},
			{"1.25", "1.75", "0", "0", "debit frac:issued 1.25, credit carry 1.25"},
			{"0.25", "0", "2", "0.01", "debit carry 1.75, credit frac:issued 1.75, debit dia:issued 2, credit pending 2, debit cost 0.01, credit payable 0.01"},
			{"4.000001", "0.000001", "6", "0.03", "debit frac:issued 0.000001, credit carry 0.000001, debit dia:issued 4, credit pending 4, debit cost 0.02, credit payable 0.02"},
			{"2", "0.000001", "8", "0.04", "debit dia:issued 2, credit pending 2, debit cost 0.01, credit payable 0.01"},
			// Taking back more than the carry holds returns granules: 2 of
			// them, and the carry keeps the 1.5 left over.
			{"-2.5", "1.500001", "4", "0.02", "debit frac:issued 1.5, credit carry 1.5, debit pending 4, credit dia:issued 4, debit payable 0.02, credit cost 0.02"},
			{"-0.5", "1.000001", "4", "0.02", "debit carry 0.5, credit frac:issued 0.5"},
		}
		for i, s := range steps {
			tx := e.post(carry(fmt.Sprintf("c%d", i), s.fraction))
			if got := postingsOf(tx); got != s.postings {
				t.Errorf("step %d (%s): postings\n %s\nwant\n %s", i, s.fraction, got, s.postings)
			}
			e.wantBalance("carry", s.carry)
			e.wantBalance("pending", s.pending)
			e.wantBalance("payable", s.payable)
		}
		// Taking back more than carry and pending together hold is refused.
		if _, err := e.svc.Post(context.Background(), carry("too-much", "-100")); !errors.Is(err, ledger.ErrInsufficientFunds) {
			t.Errorf("taking back 100: %v", err)
		}
		// A plain reversal would land the carry on whichever row its lane holds.
		tx := e.post(carry("to-reverse", "0.5"))
		if _, err := e.svc.Reverse(context.Background(), ledger.ReverseRequest{IdempotencyKey: "rev", TransactionID: tx.ID}); ledger.KindOf(err) != ledger.FailedPrecondition {
			t.Errorf("reversing a carry: %v", err)
		}
		e.verifyClean()
	})
}

func TestCarryRefusals(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := carryEnv(t, b, 1)
		e.account("plain", "FRAC", false, 1)
		cases := []struct {
			name  string
			edit  func(*ledger.Carry)
			field string
		}{
			{"zero fraction", func(c *ledger.Carry) { c.Fraction = decimal.Zero }, "carries[0].fraction"},
			{"too precise", func(c *ledger.Carry) { c.Fraction = decimal.RequireFromString("0.0000001") }, "carries[0].fraction"},
			{"not per-shard", func(c *ledger.Carry) { c.Account = "plain" }, "carries[0].account"},
			{"source may not go negative", func(c *ledger.Carry) { c.Source = "plain" }, "carries[0].source"},
			{"granule zero", func(c *ledger.Carry) { c.Granule = decimal.Zero }, "carries[0].granule"},
			{"no legs", func(c *ledger.Carry) { c.Legs = nil }, "carries[0].legs"},
			{"leg across assets", func(c *ledger.Carry) { c.Legs[0].To = "payable" }, "carries[0].legs[0]"},
			{"leg moves a per-shard account", func(c *ledger.Carry) { c.Legs[1].To = "carry" }, "carries[0].legs[1]"},
			{"leg amount too precise", func(c *ledger.Carry) { c.Legs[1].PerGranule = decimal.RequireFromString("0.001") }, "carries[0].legs[0].per_granule"},
		}
		cases[len(cases)-1].field = "carries[0].legs[1].per_granule"
		for _, c := range cases {
			req := carry("refused", "1")
			c.edit(&req.Carries[0])
			if _, err := e.svc.Post(context.Background(), req); ledger.FieldOf(err) != c.field || ledger.KindOf(err) != ledger.Invalid {
				t.Errorf("%s: %v (field %q)", c.name, err, ledger.FieldOf(err))
			}
		}
		plain := ledger.PostRequest{IdempotencyKey: "plain-posting", Kind: "transfer", Postings: []ledger.PostingRequest{
			{Account: "frac:issued", Side: ledger.Debit, Amount: decimal.NewFromInt(1)},
			{Account: "carry", Side: ledger.Credit, Amount: decimal.NewFromInt(1)}}}
		if _, err := e.svc.Post(context.Background(), plain); ledger.FieldOf(err) != "postings[1].account" || ledger.KindOf(err) != ledger.Invalid {
			t.Errorf("a plain posting to a per-shard carry account: %v", err)
		}
		if _, err := e.svc.CreateAccount(context.Background(), ledger.Account{Name: "bad", Asset: "FRAC", Normal: ledger.Credit, Shards: 2, PerShard: true, AllowNegative: true}); ledger.FieldOf(err) != "per_shard" {
			t.Errorf("per-shard account that may go negative: %v", err)
		}
	})
}

// TestCarryUnderConcurrency: lanes convert on their own rows; every row stays
// in [0, granule) and nothing is lost between carry and converted units.
// Then every fraction is taken back, concurrently, on whichever lane: each
// must succeed and leave nothing behind (regression: a take-back read only
// its lane's row and could ask pending for a granule that was never minted).
func TestCarryUnderConcurrency(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := carryEnv(t, b, 2)
		fraction := func(w, i int) decimal.Decimal {
			return decimal.New(int64(100_001+w*7919+i*104_729)%999_999+1, -6) // (0, 1)
		}
		total := decimal.Zero
		for w := 0; w < 8; w++ {
			for i := 0; i < 60; i++ {
				total = total.Add(fraction(w, i))
			}
		}
		each := func(sign, prefix string) {
			var wg sync.WaitGroup
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := 0; i < 60; i++ {
						if _, err := e.svc.Post(context.Background(), carry(fmt.Sprintf("%s%d-%d", prefix, w, i), sign+fraction(w, i).String())); err != nil {
							t.Errorf("%s%d-%d: %v", prefix, w, i, err)
							return
						}
					}
				}(w)
			}
			wg.Wait()
		}
		each("", "w")
		held := e.balance("carry").Add(e.balance("pending"))
		if !held.Equal(total) {
			t.Errorf("carry + pending = %s, fractions added %s", held, total)
		}
		if want := e.balance("pending").Div(decimal.NewFromInt(200)); !e.balance("payable").Equal(want) {
			t.Errorf("payable %s, want %s (0.01 per 2 units)", e.balance("payable"), want)
		}
		rowsInRange := func() {
			rows, err := e.owner().Query(context.Background(),
				`SELECT b.shard, b.balance FROM balances b JOIN accounts a ON a.id = b.account_id WHERE a.name = 'carry'`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var shard int
				var bal decimal.Decimal
				if err := rows.Scan(&shard, &bal); err != nil {
					t.Fatal(err)
				}
				if bal.Sign() < 0 || bal.GreaterThanOrEqual(decimal.NewFromInt(2)) {
					t.Errorf("carry row %d = %s, outside [0, 2)", shard, bal)
				}
			}
		}
		rowsInRange()
		each("-", "back")
		for _, name := range []string{"carry", "pending", "payable"} {
			e.wantBalance(name, "0")
		}
		rowsInRange()
		e.verifyClean()
	})
}

func postingsOf(tx *ledger.Transaction) string {
	s := ""
	for i, p := range tx.Postings {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %s %s", p.Side, p.Account, p.Amount)
	}
	return s
}
