package economy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
)

// Under the debt policy spent coins are owed: the debt refuses gifts (promo
// coins too) until a purchase repays it, each repayment recovering refund
// loss, and a refund reversal takes back exactly what the refund did.
func TestRefundOweCoins(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	if _, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion")); err != nil { // 100 promo + 900 paid of a-v1
		t.Fatal(err)
	}
	tx, err := e.eco.Refund(ctx, refund("a-v1", "r-v1", 0), economy.OweCoins)
	if err != nil {
		t.Fatal(err)
	}
	want := "credit COIN:issued 1321; credit Expense:StoreCommission:USD 6; credit Receivable:AppStore:apple:USD 13.99; " +
		"debit COIN:debt:v1 900; debit COIN:wallet:v1 421; debit Expense:RefundLoss:USD 13.62; debit Liability:DeferredRevenue:Coins:USD 6.37"
	if got := postings(tx); got != want {
		t.Errorf("refund:\n got %s\nwant %s", got, want)
	}
	e.want(t, economy.CoinDebt("v1"), "900")
	e.want(t, economy.CreatorPayable("c1", "USD"), "2.5") // nothing clawed back

	if _, err := e.eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: "promo-v1-2", User: "v1", Coins: 50}); err != nil {
		t.Fatal(err)
	}
	_, err = e.eco.SendGift(ctx, gift("g2", "v1", "c1", "rose"))
	if !errors.Is(err, economy.ErrInDebt) || ledger.FieldOf(err) != "viewer" || ledger.KindOf(err) != ledger.FailedPrecondition {
		t.Fatalf("gift while in debt: %v", err)
	}
	e.want(t, economy.PromoWallet("v1"), "50")

	// The next purchase repays the 900 coins from its lot: 19.99 × 900/1321
	// = 13.62 of deferred revenue recovers the loss.
	e.buy(t, "v1", "a-v1b")
	e.want(t, economy.CoinDebt("v1"), "0")
	e.want(t, economy.CoinWallet("v1"), "421")
	e.want(t, economy.FiatAccount(economy.RefundLoss, "USD"), "0")
	if _, err := e.eco.SendGift(ctx, gift("g2", "v1", "c1", "rose")); err != nil {
		t.Fatalf("gift after the debt is repaid: %v", err)
	}
	// A retried purchase finds nothing more to repay.
	e.buy(t, "v1", "a-v1b")
	e.want(t, economy.CoinWallet("v1"), "421")

	// Apple reverses the refund: the repayment is undone (900 coins back to
	// a-v1b's lot, their value back to deferred revenue), then the refund:
	// the debt goes, the 421 unspent coins return to a-v1's lot.
	if _, err := e.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: "r-v1"}); err != nil {
		t.Fatal(err)
	}
	e.want(t, economy.CoinDebt("v1"), "0")
	e.want(t, economy.CoinWallet("v1"), "1742")
	e.want(t, economy.FiatAccount(economy.RefundLoss, "USD"), "0")
	again, err := e.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: "r-v1"})
	if err != nil || !again.Replayed {
		t.Fatalf("retried reversal: %v", err)
	}
	e.want(t, economy.CoinWallet("v1"), "1742")
	verifyClean(t, e)
}

