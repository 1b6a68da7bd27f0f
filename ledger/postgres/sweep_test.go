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

func sweep(key, from, to string) ledger.PostRequest {
	return ledger.PostRequest{IdempotencyKey: key, Kind: "release", Sweep: &ledger.Sweep{From: from, To: to}}
}

// A sweep moves what its account holds when it commits; its retry is the
// original, its key with another sweep a conflict, and an empty account
// refuses it.
func TestSweep(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{})
		ctx := context.Background()
		e.account("mint", "USD", true, 1)
		e.account("pending", "USD", false, 2)
		e.account("available", "USD", false, 1)
		e.account("other", "USD", false, 1)
		e.account("yen", "JPY", false, 1)
		if _, err := e.svc.CreateAccount(ctx, ledger.Account{Name: "lanes", Asset: "USD", Normal: ledger.Credit, Shards: 2, PerShard: true}); err != nil {
			t.Fatal(err)
		}
		e.post(transfer("fund", "mint", "pending", "7.25"))
		tx := e.post(sweep("release-1", "pending", "available"))
		if got := fmt.Sprintf("%s %s %s %s %s %s", tx.Postings[0].Side, tx.Postings[0].Account, tx.Postings[0].Amount, tx.Postings[1].Side, tx.Postings[1].Account, tx.Postings[1].Amount); len(tx.Postings) != 2 || got != "debit pending 7.25 credit available 7.25" {
			t.Fatalf("sweep posted %+v", tx.Postings)
		}
		e.post(transfer("late", "mint", "pending", "1"))
		again, err := e.svc.Post(ctx, sweep("release-1", "pending", "available"))
		if err != nil || !again.Replayed || again.ID != tx.ID || !again.Postings[0].Amount.Equal(decimal.RequireFromString("7.25")) {
			t.Fatalf("retried sweep: %+v, %v", again, err)
		}
		if _, err := e.svc.Post(ctx, sweep("release-1", "pending", "other")); !errors.Is(err, ledger.ErrIdempotencyConflict) {
			t.Errorf("key reused for another sweep: %v", err)
		}
		e.post(sweep("release-2", "pending", "available"))
		if _, err := e.svc.Post(ctx, sweep("release-3", "pending", "available")); !errors.Is(err, ledger.ErrNothingToSweep) || ledger.FieldOf(err) != "sweep.from" || ledger.KindOf(err) != ledger.FailedPrecondition {
			t.Errorf("sweeping an empty account: %v", err)
		}
		if got := e.balance("available"); !got.Equal(decimal.RequireFromString("8.25")) {
			t.Errorf("available = %s, want 8.25", got)
		}
		for _, c := range []struct {
			name  string
			req   ledger.PostRequest
			field string
		}{
			{"unknown from", sweep("bad-1", "nobody", "available"), "sweep.from"},
			{"unknown to", sweep("bad-2", "pending", "nobody"), "sweep.to"},
			{"from may go negative", sweep("bad-3", "mint", "available"), "sweep.from"},
			{"from per-shard", sweep("bad-4", "lanes", "available"), "sweep.from"},
			{"to itself", sweep("bad-5", "pending", "pending"), "sweep.to"},
			{"to another asset", sweep("bad-6", "pending", "yen"), "sweep.to"},
			{"to per-shard", sweep("bad-7", "pending", "lanes"), "sweep.to"},
			{"with postings", func() ledger.PostRequest {
				r := transfer("bad-8", "mint", "pending", "1")
				r.Sweep = &ledger.Sweep{From: "pending", To: "available"}
				return r
			}(), "sweep"},
		} {
			if _, err := e.svc.Post(ctx, c.req); ledger.KindOf(err) != ledger.Invalid && ledger.KindOf(err) != ledger.NotFound || ledger.FieldOf(err) != c.field {
				t.Errorf("%s: got %v, want field %s", c.name, err, c.field)
			}
		}
	})
}

// Sweeps racing transfers out of and into the swept account, over two lanes
// writing both of its balance rows: every sweep moves what the account held
// when it committed, so nothing is refused for a stale read, and what came
// in is what was taken out plus what was swept.
func TestSweepUnderConcurrency(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{Lanes: 2})
		ctx := context.Background()
		e.account("mint", "USD", true, 1)
		e.account("pending", "USD", false, 2)
		e.account("available", "USD", false, 1)
		var wg sync.WaitGroup
		var mu sync.Mutex
		in, out := decimal.Zero, decimal.Zero
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					key := fmt.Sprintf("%d-%d", w, i)
					var req ledger.PostRequest
					switch i % 4 {
					case 0, 1:
						req = transfer("in-"+key, "mint", "pending", "3")
					case 2:
						req = transfer("out-"+key, "pending", "mint", "1")
					case 3:
						req = sweep("sweep-"+key, "pending", "available")
					}
					_, err := e.svc.Post(ctx, req)
					switch {
					case err == nil && i%4 == 0, err == nil && i%4 == 1:
						mu.Lock()
						in = in.Add(decimal.NewFromInt(3))
						mu.Unlock()
					case err == nil && i%4 == 2:
						mu.Lock()
						out = out.Add(decimal.NewFromInt(1))
						mu.Unlock()
					case err == nil:
					case errors.Is(err, ledger.ErrInsufficientFunds) && i%4 == 2, errors.Is(err, ledger.ErrNothingToSweep) && i%4 == 3:
					default:
						t.Errorf("%s: %v", req.IdempotencyKey, err)
					}
				}
			}()
		}
		wg.Wait()
		if _, err := e.svc.Post(ctx, sweep("last", "pending", "available")); err != nil && !errors.Is(err, ledger.ErrNothingToSweep) {
			t.Fatal(err)
		}
		if got := e.balance("pending"); !got.IsZero() {
			t.Errorf("pending holds %s after the last sweep", got)
		}
		if got := e.balance("available"); !got.Equal(in.Sub(out)) {
			t.Errorf("available = %s, want %s in less %s out", got, in, out)
		}
		r, err := e.svc.Verify(ctx)
		if err != nil || !r.Clean() {
			t.Fatalf("verify: %+v %v", r, err)
		}
	})
}
