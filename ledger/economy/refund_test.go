package economy_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
)

func refund(storeID, refundID string, coins int64) economy.RefundRequest {
	return economy.RefundRequest{Channel: economy.Apple, StoreTransactionID: storeID, RefundID: refundID, Coins: coins, RefundedAt: t0}
}

func TestRefundPostings(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	e.buy(t, "v5", "a-v5")
	e.buy(t, "v6", "a-v6")
	g, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion")) // 100 promo + 900 paid coins of a-v1
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		req    economy.RefundRequest
		policy economy.RefundPolicy
		want   string
	}{
		{"unspent: burn the coins, reverse the purchase's legs", refund("a-v5", "r-v5", 0), economy.ClawbackThenLoss,
			"credit COIN:issued 1321; credit Expense:StoreCommission:USD 6; credit Receivable:AppStore:apple:USD 13.99; debit COIN:wallet:v5 1321; debit Liability:DeferredRevenue:Coins:USD 19.99"},
		{"partial (Google voidedQuantity): 321 of 1321 coins, 4.86 of 19.99 and 1.46 of the 6.00 fee", refund("a-v6", "r-v6-1", 321), economy.ClawbackThenLoss,
			"credit COIN:issued 321; credit Expense:StoreCommission:USD 1.46; credit Receivable:AppStore:apple:USD 3.4; debit COIN:wallet:v6 321; debit Liability:DeferredRevenue:Coins:USD 4.86"},
		{"the rest: exactly what is left of each leg", refund("a-v6", "r-v6-2", 0), economy.ClawbackThenLoss,
			"credit COIN:issued 1000; credit Expense:StoreCommission:USD 4.54; credit Receivable:AppStore:apple:USD 10.59; debit COIN:wallet:v6 1000; debit Liability:DeferredRevenue:Coins:USD 15.13"},
		{"spent coins: 900 went into a pending gift; 450 of its 500 diamonds come back and their 2.25 reduce the 13.62 loss",
			refund("a-v1", "r-v1", 0), economy.ClawbackThenLoss,
			"credit COIN:issued 421; credit DIAMOND:issued 450; credit Expense:RefundLoss:USD 2.25; credit Expense:StoreCommission:USD 6; credit Receivable:AppStore:apple:USD 13.99; " +
				"debit COIN:wallet:v1 421; debit DIAMOND:pending:c1:20261128 450; debit Expense:RefundLoss:USD 13.62; debit Liability:CreatorPayable:c1:USD 2.25; debit Liability:DeferredRevenue:Coins:USD 6.37"},
	}
	for _, tt := range tests {
		tx, err := e.eco.Refund(ctx, tt.req, tt.policy)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := postings(tx); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
	e.want(t, economy.PendingDiamonds("c1", releaseDay), "50")
	e.want(t, economy.CreatorPayable("c1", "USD"), "0.25")
	e.want(t, economy.FiatAccount(economy.RefundLoss, "USD"), "11.37")

	// The store retries: the original; the refund id reused for another refund: refused.
	again, err := e.eco.Refund(ctx, tests[0].req, economy.ClawbackThenLoss)
	if err != nil || !again.Replayed {
		t.Fatalf("retried refund: %v", err)
	}
	other := tests[0].req
	other.Coins = 5
	if _, err := e.eco.Refund(ctx, other, economy.ClawbackThenLoss); !errors.Is(err, ledger.ErrIdempotencyConflict) {
		t.Errorf("refund id reused: %v", err)
	}
	if _, err := e.eco.Refund(ctx, tests[0].req, economy.AbsorbLoss); !errors.Is(err, ledger.ErrIdempotencyConflict) {
		t.Errorf("refund id reused under another policy: %v", err)
	}
	other = tests[0].req
	other.RefundedAt = other.RefundedAt.Add(time.Second)
	if _, err := e.eco.Refund(ctx, other, economy.ClawbackThenLoss); !errors.Is(err, ledger.ErrIdempotencyConflict) {
		t.Errorf("refund id reused with another time: %v", err)
	}
	refusals := []struct {
		name  string
		req   economy.RefundRequest
		is    error
		field string
	}{
		{"unknown purchase", refund("a-nope", "r-x1", 0), economy.ErrPurchaseNotFound, "store_transaction_id"},
		{"already all refunded", refund("a-v5", "r-x2", 0), economy.ErrBeyondPurchase, "coins"},
	}
	e.buy(t, "v7", "a-v7")
	refusals = append(refusals, struct {
		name  string
		req   economy.RefundRequest
		is    error
		field string
	}{"beyond the purchase", refund("a-v7", "r-x4", 1322), economy.ErrBeyondPurchase, "coins"})
	for _, r := range refusals {
		if _, err := e.eco.Refund(ctx, r.req, economy.ClawbackThenLoss); !errors.Is(err, r.is) || ledger.FieldOf(err) != r.field {
			t.Errorf("%s: %v", r.name, err)
		}
	}
	// A gift whose coins' purchase was refunded cannot be reversed: the coins
	// would go back into a refunded lot.
	if _, err := e.eco.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "fraud", GiftTx: g.ID.String()}); !errors.Is(err, ledger.ErrLotRefunded) {
		t.Errorf("reversing a gift of refunded coins: %v", err)
	}

	// Apple REFUND_REVERSED: exactly what the refund took comes back.
	rev, err := e.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: "r-v1"})
	if err != nil {
		t.Fatal(err)
	}
	want := "credit COIN:wallet:v1 421; credit DIAMOND:pending:c1:20261128 450; credit Expense:RefundLoss:USD 13.62; credit Liability:CreatorPayable:c1:USD 2.25; credit Liability:DeferredRevenue:Coins:USD 6.37; " +
		"debit COIN:issued 421; debit DIAMOND:issued 450; debit Expense:RefundLoss:USD 2.25; debit Expense:StoreCommission:USD 6; debit Receivable:AppStore:apple:USD 13.99"
	if got := postings(rev); got != want {
		t.Errorf("refund reversal:\n got %s\nwant %s", got, want)
	}
	e.want(t, economy.CoinWallet("v1"), "421")
	e.want(t, economy.PendingDiamonds("c1", releaseDay), "500")
	e.want(t, economy.FiatAccount(economy.RefundLoss, "USD"), "0")
	if _, err := e.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: "r-v1"}); err != nil {
		t.Errorf("retried refund reversal: %v", err)
	}
	if _, err := e.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: "r-none"}); !errors.Is(err, economy.ErrRefundNotFound) {
		t.Errorf("reversing an unknown refund: %v", err)
	}
	// The gift can be reversed again now, its lot no longer refunded.
	if _, err := e.eco.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "fraud", GiftTx: g.ID.String()}); err != nil {
		t.Errorf("reversing the gift after the refund was reversed: %v", err)
	}
	verifyClean(t, e)
}

