package economy_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
)

// TestRandomizedEconomy runs 2,400 purchases, promo grants, gifts (a third of
// them on a second day), releases,
// refunds (of spent coins too, and in parts), refund reversals and gift
// reversals from concurrent goroutines, a quarter of them retried, while
// viewers are blocked and unblocked (their gifts and promo grants may be
// refused, nothing else). About one operation in forty starts a chain of
// two debt refunds whose reversals run apart from their debt (see chain).
// Then: coins held less owed = −COIN:issued; diamonds held = −DIAMOND:issued
// (and carried fractions = −DIAMOND_FRAC:issued); deferred revenue = the
// value left in unspent lots; creator payable = the fiat value of earners'
// diamonds; every acknowledged key posted once; verify clean; and each chain
// no other operation disturbed ends as if its refunds had not been.
func TestRandomizedEconomy(t *testing.T) {
	e := giftEnv(t)
	ctx := context.Background()
	// Releases run with a clock past the gifts' release day, concurrently
	// with refunds that still see those gifts as pending: clawbacks race the
	// release job.
	later := economy.New(e.svc, e.cat, func() time.Time { return releaseDay.Add(48 * time.Hour) })
	// A third of the gifts are sent the next day, into a release day that
	// the release runs leave pending: take-backs of the first day's gifts
	// whose granules that day cannot give back borrow from it.
	nextDay := t0.Add(24 * time.Hour)
	tomorrow := economy.New(e.svc, e.cat, func() time.Time { return nextDay })
	// Gift reversals run when the first release day is over, as it is for
	// the release runs that release it (a reversal refuses a gift of a day
	// over whose account is short as released), and the second is not.
	reversing := economy.New(e.svc, e.cat, func() time.Time { return releaseDay.Add(20 * time.Hour) })
	const workers, ops, viewers = 8, 300, 10
	var mu sync.Mutex
	acked := map[string]uuid.UUID{}
	// Two workers may reverse the same gift under the same key at once: one
	// answer is the original, the other its replay, in either order.
	originals := map[string]int{}
	var purchases, gifts, refunds []string // store ids / gift tx ids / refund ids
	var chains []chain
	// What the workers did to the chains' purchases, gift and refunds.
	refundsOf := map[string][]string{} // store id → its refunds acknowledged
	giftTx := map[string]string{}      // gift key → its transaction id
	reversedGifts := map[string]bool{} // gift transaction id
	reversedRefunds := map[string]bool{}
	refusedReversals := map[string]error{} // refund id → a refusal of its reversal
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
			// randomStep picks an operation; op is -1 when there is nothing
			// yet to refund or reverse.
			randomStep := func(i int) step {
				s := step{op: rng.IntN(20), viewer: fmt.Sprintf("v%d", 10+rng.IntN(viewers))}
				switch {
				case s.op < 5:
					s.id = fmt.Sprintf("a-%d-%d", w, i)
				case s.op < 7:
					s.id, s.coins = fmt.Sprintf("promo-%d-%d", w, i), int64(1+rng.IntN(400))
				case s.op < 14:
					s.id, s.creator, s.giftID = fmt.Sprintf("g-%d-%d", w, i), []string{"c1", "c2"}[rng.IntN(2)], []string{"rose", "lion", "odd"}[rng.IntN(3)]
					s.nextDay = rng.IntN(3) == 0
				case s.op < 17:
					s.id, s.target = fmt.Sprintf("r-%d-%d", w, i), pick(&purchases)
					s.coins = int64(rng.IntN(2) * (1 + rng.IntN(1321)))
					s.policy = []economy.RefundPolicy{economy.ClawbackThenLoss, economy.AbsorbLoss, economy.OweCoins}[rng.IntN(3)]
				case s.op < 18:
					s.target = pick(&refunds)
				case s.op < 19:
					s.target = pick(&gifts)
				}
				if s.op >= 14 && s.op < 19 && s.target == "" {
					s.op = -1
				}
				return s
			}
			// A chain's steps come first, and one under way runs to its end.
			var script []step
			for i := 0; i < ops || len(script) > 0; i++ {
				var s step
				if len(script) > 0 {
					s, script = script[0], script[1:]
				} else if rng.IntN(40) == 0 {
					c := chain{viewer: fmt.Sprintf("x%d-%d", w, i), tag: fmt.Sprintf("%d-%d", w, i)}
					mu.Lock()
					chains = append(chains, c)
					mu.Unlock()
					script = c.steps(rng)
					s, script = script[0], script[1:]
				} else {
					s = randomStep(i)
					if s.op < 0 {
						continue // nothing yet to refund or reverse
					}
					if rng.IntN(25) == 0 {
						block := []func(context.Context, string, string) error{e.eco.BlockViewer, e.eco.UnblockViewer}[rng.IntN(2)]
						if err := block(ctx, fmt.Sprintf("block-%d-%d", w, i), s.viewer); err != nil {
							t.Errorf("blocking or unblocking %s: %v", s.viewer, err)
							return
						}
					}
				}
				var call func() (*ledger.Transaction, error)
				var record func(*ledger.Transaction)
				op := s.op
				switch {
				case op < 5:
					req := economy.PurchaseRequest{Channel: economy.Apple, StoreTransactionID: s.id, User: s.viewer, PackID: "p1321", AmountPaid: dec("19.99"), Currency: "USD", PurchasedAt: t0}
					call = func() (*ledger.Transaction, error) { return e.eco.Purchase(ctx, req) }
					record = func(*ledger.Transaction) { purchases = append(purchases, s.id) }
				case op < 7:
					req := economy.PromoRequest{IdempotencyKey: s.id, User: s.viewer, Coins: s.coins}
					call = func() (*ledger.Transaction, error) { return e.eco.GrantPromo(ctx, req) }
				case op < 14:
					req, eco := gift(s.id, s.viewer, s.creator, s.giftID), e.eco
					if s.nextDay {
						req.SentAt, eco = nextDay, tomorrow
					}
					call = func() (*ledger.Transaction, error) { return eco.SendGift(ctx, req) }
					record = func(tx *ledger.Transaction) {
						gifts = append(gifts, tx.ID.String())
						giftTx[s.id] = tx.ID.String()
					}
				case op < 17:
					req := refund(s.target, s.id, s.coins)
					call = func() (*ledger.Transaction, error) { return e.eco.Refund(ctx, req, s.policy) }
					record = func(*ledger.Transaction) {
						refunds = append(refunds, s.id)
						refundsOf[s.target] = append(refundsOf[s.target], s.id)
					}
				case op < 18:
					call = func() (*ledger.Transaction, error) {
						return e.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: s.target})
					}
				case op < 19:
					req := economy.ReverseGiftRequest{Key: "rev-" + s.target, GiftTx: s.target, Reason: "fraud"}
					call = func() (*ledger.Transaction, error) { return reversing.ReverseGift(ctx, req) }
					record = func(*ledger.Transaction) { reversedGifts[s.target] = true }
				default:
					// As of a time the release day is over but not yet closed,
					// so every run reads it: gifts keep landing in it here,
					// their clock being the day the test started.
					rep, err := later.ReleaseEarnings(ctx, releaseDay.Add(23*time.Hour), nil)
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
							if op == 17 {
								refusedReversals[s.target] = err
							}
							if tx != nil {
								// Recorded, but its settlement was raced, or a
								// refund reversal posted apart from its debt
								// could not take it back yet.
								acked[tx.IdempotencyKey] = tx.ID
								if record != nil {
									record(tx)
								}
							} else {
								script = slices.DeleteFunc(script, func(next step) bool { return next.target == s.id })
							}
							mu.Unlock()
							break
						}
						t.Errorf("op %d/%d: %v", w, i, err)
						return
					}
					mu.Lock()
					if op == 17 {
						reversedRefunds[s.target] = true
					}
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
	// Then a run as of two days past the first release day releases both
	// days and closes the first: the economy's verify below finds nothing
	// left pending in it.
	rep, err := later.ReleaseEarnings(ctx, releaseDay.Add(48*time.Hour), nil)
	if err != nil {
		t.Fatalf("the closing release: %v", err)
	}
	if closed, err := e.db.ReleaseClosedThrough(ctx); err != nil || closed != releaseDay.Format("20060102") {
		t.Fatalf("closed through %q, want the first release day: %v", closed, err)
	}
	releases += rep.Released
	t.Logf("acknowledged %v, released %d accounts (%d by the closing run)", counts, releases, rep.Released)
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
	if v, omitted, err := e.eco.Verify(ctx, nil); err != nil || len(v) > 0 || omitted > 0 {
		t.Fatalf("the economy's verify: %v (%d more), %v", v, omitted, err)
	}
	// Debt settlements, and the debt of refund reversals posted apart from
	// it, are posted by the operations, not acknowledged to callers: each
	// has one entry on its user's debt account.
	// A chain whose purchases no one else refunded (its own refunds
	// acknowledged, no other), and whose gift no one reversed, has both its
	// refunds reversed (racing reversals of them answer as replays) and ends
	// as if neither refund had been: every coin of its three purchases not
	// spent on the gift, and no debt.
	undisturbed := 0
	for _, c := range chains {
		if !slices.Equal(refundsOf[c.purchase("a")], []string{c.refund("a")}) || !slices.Equal(refundsOf[c.purchase("b")], []string{c.refund("b")}) ||
			len(refundsOf[c.purchase("c")]) > 0 || giftTx[c.giftKey()] == "" || reversedGifts[giftTx[c.giftKey()]] {
			continue
		}
		undisturbed++
		if !reversedRefunds[c.refund("a")] || !reversedRefunds[c.refund("b")] {
			t.Errorf("chain of %s: refund reversals of a and b succeeded: %t, %t (refused: %v; %v)", c.viewer,
				reversedRefunds[c.refund("a")], reversedRefunds[c.refund("b")], refusedReversals[c.refund("a")], refusedReversals[c.refund("b")])
			continue
		}
		if wallet, debt := bal(economy.CoinWallet(c.viewer)), bal(economy.CoinDebt(c.viewer)); !wallet.Equal(dec("2963")) || !debt.IsZero() {
			t.Errorf("chain of %s: wallet %s, debt %s; want 2963 (3 × 1321 − 1000) and 0", c.viewer, wallet, debt)
		}
	}
	unacked := map[string]int{}
	var debtors []string
	for _, c := range chains {
		debtors = append(debtors, c.viewer)
	}
	for v := range viewers {
		debtors = append(debtors, fmt.Sprintf("v%d", 10+v))
	}
	for _, viewer := range debtors {
		entries, err := e.svc.Entries(ctx, economy.CoinDebt(viewer), ledger.Cursor{}, time.Time{}, ledger.MaxPage)
		if errors.Is(err, ledger.ErrAccountNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			if en.Kind == "debt-settle" || en.Kind == "debt-settle-reversal" || en.Kind == "refund-reversal-debt" {
				unacked[en.Kind]++
			}
		}
	}
	settlements := unacked["debt-settle"] + unacked["debt-settle-reversal"] + unacked["refund-reversal-debt"]
	const setup = 2 // giftEnv's purchase and promo grant
	if want := int64(setup + len(acked) + releases + settlements); r.Transactions != want {
		t.Errorf("ledger holds %d transactions; %d keys were acknowledged, %d releases, %d debt settlements or take-backs, %d in setup",
			r.Transactions, len(acked), releases, settlements, setup)
	}
	t.Logf("posted by operations besides their own: %v; %d chains of two debt refunds, %d undisturbed", unacked, len(chains), undisturbed)
}