// TestRefundReversalRacedBySettlement: a purchase's settlement that repays
// the debt between a refund reversal's undoing of settlements and its post
// is undone too, rather than the reversal refused as an overdraft of the
// debt; repaid again on every attempt, the reversal is answered Aborted.
func TestRefundReversalRacedBySettlement(t *testing.T) {
	for _, tt := range []struct {
		name     string
		races    int // how many of the reversal's posts a purchase races
		attempts int
		// After the refused post, the racing purchase is refunded under
		// the debt policy: the debt is back before the reversal reads it.
		refundAfter bool
	}{
		{"once", 1, 2, false},
		{"on every attempt", 5, 5, false},
		{"once, and the debt back before it is read", 1, 2, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := giftEnv(t, 1)
			ctx := context.Background()
			if _, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion")); err != nil { // 100 promo + 900 paid of a-v1
				t.Fatal(err)
			}
			if _, err := e.eco.Refund(ctx, refund("a-v1", "r-v1", 0), economy.OweCoins); err != nil {
				t.Fatal(err)
			}
			e.want(t, economy.CoinDebt("v1"), "900")
			attempts := 0
			victim := racingLedger{Ledger: e.svc, victimKey: "refund-reversal:apple:r-v1", before: func(ctx context.Context) error {
				if attempts++; attempts > tt.races {
					return nil
				}
				_, err := e.eco.Purchase(ctx, economy.PurchaseRequest{Channel: economy.Apple, StoreTransactionID: fmt.Sprintf("a-v1-%d", attempts),
					User: "v1", PackID: "p1321", AmountPaid: dec("19.99"), Currency: "USD", PurchasedAt: t0})
				return err
			}}
			if tt.refundAfter {
				victim.after = func(ctx context.Context) error {
					if attempts > 1 {
						return nil
					}
					_, err := e.eco.Refund(ctx, refund("a-v1-1", "r-v1-1", 0), economy.OweCoins)
					return err
				}
			}
			raced := economy.New(victim, e.cat, func() time.Time { return t0 })
			_, err := raced.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: "r-v1"})
			if attempts != tt.attempts {
				t.Errorf("the reversal posted %d times, want %d", attempts, tt.attempts)
			}
			if tt.races < tt.attempts {
				if err != nil {
					t.Fatal(err)
				}
				e.want(t, economy.CoinDebt("v1"), "0")
				if tt.refundAfter {
					// a-v1's 421 unspent coins are back; a-v1-1 is refunded
					// whole.
					e.want(t, economy.CoinWallet("v1"), "421")
				} else {
					// As in TestRefundOweCoins, with the racing purchase's lot.
					e.want(t, economy.CoinWallet("v1"), "1742")
					e.want(t, economy.FiatAccount(economy.RefundLoss, "USD"), "0")
				}
			} else if ledger.KindOf(err) != ledger.Aborted || ledger.FieldOf(err) != "refund_id" {
				t.Fatalf("repaid on every attempt: %v", err)
			}
			verifyClean(t, e)
		})
	}
}

// Paid coins the user still holds repay the debt at once; only the rest is owed.
func TestRefundOweCoinsSettlesFromWallet(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	e.buy(t, "v5", "a-v5")
	e.buy(t, "v5", "a-v5b")
	for _, k := range []string{"g1", "g2"} { // 1,321 coins of a-v5 and 679 of a-v5b
		if _, err := e.eco.SendGift(ctx, gift(k, "v5", "c1", "lion")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.eco.Refund(ctx, refund("a-v5", "r-v5", 0), economy.OweCoins); err != nil {
		t.Fatal(err)
	}
	// The 642 coins left of a-v5b repay 642 of the 1,321 owed; they carry the
	// 9.72 of its value the gift did not relieve (19.99 − 10.27), which
	// recovers that much of the 19.99 loss.
	e.want(t, economy.CoinWallet("v5"), "0")
	e.want(t, economy.CoinDebt("v5"), "679")
	e.want(t, economy.FiatAccount(economy.RefundLoss, "USD"), "10.27")
	if _, err := e.eco.SendGift(ctx, gift("g3", "v5", "c1", "rose")); !errors.Is(err, economy.ErrInDebt) {
		t.Fatalf("gift while in debt: %v", err)
	}
	verifyClean(t, e)
}

// Paid coins a gift reversal gives back to a viewer who owes coins repay the
// debt at once, so the viewer may gift again without buying first.
func TestGiftReversalRepaysDebt(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	e.buy(t, "v1", "a-v1b")
	g1, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion")) // 100 promo and 900 of a-v1
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.eco.SendGift(ctx, gift("g2", "v1", "c1", "lion")); err != nil { // 421 of a-v1, 579 of a-v1b
		t.Fatal(err)
	}
	if _, err := e.eco.Refund(ctx, refund("a-v1b", "r-v1b", 0), economy.OweCoins); err != nil {
		t.Fatal(err)
	}
	e.want(t, economy.CoinDebt("v1"), "579")
	e.want(t, economy.CoinWallet("v1"), "0")
	rev, err := e.eco.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "rev-g1", GiftTx: g1.ID.String(), Reason: "fraud"})
	if err != nil {
		t.Fatal(err)
	}
	e.want(t, economy.CoinDebt("v1"), "0")
	e.want(t, economy.CoinWallet("v1"), "321") // 900 back, 579 of them repaying
	e.want(t, economy.PromoWallet("v1"), "100")
	again, err := e.eco.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "rev-g1", GiftTx: g1.ID.String(), Reason: "fraud"})
	if err != nil || !again.Replayed || again.ID != rev.ID {
		t.Fatalf("retried reversal: %v", err)
	}
	e.want(t, economy.CoinWallet("v1"), "321")
	if _, err := e.eco.SendGift(ctx, gift("g3", "v1", "c1", "rose")); err != nil {
		t.Fatalf("gift after the reversal repaid the debt: %v", err)
	}
	verifyClean(t, e)
}