// racingLedger lets other writes commit just before each of the victim's
// posts (before: between a refund's plan and its commit, as concurrent
// requests can), or just after one (after). The victim's key starts with
// victimKey.
type racingLedger struct {
	economy.Ledger
	victimKey     string
	before, after func(ctx context.Context) error
}

func (l racingLedger) Post(ctx context.Context, req ledger.PostRequest) (*ledger.Transaction, error) {
	if !strings.HasPrefix(req.IdempotencyKey, l.victimKey) {
		return l.Ledger.Post(ctx, req)
	}
	if l.before != nil {
		if err := l.before(ctx); err != nil {
			return nil, err
		}
	}
	tx, err := l.Ledger.Post(ctx, req)
	if l.after != nil {
		if err := l.after(ctx); err != nil {
			return nil, err
		}
	}
	return tx, err
}

// TestRefundRaced: a refund whose purchase's lot moves between its plan and
// its commit plans again from the lot's new state, so its shares of the
// store's amounts still add up to exactly the purchase's; a lot that moves
// on every attempt is answered Aborted (or beyond the purchase, for a count
// that no longer fits), in the domain's words.
func TestRefundRaced(t *testing.T) {
	oneCoin := func(id string) economy.RefundRequest { return refund("a-v8", id, 1) }
	tests := []struct {
		name    string
		victim  economy.RefundRequest
		race    func(ctx context.Context, e *env, attempt int) error
		is      error
		kind    ledger.Kind
		field   string
		attempt int // the number of posts the victim made
	}{
		{"another refund commits first", oneCoin("r-victim"),
			func(ctx context.Context, e *env, attempt int) error {
				if attempt > 1 {
					return nil
				}
				_, err := e.eco.Refund(ctx, oneCoin("r-first"), economy.ClawbackThenLoss)
				return err
			}, nil, 0, "", 2},
		{"the store's retry commits first, after another refund", oneCoin("r-victim"),
			func(ctx context.Context, e *env, attempt int) error {
				if attempt > 1 {
					return nil
				}
				if _, err := e.eco.Refund(ctx, oneCoin("r-first"), economy.ClawbackThenLoss); err != nil {
					return err
				}
				_, err := e.eco.Refund(ctx, oneCoin("r-victim"), economy.ClawbackThenLoss)
				return err
			}, nil, 0, "", 1},
		{"a gift spends the lot's coins first", refund("a-v8", "r-victim", 0),
			func(ctx context.Context, e *env, attempt int) error {
				if attempt > 1 {
					return nil
				}
				_, err := e.eco.SendGift(ctx, gift("g-race", "v8", "c1", "lion"))
				return err
			}, nil, 0, "", 2},
		{"the rest, raced on every attempt", refund("a-v8", "r-victim", 0),
			func(ctx context.Context, e *env, attempt int) error {
				_, err := e.eco.Refund(ctx, oneCoin(fmt.Sprintf("r-race-%d", attempt)), economy.ClawbackThenLoss)
				return err
			}, nil, ledger.Aborted, "store_transaction_id", 5},
		{"a count raced on every attempt until it no longer fits", refund("a-v8", "r-victim", 1317),
			func(ctx context.Context, e *env, attempt int) error {
				_, err := e.eco.Refund(ctx, oneCoin(fmt.Sprintf("r-race-%d", attempt)), economy.ClawbackThenLoss)
				return err
			}, economy.ErrBeyondPurchase, ledger.FailedPrecondition, "coins", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := giftEnv(t)
			ctx := context.Background()
			receivable, fee := economy.FiatAccount(economy.ReceivableAppStore+":apple", "USD"), economy.FiatAccount(economy.StoreCommission, "USD")
			before := map[string]string{}
			for _, a := range []string{receivable, fee} {
				b, err := e.svc.Balance(ctx, a, time.Time{})
				if err != nil {
					t.Fatal(err)
				}
				before[a] = b.String()
			}
			e.buy(t, "v8", "a-v8")
			attempts := 0
			victim := racingLedger{Ledger: e.svc, victimKey: "refund:apple:r-victim", before: func(ctx context.Context) error {
				attempts++
				return tt.race(ctx, e, attempts)
			}}
			raced := economy.New(victim, e.cat, func() time.Time { return t0 })
			tx, err := raced.Refund(ctx, tt.victim, economy.ClawbackThenLoss)
			if attempts != tt.attempt {
				t.Errorf("the victim posted %d times, want %d", attempts, tt.attempt)
			}
			if tt.kind == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if tx.Replayed != (tt.attempt == 1) {
					t.Errorf("replayed %v", tx.Replayed)
				}
				// Refunding what is left must bring the store's accounts back
				// to exactly where they were before the purchase.
				if _, err := e.eco.Refund(ctx, refund("a-v8", "r-rest", 0), economy.ClawbackThenLoss); err != nil &&
					!errors.Is(err, economy.ErrBeyondPurchase) {
					t.Fatal(err)
				}
				for account, want := range before {
					e.want(t, account, want)
				}
			} else {
				if (tt.is != nil && !errors.Is(err, tt.is)) || ledger.KindOf(err) != tt.kind || ledger.FieldOf(err) != tt.field {
					t.Fatalf("got %v (kind %v, field %q), want %v %v on %s", err, ledger.KindOf(err), ledger.FieldOf(err), tt.is, tt.kind, tt.field)
				}
				if reason := ledger.Reason(err); strings.Contains(reason, "ledger.") || strings.Contains(reason, "refund_lot") {
					t.Errorf("reason %q names the ledger's operations or fields", reason)
				}
			}
			verifyClean(t, e)
		})
	}
}

