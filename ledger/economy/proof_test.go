package economy_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
)

// TestRandomizedEconomy runs 2,400 purchases, promo grants, gifts, releases,
// refunds (of spent coins too, and in parts), refund reversals and gift
// reversals from concurrent goroutines, a quarter of them retried, while
// viewers are blocked and unblocked (their gifts and promo grants may be
// refused, nothing else). Then:
// coins held less owed = −COIN:issued; diamonds held = −DIAMOND:issued (and carried
// fractions = −DIAMOND_FRAC:issued); deferred revenue = the value left in
// unspent lots; creator payable = the fiat value of earners' diamonds; every
// acknowledged key posted once; verify clean.
func TestRandomizedEconomy(t *testing.T) {
	e := giftEnv(t)
	ctx := context.Background()
	// Releases run with a clock past the gifts' release day, concurrently
	// with refunds that still see those gifts as pending: clawbacks race the
	// release job.
	later := economy.New(e.svc, e.cat, func() time.Time { return releaseDay.Add(48 * time.Hour) })
	const workers, ops, viewers = 8, 300, 10
	var mu sync.Mutex
	acked := map[string]uuid.UUID{}
	// Two workers may reverse the same gift under the same key at once: one
	// answer is the original, the other its replay, in either order.
	originals := map[string]int{}
	var purchases, gifts, refunds []string // store ids / gift tx ids / refund ids
	releases := 0
	counts := map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			pick := func(list *[]string) string {
				mu.Lock()
				defer mu.Unlock()
				if len(*list) == 0 {
					return ""
				}
				return (*list)[rng.IntN(len(*list))]
			}
			for i := range ops {
				viewer := fmt.Sprintf("v%d", 10+rng.IntN(viewers))
				if rng.IntN(25) == 0 {
					block := []func(context.Context, string, string) error{e.eco.BlockViewer, e.eco.UnblockViewer}[rng.IntN(2)]
					if err := block(ctx, fmt.Sprintf("block-%d-%d", w, i), viewer); err != nil {
						t.Errorf("blocking or unblocking %s: %v", viewer, err)
						return
					}
				}
				var call func() (*ledger.Transaction, error)
				var record func(*ledger.Transaction)
				op := rng.IntN(20)
				switch {
				case op < 5:
					id := fmt.Sprintf("a-%d-%d", w, i)
					req := economy.PurchaseRequest{Channel: economy.Apple, StoreTransactionID: id, User: viewer, PackID: "p1321", AmountPaid: dec("19.99"), Currency: "USD", PurchasedAt: t0}
					call = func() (*ledger.Transaction, error) { return e.eco.Purchase(ctx, req) }
					record = func(*ledger.Transaction) { purchases = append(purchases, id) }
				case op < 7:
					req := economy.PromoRequest{IdempotencyKey: fmt.Sprintf("promo-%d-%d", w, i), User: viewer, Coins: int64(1 + rng.IntN(400))}
					call = func() (*ledger.Transaction, error) { return e.eco.GrantPromo(ctx, req) }
				case op < 14:
					creator := []string{"c1", "c2"}[rng.IntN(2)]
					req := gift(fmt.Sprintf("g-%d-%d", w, i), viewer, creator, []string{"rose", "lion", "odd"}[rng.IntN(3)])
					call = func() (*ledger.Transaction, error) { return e.eco.SendGift(ctx, req) }
					record = func(tx *ledger.Transaction) { gifts = append(gifts, tx.ID.String()) }
				case op < 17:
					store := pick(&purchases)
					if store == "" {
						continue
					}
					id := fmt.Sprintf("r-%d-%d", w, i)
					req := refund(store, id, int64(rng.IntN(2)*(1+rng.IntN(1321))))
					policy := []economy.RefundPolicy{economy.ClawbackThenLoss, economy.AbsorbLoss, economy.OweCoins}[rng.IntN(3)]
					call = func() (*ledger.Transaction, error) { return e.eco.Refund(ctx, req, policy) }
					record = func(*ledger.Transaction) { refunds = append(refunds, id) }
				case op < 18:
					id := pick(&refunds)
					if id == "" {
						continue
					}
					call = func() (*ledger.Transaction, error) {
						return e.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: id})
					}
				case op < 19:
					g := pick(&gifts)
					if g == "" {
						continue
					}
					req := economy.ReverseGiftRequest{Key: "rev-" + g, GiftTx: g, Reason: "fraud"}
					call = func() (*ledger.Transaction, error) { return e.eco.ReverseGift(ctx, req) }
				default:
					// As of a time the release day is over but not yet closed,
					// so every run reads it: gifts keep landing in it here,
					// their clock being the day the test started.
					rep, err := later.ReleaseEarnings(ctx, releaseDay.Add(47*time.Hour), nil)
					if err != nil {
						t.Errorf("release: %v", err)
						return
					}
					mu.Lock()
					releases += rep.Released
					mu.Unlock()
					continue
				}
				tries := 1
				if rng.IntN(4) == 0 {
					tries = 2
				}
				for range tries {
					tx, err := call()
					if err != nil {
						// Refusals each operation may meet by chance; anything
						// else (a race with another operation) fails the test.
						if refusedByChance(op, err) {
							mu.Lock()
							counts["refused"]++
							if tx != nil {
								// Recorded, but its settlement was raced, or a
								// refund reversal posted apart from its debt
								// could not take it back yet.
								acked[tx.IdempotencyKey] = tx.ID
								if record != nil {
									record(tx)
								}
							}
							mu.Unlock()
							break
						}
						t.Errorf("op %d/%d: %v", w, i, err)
						return
					}
					mu.Lock()
					if !tx.Replayed {
						if originals[tx.IdempotencyKey]++; originals[tx.IdempotencyKey] > 1 {
							t.Errorf("%s answered as an original twice", tx.IdempotencyKey)
						}
					}
					if prev, ok := acked[tx.IdempotencyKey]; ok {
						if prev != tx.ID {
							t.Errorf("%s answered %s then %s", tx.IdempotencyKey, prev, tx.ID)
						}
					} else {
						acked[tx.IdempotencyKey] = tx.ID
						counts[tx.Kind]++
						if record != nil {
							record(tx)
						}
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("acknowledged %v, released %d accounts", counts, releases)
	sum := func(prefix string) decimal.Decimal {
		total, err := e.svc.Total(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		return total
	}
	bal := func(name string) decimal.Decimal {
		b, err := e.svc.Balance(ctx, name, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Coins owed under the debt policy count against what users hold.
	coins := sum("COIN:wallet:").Add(sum("COIN:promo:")).Sub(sum("COIN:debt:"))
	if issued := bal(economy.CoinIssued); !coins.Equal(issued.Neg()) {
		t.Errorf("coins held less owed %s, COIN:issued %s", coins, issued)
	}
	diamonds := sum("DIAMOND:pending:").Add(sum("DIAMOND:available:"))
	if issued := bal(economy.DiamondIssued); !diamonds.Equal(issued.Neg()) {
		t.Errorf("diamonds held %s, DIAMOND:issued %s", diamonds, issued)
	}
	if carried, issued := sum("DIAMOND_FRAC:carry:"), bal(economy.DiamondFracIssued); !carried.Equal(issued.Neg()) {
		t.Errorf("fractions carried %s, DIAMOND_FRAC:issued %s", carried, issued)
	}
	lotValue := decimal.Zero
	mu.Lock()
	all := append([]string{"a-v1"}, purchases...)
	mu.Unlock()
	for _, id := range all {
		tx, err := e.svc.TransactionByKey(ctx, "purchase:apple:"+id)
		if err != nil {
			t.Fatal(err)
		}
		lot, err := e.svc.Lot(ctx, tx.ID)
		if err != nil {
			t.Fatal(err)
		}
		lotValue = lotValue.Add(lot.ValueLeft)
	}
	if deferred := bal(economy.FiatAccount(economy.DeferredRevenue, "USD")); !deferred.Equal(lotValue) {
		t.Errorf("deferred revenue %s, value left in lots %s", deferred, lotValue)
	}
	// One rule value in this test: 0.005 USD a diamond.
	if payable, value := sum("Liability:CreatorPayable:"), diamonds.Mul(dec("0.005")); !payable.Equal(value) {
		t.Errorf("creator payable %s, diamonds' value %s", payable, value)
	}
	r, err := e.svc.Verify(ctx)
	if err != nil || !r.Clean() {
		t.Fatalf("verify: %v %+v", err, r)
	}
	// Debt settlements, and the debt of refund reversals posted apart from
	// it, are posted by the operations, not acknowledged to callers: each
	// has one entry on its user's debt account.
	settlements := 0
	for v := range viewers {
		entries, err := e.svc.Entries(ctx, economy.CoinDebt(fmt.Sprintf("v%d", 10+v)), ledger.Cursor{}, time.Time{}, ledger.MaxPage)
		if errors.Is(err, ledger.ErrAccountNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			if en.Kind == "debt-settle" || en.Kind == "debt-settle-reversal" || en.Kind == "refund-reversal-debt" {
				settlements++
			}
		}
	}
	const setup = 2 // giftEnv's purchase and promo grant
	if want := int64(setup + len(acked) + releases + settlements); r.Transactions != want {
		t.Errorf("ledger holds %d transactions; %d keys were acknowledged, %d releases, %d debt settlements or take-backs, %d in setup",
			r.Transactions, len(acked), releases, settlements, setup)
	}
	t.Logf("%d debt settlements, their reversals or take-backs", settlements)
}

// refusedByChance tells whether TestRandomizedEconomy's operation op may be
// refused with err because of what the random operations before it did.
// Racing them must never refuse it: a refund of a lot that moved plans
// again, and a refund reversal undoes a settlement that repaid the debt
// meanwhile. Aborted is a refund's answer when its lot moved on every one of
// its attempts, and an operation's that was recorded but whose settlement of
// the viewer's debt was raced on every attempt (ErrSettlementRaced).
func refusedByChance(op int, err error) bool {
	is := func(targets ...error) bool {
		for _, target := range targets {
			if errors.Is(err, target) {
				return true
			}
		}
		return false
	}
	switch {
	case op < 5: // purchase, recorded, whose settlement was raced on every attempt
		return is(economy.ErrSettlementRaced)
	case op < 7: // promo grant to a blocked viewer
		return is(ledger.ErrAccountFrozen)
	case op < 14: // gift
		return is(ledger.ErrAccountFrozen, ledger.ErrInsufficientFunds, economy.ErrInDebt)
	case op < 17: // refund of more than is left
		return is(economy.ErrBeyondPurchase) || ledger.KindOf(err) == ledger.Aborted
	case op < 18: // refund reversal after the purchase, or one whose coins repaid its debt, was refunded again
		return is(ledger.ErrLotRefunded, economy.ErrRepaidFromRefunded) || ledger.KindOf(err) == ledger.Aborted
	default: // gift reversal after its coins' refund, or its diamonds' release
		return is(ledger.ErrLotRefunded, economy.ErrEarningsReleased, economy.ErrSettlementRaced)
	}
}