// Two debt refunds of one user, the second of the purchase whose coins
// repaid the first one's debt, are reversed in either order: the user ends
// with every coin of the three purchases not spent on the gift, owing
// nothing, and no refund loss is left.
//
// Reversed first, r-v1 takes its debt back by undoing a-v1c's repayment;
// r-v1b's debt was then repaid by a-v1b's own coins, which cannot return to
// its lot until the reversal restores the lot, so that reversal posts apart
// from its debt. A crash between the two is finished by a retry, and
// purchases racing the reversals (their settlements repaying the debt while
// it is taken back) change nothing but the coins they add.
func TestReverseTwoDebtRefundsInEitherOrder(t *testing.T) {
	for _, tt := range []struct {
		order []string
		crash bool // before r-v1b's debt is taken back
		calls int  // each reversal asked for at once by this many callers
		buys  int  // purchases racing each reversal
		// A purchase's settlement repays the debt right after the first
		// reversal undoes a-v1c's repayment, before it reads the debt.
		repaidAfterUndo bool
	}{
		{order: []string{"r-v1", "r-v1b"}, calls: 1},
		{order: []string{"r-v1", "r-v1b"}, crash: true, calls: 1},
		{order: []string{"r-v1", "r-v1b"}, calls: 4},
		{order: []string{"r-v1", "r-v1b"}, calls: 2, buys: 2},
		{order: []string{"r-v1", "r-v1b"}, calls: 1, repaidAfterUndo: true},
		{order: []string{"r-v1b", "r-v1"}, calls: 1},
	} {
		order := tt.order
		t.Run(fmt.Sprintf("%s first, crash %t, %d callers, %d purchases, repaid after undo %t", order[0], tt.crash, tt.calls, tt.buys, tt.repaidAfterUndo), func(t *testing.T) {
			e := giftEnv(t, 1)
			ctx := context.Background()
			// Refunding a-v1b counts the 900 that repaid the debt as spent:
			// owed again.
			repaidThenRefunded(t, e, economy.OweCoins)
			e.want(t, economy.CoinDebt("v1"), "900")
			e.buy(t, "v1", "a-v1c") // repays it
			e.want(t, economy.CoinDebt("v1"), "0")
			e.want(t, economy.CoinWallet("v1"), "421")

			if tt.crash {
				crash := errors.New("crash")
				crashing := economy.New(racingLedger{Ledger: e.svc, victimKey: "refund-reversal-debt:", before: func(context.Context) error { return crash }},
					e.cat, func() time.Time { return t0 })
				if _, err := crashing.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: order[0]}); err != nil {
					t.Fatalf("reversing %s: %v", order[0], err)
				}
				if _, err := crashing.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: order[1]}); !errors.Is(err, crash) {
					t.Fatalf("reversing %s, crashing before its debt: %v", order[1], err)
				}
				// a-v1b's 421 unspent coins are back, and the 900 of it
				// that repaid r-v1's debt; the 900 it owes are not yet
				// taken back, so 900 coins repay them again meanwhile.
				e.want(t, economy.CoinWallet("v1"), "2163")
				e.want(t, economy.CoinDebt("v1"), "0")
			}
			if tt.repaidAfterUndo {
				raced := false
				racing := racingLedger{Ledger: e.svc, victimKey: "debt-settle-reversal:", after: func(context.Context) error {
					if !raced {
						raced = true
						e.buy(t, "v1", "a-v1-"+order[0]+"-0")
					}
					return nil
				}}
				if _, err := economy.New(racing, e.cat, func() time.Time { return t0 }).ReverseRefund(ctx,
					economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: order[0]}); err != nil {
					t.Fatalf("reversing %s, its debt repaid again after an undo: %v", order[0], err)
				}
			}
			for j, id := range order {
				if tt.repaidAfterUndo && j == 0 {
					continue
				}
				var wg sync.WaitGroup
				originals := make([]bool, tt.calls)
				for i := range tt.calls {
					wg.Add(1)
					go func() {
						defer wg.Done()
						tx, err := e.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: id})
						if err != nil {
							t.Errorf("reversing %s: %v", id, err)
							return
						}
						originals[i] = !tx.Replayed
					}()
				}
				for i := range tt.buys {
					wg.Add(1)
					go func() {
						defer wg.Done()
						e.buy(t, "v1", fmt.Sprintf("a-v1-%s-%d", id, i))
					}()
				}
				wg.Wait()
				if n := strings.Count(fmt.Sprint(originals), "true"); n != 1 && !tt.crash {
					t.Errorf("reversing %s: %d callers answered with the original, want 1", id, n)
				}
			}
			if t.Failed() {
				return
			}
			// 421 of a-v1, all 1,321 of a-v1b, a-v1c and the racing purchases.
			bought := tt.buys * len(order)
			if tt.repaidAfterUndo {
				bought = 1
			}
			wallet := dec("3063").Add(dec("1321").Mul(decimal.NewFromInt(int64(bought))))
			purchases := decimal.NewFromInt(int64(3 + bought))
			e.want(t, economy.CoinDebt("v1"), "0")
			e.want(t, economy.CoinWallet("v1"), wallet.String())
			e.want(t, economy.FiatAccount(economy.RefundLoss, "USD"), "0")
			e.want(t, economy.FiatAccount(economy.ReceivableAppStore+":apple", "USD"), dec("13.99").Mul(purchases).String())
			// Retries change nothing.
			for _, id := range order {
				again, err := e.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: id})
				if err != nil || !again.Replayed {
					t.Fatalf("retried reversal of %s: %v", id, err)
				}
			}
			e.want(t, economy.CoinWallet("v1"), wallet.String())
			e.want(t, economy.CoinDebt("v1"), "0")
			verifyClean(t, e)
		})
	}
}