// TestRefundAfterRelease: earnings already released are not clawed back;
// the spent coins' value is all refund loss.
func TestRefundAfterRelease(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	if _, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion")); err != nil {
		t.Fatal(err)
	}
	later := economy.New(e.svc, e.cat, func() time.Time { return releaseDay.Add(24 * time.Hour) })
	if _, err := later.ReleaseEarnings(ctx, releaseDay.Add(24*time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	tx, err := later.Refund(ctx, refund("a-v1", "r-v1", 0), economy.ClawbackThenLoss)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(postings(tx), "DIAMOND") {
		t.Errorf("released diamonds clawed back: %s", postings(tx))
	}
	e.want(t, economy.FiatAccount(economy.RefundLoss, "USD"), "13.62")
	e.want(t, economy.AvailableDiamonds("c1"), "500")
	verifyClean(t, e)
}

func TestRefundAbsorbLoss(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	if _, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion")); err != nil {
		t.Fatal(err)
	}
	tx, err := e.eco.Refund(ctx, refund("a-v1", "r-v1", 0), economy.AbsorbLoss)
	if err != nil {
		t.Fatal(err)
	}
	want := "credit COIN:issued 421; credit Expense:StoreCommission:USD 6; credit Receivable:AppStore:apple:USD 13.99; debit COIN:wallet:v1 421; debit Expense:RefundLoss:USD 13.62; debit Liability:DeferredRevenue:Coins:USD 6.37"
	if got := postings(tx); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	e.want(t, economy.PendingDiamonds("c1", releaseDay), "500")
	verifyClean(t, e)
}