// step is one operation of TestRandomizedEconomy: op as refusedByChance
// reads it; id names what it records (a purchase's store id, a refund's id,
// a gift's or promo grant's key) and target what it acts on (the purchase a
// refund refunds, the refund or gift a reversal reverses).
type step struct {
	op                 int
	viewer, id, target string
	creator, giftID    string
	coins              int64 // a promo grant's coins; a refund's coins the store says were consumed
	policy             economy.RefundPolicy
	nextDay            bool // a gift sent the day after the others
}

// chain is TestReverseTwoDebtRefundsInEitherOrder's chain for a viewer of
// its own, its two refund reversals in either order: a purchase, spent;
// refunded under the debt policy (1,000 owed); a second purchase repays the
// debt and is refunded under the debt policy too (the repayment counts as
// spent, owed again); a third repays that. Meanwhile the other workers may
// refund its purchases, reverse its gift and its refunds: its ids are in
// their lists as soon as they are recorded.
type chain struct{ viewer, tag string }

func (c chain) purchase(n string) string { return "ca-" + c.tag + n }
func (c chain) refund(n string) string   { return "cr-" + c.tag + n }
func (c chain) giftKey() string          { return "cg-" + c.tag }

func (c chain) steps(rng *rand.Rand) []step {
	buy := func(n string) step { return step{op: 0, viewer: c.viewer, id: c.purchase(n)} }
	refundDebt := func(n string) step {
		return step{op: 14, viewer: c.viewer, id: c.refund(n), target: c.purchase(n), policy: economy.OweCoins}
	}
	reverse := func(n string) step { return step{op: 17, viewer: c.viewer, target: c.refund(n)} }
	steps := []step{
		buy("a"),
		{op: 7, viewer: c.viewer, id: c.giftKey(), creator: "c1", giftID: "lion"},
		refundDebt("a"),
		buy("b"),
		refundDebt("b"),
		buy("c"),
		reverse("a"), reverse("b"),
	}
	if rng.IntN(2) == 0 {
		steps[6], steps[7] = steps[7], steps[6]
	}
	return steps
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