// A debt repaid with coins of a purchase refunded since under another
// policy cannot be taken back until that refund is reversed: the reversal
// is refused on refund_id, naming what to do, with nothing posted but the
// settlements it undid on the way repaid again, and succeeds once the
// other refund is reversed.
func TestReverseDebtRefundRepaidFromAnotherRefundedPurchase(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	// Refunded with the clawback policy, the 900 are refund loss, not owed.
	repaidThenRefunded(t, e, economy.ClawbackThenLoss)
	e.want(t, economy.CoinDebt("v1"), "0")
	e.want(t, economy.CoinWallet("v1"), "0")
	// A newer settlement, which the reversal undoes before it meets a-v1b's:
	// 333 coins of a-v1c owed after its refund, repaid by a-v1d.
	e.buy(t, "v1", "a-v1c")
	if _, err := e.eco.SendGift(ctx, gift("g2", "v1", "c1", "odd")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eco.Refund(ctx, refund("a-v1c", "r-v1c", 0), economy.OweCoins); err != nil {
		t.Fatal(err)
	}
	e.buy(t, "v1", "a-v1d")
	e.want(t, economy.CoinDebt("v1"), "0")
	e.want(t, economy.CoinWallet("v1"), "988")

	_, err := e.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: "r-v1"})
	if !errors.Is(err, economy.ErrRepaidFromRefunded) || ledger.KindOf(err) != ledger.FailedPrecondition || ledger.FieldOf(err) != "refund_id" {
		t.Fatalf("reversal while the repayment's purchase is refunded: %v", err)
	}
	if reason := ledger.Reason(err); !strings.Contains(reason, "drew on apple purchase a-v1b, refunded by r-v1b: ") {
		t.Errorf("the refusal does not name the refund to reverse first: %s", reason)
	}
	if _, err := e.svc.TransactionByKey(ctx, "refund-reversal:apple:r-v1"); !errors.Is(err, ledger.ErrTransactionNotFound) {
		t.Fatalf("a refused reversal posted: %v", err)
	}
	e.want(t, economy.CoinDebt("v1"), "0") // a-v1d's repayment, undone on the way, is made again
	e.want(t, economy.CoinWallet("v1"), "988")

	for _, id := range []string{"r-v1b", "r-v1"} {
		if _, err := e.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: id}); err != nil {
			t.Fatalf("reversing %s: %v", id, err)
		}
	}
	e.want(t, economy.CoinDebt("v1"), "0")
	e.want(t, economy.CoinWallet("v1"), "2730") // 421 of a-v1, all of a-v1b and a-v1d, less the 333 owed for a-v1c's
	verifyClean(t, e)
}