// TestRefundAfterADayWasReleased: a refund whose spent coins went into gifts
// with two release days, the earlier one over and released and the later
// still pending, claws back the later day's diamonds and books the released
// ones' value as loss.
func TestRefundAfterADayWasReleased(t *testing.T) {
	e := giftEnv(t)
	ctx := context.Background()
	if _, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "odd")); err != nil { // 100 promo + 233 paid coins, released on day 1
		t.Fatal(err)
	}
	t2 := t0.Add(48 * time.Hour)
	two := economy.New(e.svc, e.cat, func() time.Time { return t2 })
	g2 := gift("g2", "v1", "c1", "odd") // 333 paid coins, released two days later
	g2.SentAt = t2
	if _, err := two.SendGift(ctx, g2); err != nil {
		t.Fatal(err)
	}
	day1, day2 := economy.PendingDiamonds("c1", releaseDay), economy.PendingDiamonds("c1", releaseDay.Add(48*time.Hour))
	e.want(t, day2, "166")
	// The first release day is over and the job has released it; the
	// second is not.
	now := releaseDay.Add(36 * time.Hour)
	later := economy.New(e.svc, e.cat, func() time.Time { return now })
	if rep, err := later.ReleaseEarnings(ctx, now, nil); err != nil || rep.Released != 1 {
		t.Fatalf("release: %+v %v", rep, err)
	}
	e.want(t, day1, "0")
	tx, err := later.Refund(ctx, refund("a-v1", "r-v1", 0), economy.ClawbackThenLoss)
	if err != nil {
		t.Fatal(err)
	}
	// g2's 166.5 diamonds come back (the half out of c1's carry) with their
	// 0.83 USD; g1's 233 paid coins, released, stay loss.
	want := "credit COIN:issued 755; credit DIAMOND:issued 166; credit DIAMOND_FRAC:issued 0.5; credit Expense:RefundLoss:USD 0.83; credit Expense:StoreCommission:USD 6; credit Receivable:AppStore:apple:USD 13.99; " +
		"debit COIN:wallet:v1 755; debit DIAMOND:pending:c1:20261130 166; debit DIAMOND_FRAC:carry:c1 0.5; debit Expense:RefundLoss:USD 8.57; debit Liability:CreatorPayable:c1:USD 0.83; debit Liability:DeferredRevenue:Coins:USD 11.42"
	if got := postings(tx); got != want {
		t.Errorf("refund:\n got %s\nwant %s", got, want)
	}
	e.want(t, day2, "0")
	verifyClean(t, e)
}

