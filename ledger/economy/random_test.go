package economy_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
)

// Concurrent purchases, promo grants and live-shopping sales, a quarter of
// them retried, some reusing a key with other content. Afterwards: coins held
// = −COIN:issued; per currency, deferred revenue = gross of all purchases and
// receivables + fees = deferred revenue (no coin has been spent yet); every
// acknowledged key posted exactly once; verify clean.
func TestRandomizedOperations(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	session := economy.LiveSession{ID: "s1", Seller: "shop", Partner: "tsl", PlatformRate: dec("0.08"), PartnerShare: dec("0.10")}
	if _, err := e.cat.AddLiveSession(ctx, session); err != nil {
		t.Fatal(err)
	}
	const workers, ops, users = 8, 60, 12
	var mu sync.Mutex
	acked := map[string]*ledger.Transaction{} // by idempotency key
	grossByCurrency := map[string]decimal.Decimal{}
	coinsMinted := decimal.Zero
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for i := range ops {
				user := fmt.Sprintf("u%d", rng.IntN(users))
				var call func() (*ledger.Transaction, error)
				var gross decimal.Decimal
				var currency string
				var coins int64
				switch rng.IntN(3) {
				case 0:
					req := economy.PurchaseRequest{Channel: economy.Apple, StoreTransactionID: fmt.Sprintf("a-%d-%d", w, i), User: user, PackID: "p1321", AmountPaid: dec("19.99"), Currency: "USD", PurchasedAt: t0}
					if rng.IntN(2) == 0 {
						req = economy.PurchaseRequest{Channel: economy.Google, StoreTransactionID: fmt.Sprintf("g-%d-%d", w, i), User: user, PackID: "p1321", AmountPaid: dec("3000"), Currency: "JPY", PurchasedAt: t0}
					}
					gross, currency, coins = req.AmountPaid, req.Currency, 1321
					call = func() (*ledger.Transaction, error) { return e.eco.Purchase(ctx, req) }
				case 1:
					req := economy.PromoRequest{IdempotencyKey: fmt.Sprintf("promo-%d-%d", w, i), User: user, Coins: int64(1 + rng.IntN(50))}
					coins = req.Coins
					call = func() (*ledger.Transaction, error) { return e.eco.GrantPromo(ctx, req) }
				default:
					req := economy.LiveSaleRequest{OrderID: fmt.Sprintf("o-%d-%d", w, i), SessionID: "s1", Amount: decimal.New(int64(100+rng.IntN(10000)), -2), Currency: "USD", SoldAt: t0}
					call = func() (*ledger.Transaction, error) { return e.eco.RecordLiveSale(ctx, req) }
				}
				tries := 1
				if rng.IntN(4) == 0 {
					tries = 2
				}
				for range tries {
					tx, err := call()
					if err != nil {
						t.Errorf("op %d/%d: %v", w, i, err)
						return
					}
					mu.Lock()
					if prev, ok := acked[tx.IdempotencyKey]; ok {
						if prev.ID != tx.ID || !tx.Replayed {
							t.Errorf("%s answered %s then %s (replayed=%v)", tx.IdempotencyKey, prev.ID, tx.ID, tx.Replayed)
						}
					} else {
						acked[tx.IdempotencyKey] = tx
						if currency != "" {
							grossByCurrency[currency] = grossByCurrency[currency].Add(gross)
						}
						coinsMinted = coinsMinted.Add(decimal.NewFromInt(coins))
					}
					mu.Unlock()
				}
				// Now and then the same key with other content: refused, nothing posted.
				if rng.IntN(10) == 0 {
					_, err := e.eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: fmt.Sprintf("promo-%d-%d", w, i), User: "intruder", Coins: 1})
					if err != nil && !errors.Is(err, ledger.ErrIdempotencyConflict) {
						t.Errorf("key reuse: %v", err)
					}
					if err == nil { // the key was free: a genuine grant
						mu.Lock()
						coinsMinted = coinsMinted.Add(decimal.NewFromInt(1))
						acked[fmt.Sprintf("promo-%d-%d", w, i)] = &ledger.Transaction{}
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	bal := func(name string) decimal.Decimal {
		b, err := e.svc.Balance(ctx, name, time.Time{})
		if err != nil && ledger.KindOf(err) != ledger.NotFound {
			t.Fatal(err)
		}
		return b
	}
	held := bal(economy.PromoWallet("intruder"))
	for u := range users {
		held = held.Add(bal(economy.CoinWallet(fmt.Sprintf("u%d", u)))).Add(bal(economy.PromoWallet(fmt.Sprintf("u%d", u))))
	}
	if issued := bal(economy.CoinIssued); !held.Equal(issued.Neg()) || !held.Equal(coinsMinted) {
		t.Errorf("coins held %s, -COIN:issued %s, minted by acknowledged operations %s", held, issued.Neg(), coinsMinted)
	}
	for cur, gross := range grossByCurrency {
		deferred := bal(economy.FiatAccount(economy.DeferredRevenue, cur))
		ch := "apple"
		if cur == "JPY" {
			ch = "google"
		}
		proceeds := bal(economy.FiatAccount(economy.ReceivableAppStore+":"+ch, cur)).Add(bal(economy.FiatAccount(economy.StoreCommission, cur)))
		if !deferred.Equal(gross) || !proceeds.Equal(gross) {
			t.Errorf("%s: deferred revenue %s, receivable+commission %s, gross of acknowledged purchases %s", cur, deferred, proceeds, gross)
		}
	}
	r, err := e.svc.Verify(ctx)
	if err != nil || !r.Clean() {
		t.Fatalf("verify: %v %+v", err, r)
	}
	if r.Transactions != int64(len(acked)) {
		t.Errorf("ledger holds %d transactions, %d keys were acknowledged", r.Transactions, len(acked))
	}
	t.Logf("%d operations acknowledged", len(acked))
}