// A settlement that repaid a debt with coins of two purchases, one the
// refund's own and one refunded since under another policy, refuses the
// refund's reversal before anything is posted, whichever of the two lots it
// drew on first: restoring its own lot would not let that settlement be
// undone. Once the other refund is reversed, the retry posts apart from its
// debt and takes the debt back.
func TestReverseDebtRefundWhoseRepaymentSpansARefundedPurchase(t *testing.T) {
	for _, ownFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("own lot first %t", ownFirst), func(t *testing.T) {
			e := giftEnv(t, 1)
			ctx := context.Background()
			if _, err := e.cat.AddGift(ctx, economy.Gift{ID: "g642", Coins: 642}); err != nil {
				t.Fatal(err)
			}
			send := func(key, giftID string) {
				t.Helper()
				if _, err := e.eco.SendGift(ctx, gift(key, "v5", "c1", giftID)); err != nil {
					t.Fatal(err)
				}
			}
			refundAs := func(store, id string, policy economy.RefundPolicy) {
				t.Helper()
				if _, err := e.eco.Refund(ctx, refund(store, id, 0), policy); err != nil {
					t.Fatal(err)
				}
			}
			reverse := func(id string) error {
				_, err := e.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: id})
				return err
			}
			e.buy(t, "v5", "a-v5")
			send("g1", "lion")   // 1,000 of a
			wantWallet := "2642" // four purchases less three gifts
			if ownFirst {
				e.buy(t, "v5", "b-v5")
				send("g2", "lion") // a's last 321 and 679 of b
				e.buy(t, "v5", "z-v5")
				refundAs("a-v5", "r-a", economy.OweCoins)   // 1,321 owed, repaid by b's 642 and 679 of z
				refundAs("z-v5", "r-z", economy.AbsorbLoss) // takes z's 642 left
				wantWallet = "3284"                         // four purchases less two gifts
			} else {
				e.buy(t, "v5", "z-v5")
				send("g2", "lion") // a's last 321 and 679 of z
				e.buy(t, "v5", "b-v5")
				refundAs("a-v5", "r-a", economy.OweCoins) // 1,321 owed, repaid by z's 642 and 679 of b
				refundAs("z-v5", "r-z", economy.AbsorbLoss)
				send("g3", "g642") // b's last 642
			}
			e.want(t, economy.CoinWallet("v5"), "0")
			refundAs("b-v5", "r-b", economy.OweCoins) // b's coins that repaid r-a's debt, and its gifts': owed again
			e.want(t, economy.CoinDebt("v5"), "1321")
			e.buy(t, "v5", "c-v5") // repays it
			e.want(t, economy.CoinDebt("v5"), "0")
			if err := reverse("r-a"); err != nil { // undoes c's repayment, which leaves r-b's debt to take back
				t.Fatal(err)
			}
			e.want(t, economy.CoinWallet("v5"), "1321")

			err := reverse("r-b")
			if !errors.Is(err, economy.ErrRepaidFromRefunded) || ledger.FieldOf(err) != "refund_id" {
				t.Fatalf("reversing r-b, whose debt's repayment drew on z, refunded since: %v", err)
			}
			if reason := ledger.Reason(err); !strings.Contains(reason, "drew on apple purchase z-v5, refunded by r-z: ") {
				t.Errorf("the refusal does not name z's refund: %s", reason)
			}
			if _, err := e.svc.TransactionByKey(ctx, "refund-reversal:apple:r-b"); !errors.Is(err, ledger.ErrTransactionNotFound) {
				t.Fatalf("a refused reversal posted apart from its debt: %v", err)
			}
			e.want(t, economy.CoinWallet("v5"), "1321")
			e.want(t, economy.CoinDebt("v5"), "0")

			for _, id := range []string{"r-z", "r-b"} {
				if err := reverse(id); err != nil {
					t.Fatalf("reversing %s: %v", id, err)
				}
			}
			e.want(t, economy.CoinDebt("v5"), "0")
			e.want(t, economy.CoinWallet("v5"), wantWallet)
			verifyClean(t, e)
		})
	}
}