// refundWithClawbacks refunds with ClawbackThenLoss and returns the plan
// the refund stored.
func refundWithClawbacks(t *testing.T, eco *economy.Economy, r economy.RefundRequest) economy.RefundPlan {
	t.Helper()
	tx, err := eco.Refund(context.Background(), r, economy.ClawbackThenLoss)
	if err != nil {
		t.Fatal(err)
	}
	var plan economy.RefundPlan
	if err := json.Unmarshal(tx.Metadata, &plan); err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestRefundClawsBackAGranuleANextDayGiftMinted: a refund whose spent coins
// went into gifts on two days, the first day's gift leaving its half diamond
// in c1's carry and the next day's gifts minting that carry's granule into
// the next day's pending account. Taking the first gift's half back needs a
// granule its own day never held: the next day's account lends it, rather
// than the whole clawback being given up as loss.
func TestRefundClawsBackAGranuleANextDayGiftMinted(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	e.buy(t, "v5", "a-v5")
	if _, err := e.eco.SendGift(ctx, gift("g1", "v5", "c1", "rose")); err != nil {
		t.Fatal(err)
	}
	next, _ := e.rosesNextDay(t, "v5", "s2", "s3", "s4")
	own, later := economy.PendingDiamonds("c1", releaseDay), economy.PendingDiamonds("c1", releaseDay.Add(24*time.Hour))
	e.want(t, own, "0")
	e.want(t, later, "2")
	r := refund("a-v5", "r-v5", 0)
	r.RefundedAt = t0.Add(24 * time.Hour)
	plan := refundWithClawbacks(t, next, r)
	if plan.Policy != economy.ClawbackThenLoss || len(plan.Clawbacks) != 2 {
		t.Fatalf("plan: policy %s, clawbacks %+v", plan.Policy, plan.Clawbacks)
	}
	// All four half diamonds come back: the granule out of the next day's
	// account, with its 0.01 USD off the loss.
	e.want(t, later, "0")
	e.want(t, own, "0")
	e.want(t, economy.DiamondCarry("c1"), "0")
	e.want(t, economy.CreatorPayable("c1", "USD"), "0")
	verifyClean(t, e)

	// Reversed, the granule goes back where it came from.
	if _, err := next.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: "r-v5"}); err != nil {
		t.Fatal(err)
	}
	e.want(t, later, "2")
	e.want(t, own, "0")
	e.want(t, economy.DiamondCarry("c1"), "0")
	e.want(t, economy.CreatorPayable("c1", "USD"), "0.01")
	verifyClean(t, e)
}

// TestRefundDropsAClawbackWhoseGranuleWasReleased: the granule that taking
// a gift's fraction back needs was minted by late gifts into the day before
// and released with it. That clawback is dropped (its value stays loss),
// and the refund still claws back the other earners' pending diamonds,
// rather than giving every clawback up.
func TestRefundDropsAClawbackWhoseGranuleWasReleased(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	e.buy(t, "v5", "a-v5")
	midnight := t0.Add(12 * time.Hour)
	at := func(d time.Duration) *economy.Economy {
		return economy.New(e.svc, e.cat, func() time.Time { return midnight.Add(d) })
	}
	send := func(eco *economy.Economy, key, creator, giftID string, sent time.Time) {
		t.Helper()
		g := gift(key, "v5", creator, giftID)
		g.SentAt = sent
		if _, err := eco.SendGift(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	send(at(10*time.Minute), "g1", "c1", "rose", midnight.Add(10*time.Minute)) // half a diamond into c1's carry
	send(at(10*time.Minute), "lion", "c2", "lion", midnight.Add(10*time.Minute))
	for _, k := range []string{"s2", "s3", "s4"} { // sent before midnight, seen after: the granule goes to the day before
		send(at(15*time.Minute), k, "c1", "rose", midnight.Add(-20*time.Minute))
	}
	before, own := economy.PendingDiamonds("c1", releaseDay), economy.PendingDiamonds("c1", releaseDay.Add(24*time.Hour))
	e.want(t, before, "2")
	e.want(t, own, "0")
	over := releaseDay.Add(25 * time.Hour) // the day before is over, g1's is not
	if rep, err := at(over.Sub(midnight)).ReleaseEarnings(ctx, over, nil); err != nil || rep.Released == 0 {
		t.Fatalf("release: %+v %v", rep, err)
	}
	e.want(t, before, "0")
	r := refund("a-v5", "r-v5", 0)
	r.RefundedAt = over
	plan := refundWithClawbacks(t, at(over.Sub(midnight)), r)
	var earners []string
	for _, c := range plan.Clawbacks {
		earners = append(earners, c.Earner)
	}
	if plan.Policy != economy.ClawbackThenLoss || strings.Join(earners, ",") != economy.AgencyEarner("ag1")+",c2" {
		t.Fatalf("plan: policy %s, clawbacks from %v", plan.Policy, earners)
	}
	e.want(t, economy.PendingDiamonds("c2", releaseDay.Add(24*time.Hour)), "0")
	e.want(t, economy.PendingDiamonds(economy.AgencyEarner("ag1"), releaseDay.Add(24*time.Hour)), "0")
	e.want(t, economy.DiamondCarry("c1"), "0") // c1 keeps the half diamond: loss
	verifyClean(t, e)
}

// TestRefundClawbacksBorrowFromTwoDays: two of a refund's clawbacks each
// need a granule that their own days never held, and each of two later days
// holds one: the second clawback borrows from the day the first left whole.
func TestRefundClawbacksBorrowFromTwoDays(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	e.buy(t, "v5", "a-v5")
	day := func(n int) time.Time { return t0.Add(time.Duration(n) * 24 * time.Hour) }
	send := func(key, viewer string, n int) {
		t.Helper()
		g := gift(key, viewer, "c1", "rose")
		g.SentAt = day(n)
		if _, err := economy.New(e.svc, e.cat, func() time.Time { return day(n) }).SendGift(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	// v5's three half diamonds a day leave c1's carry at 1.5; v1's next rose
	// mints the granule into its own day.
	for _, g := range []struct {
		key, viewer string
		day         int
	}{{"a1", "v5", 0}, {"a2", "v5", 0}, {"a3", "v5", 0}, {"l1", "v1", 2}, {"b1", "v5", 1}, {"b2", "v5", 1}, {"b3", "v5", 1}, {"l2", "v1", 3}} {
		send(g.key, g.viewer, g.day)
	}
	pending := func(n int) string {
		return economy.PendingDiamonds("c1", releaseDay.Add(time.Duration(n)*24*time.Hour))
	}
	for n, want := range []string{"0", "0", "2", "2"} {
		e.want(t, pending(n), want)
	}
	r := refund("a-v5", "r-v5", 0)
	r.RefundedAt = day(3)
	plan := refundWithClawbacks(t, economy.New(e.svc, e.cat, func() time.Time { return day(3) }), r)
	var lenders []string
	for _, c := range plan.Clawbacks {
		lenders = append(lenders, c.Lender)
	}
	if want := pending(3) + "," + pending(2); strings.Join(lenders, ",") != want {
		t.Errorf("lenders %v, want %s", lenders, want)
	}
	for n := range 4 {
		e.want(t, pending(n), "0")
	}
	e.want(t, economy.DiamondCarry("c1"), "1") // v1's two roses
	verifyClean(t, e)
}

// TestRefundClawbackSplitAcrossTwoDays: the refunded purchase paid for a
// gift of 166.5 diamonds whose own day holds 166 and whose carry's granule
// the next day's roses minted. Its clawback returns 83 granules from its own
// day and one lent by the next; the reversal mints them back into each.
func TestRefundClawbackSplitAcrossTwoDays(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	e.buy(t, "v5", "a-v5")
	if _, err := e.eco.SendGift(ctx, gift("odd", "v5", "c1", "odd")); err != nil {
		t.Fatal(err)
	}
	next, _ := e.rosesNextDay(t, "v1", "s2", "s3", "s4")
	own, later := economy.PendingDiamonds("c1", releaseDay), economy.PendingDiamonds("c1", releaseDay.Add(24*time.Hour))
	r := refund("a-v5", "r-v5", 0)
	r.RefundedAt = t0.Add(24 * time.Hour)
	plan := refundWithClawbacks(t, next, r)
	var parts []string
	for _, c := range plan.Clawbacks {
		parts = append(parts, c.Diamonds+" from "+cmp.Or(c.Lender, "own"))
	}
	if got, want := strings.Join(parts, ", "), "166 from own, 0.5 from "+later; got != want {
		t.Errorf("clawbacks %s, want %s", got, want)
	}
	e.want(t, own, "0")
	e.want(t, later, "0")
	e.want(t, economy.DiamondCarry("c1"), "1.5")
	verifyClean(t, e)
	if _, err := next.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: "r-v5"}); err != nil {
		t.Fatal(err)
	}
	e.want(t, own, "166")
	e.want(t, later, "2")
	e.want(t, economy.DiamondCarry("c1"), "0")
	verifyClean(t, e)
}