// repaidThenRefunded: v1 gifts 900 paid coins of a-v1, which is refunded
// under the debt policy (r-v1: 900 owed); 900 coins of the next purchase,
// a-v1b, repay them, and a-v1b is refunded under policy (r-v1b).
func repaidThenRefunded(t *testing.T, e *env, policy economy.RefundPolicy) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion")); err != nil { // 100 promo + 900 paid of a-v1
		t.Fatal(err)
	}
	if _, err := e.eco.Refund(ctx, refund("a-v1", "r-v1", 0), economy.OweCoins); err != nil {
		t.Fatal(err)
	}
	e.buy(t, "v1", "a-v1b")
	if _, err := e.eco.Refund(ctx, refund("a-v1b", "r-v1b", 0), policy); err != nil {
		t.Fatal(err)
	}
}

// A settlement raced on every attempt answers the operation that committed
// ErrSettlementRaced (Aborted: retry with the same key), in the domain's
// words; the retry settles. Left unsettled, the debt does not refuse the
// viewer's next gift: it is repaid first from the coins they hold.
func TestSettlementRacedOnEveryAttempt(t *testing.T) {
	for _, then := range []string{"retry", "gift"} {
		t.Run(then, func(t *testing.T) {
			e := giftEnv(t, 1)
			ctx := context.Background()
			if _, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion")); err != nil { // 100 promo + 900 paid of a-v1
				t.Fatal(err)
			}
			if _, err := e.eco.Refund(ctx, refund("a-v1", "r-v1", 0), economy.OweCoins); err != nil { // owes 900
				t.Fatal(err)
			}
			// Each settlement finds the debt moved since it read it: a coin
			// more owed (a stand-in for a refund racing it).
			races := 0
			racing := racingLedger{Ledger: e.svc, victimKey: "debt-settle:", before: func(ctx context.Context) error {
				races++
				_, err := e.svc.Post(ctx, ledger.PostRequest{IdempotencyKey: fmt.Sprintf("race-%d", races), Kind: "test-debt",
					Postings: []ledger.PostingRequest{
						{Account: economy.CoinDebt("v1"), Side: ledger.Debit, Amount: dec("1")},
						{Account: economy.CoinIssued, Side: ledger.Credit, Amount: dec("1")},
					}})
				return err
			}}
			raced := economy.New(racing, e.cat, func() time.Time { return t0 })
			buy := economy.PurchaseRequest{Channel: economy.Apple, StoreTransactionID: "a-v1b",
				User: "v1", PackID: "p1321", AmountPaid: dec("19.99"), Currency: "USD", PurchasedAt: t0}
			tx, err := raced.Purchase(ctx, buy)
			if !errors.Is(err, economy.ErrSettlementRaced) || ledger.KindOf(err) != ledger.Aborted || tx == nil {
				t.Fatalf("purchase whose settlement was raced on every attempt: %v, %v", tx, err)
			}
			if strings.Contains(ledger.Reason(err), "expect") {
				t.Errorf("the ledger's words reach the caller: %v", err)
			}
			e.want(t, economy.CoinDebt("v1"), "905")
			e.want(t, economy.CoinWallet("v1"), "1321")
			switch then {
			case "retry":
				again, err := e.eco.Purchase(ctx, buy)
				if err != nil || !again.Replayed {
					t.Fatalf("retried purchase: %v", err)
				}
				e.want(t, economy.CoinWallet("v1"), "416")
			case "gift":
				if _, err := e.eco.SendGift(ctx, gift("g2", "v1", "c1", "rose")); err != nil {
					t.Fatalf("gift from a viewer whose coins can repay the debt: %v", err)
				}
				e.want(t, economy.CoinWallet("v1"), "415")
			}
			e.want(t, economy.CoinDebt("v1"), "0")
			verifyClean(t, e)
		})
	}
}
