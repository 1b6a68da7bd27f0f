package economy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
	"github.com/coinledger/coinledger/ledger/postgres"
)

// giftEnv: creators c1 (platform default: 50%, 0.005 USD a diamond, 7 days'
// hold) and c2 (60%, of which agency ag1 takes 20%), gifts "rose" (1 coin),
// "lion" (1,000) and "odd" (333), and viewer v1 holding 100 promo coins and
// 1,321 paid coins bought for 19.99 USD.
func giftEnv(t *testing.T, lanes ...int) *env {
	t.Helper()
	e := newEnv(t, lanes...)
	ctx := context.Background()
	for _, g := range []economy.Gift{{ID: "rose", Coins: 1}, {ID: "lion", Coins: 1000}, {ID: "odd", Coins: 333}} {
		if _, err := e.cat.AddGift(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []economy.ShareRule{
		{CreatorShare: dec("0.5"), HoldingPeriod: 7 * 24 * time.Hour, DiamondValue: dec("0.005"), DiamondCurrency: "USD"},
		{Creator: "c2", CreatorShare: dec("0.6"), Agency: "ag1", AgencyShare: dec("0.2"), HoldingPeriod: 7 * 24 * time.Hour, DiamondValue: dec("0.005"), DiamondCurrency: "USD"},
	} {
		if _, err := e.cat.AddShareRule(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []string{"c1", "c2", "v2"} {
		if err := e.cat.RegisterCreator(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	e.buy(t, "v1", "a-v1")
	if _, err := e.eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: "promo-v1", User: "v1", Coins: 100}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) buy(t *testing.T, user, storeID string) {
	t.Helper()
	if _, err := e.eco.Purchase(context.Background(), economy.PurchaseRequest{Channel: economy.Apple, StoreTransactionID: storeID,
		User: user, PackID: "p1321", AmountPaid: dec("19.99"), Currency: "USD", PurchasedAt: t0}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) want(t *testing.T, account, amount string) {
	t.Helper()
	got, err := e.svc.Balance(context.Background(), account, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(dec(amount)) {
		t.Errorf("%s = %s, want %s", account, got, amount)
	}
}

func gift(key, viewer, creator, giftID string) economy.GiftRequest {
	return economy.GiftRequest{Key: key, Viewer: viewer, Creator: creator, GiftID: giftID, StreamID: "s1", SentAt: t0}
}

var releaseDay = t0.Add(7 * 24 * time.Hour)

func TestGiftPostings(t *testing.T) {
	e := giftEnv(t, 1) // one lane: the carry is one row, so each step is exact
	ctx := context.Background()
	pending := economy.PendingDiamonds("c1", releaseDay)
	tests := []struct {
		name string
		req  economy.GiftRequest
		want string
	}{
		{"promo first, then 900 paid coins relieve 900/1321 of 19.99 = 13.618 → 13.62; 500 diamonds are 250 granules of 0.01",
			gift("g1", "v1", "c1", "lion"),
			"credit COIN:issued 1000; credit DIAMOND:pending:c1:20261128 500; credit Liability:CreatorPayable:c1:USD 2.5; credit Revenue:Gifts:USD 13.62; " +
				"debit COIN:promo:v1 100; debit COIN:wallet:v1 900; debit CostOfRevenue:CreatorShare:USD 2.5; debit DIAMOND:issued 500; debit Liability:DeferredRevenue:Coins:USD 13.62"},
		{"333 coins make 166.5 diamonds: 83 granules minted, 0.5 carried",
			gift("g2", "v1", "c1", "odd"),
			"credit COIN:issued 333; credit DIAMOND:pending:c1:20261128 166; credit DIAMOND_FRAC:carry:c1 0.5; credit Liability:CreatorPayable:c1:USD 0.83; credit Revenue:Gifts:USD 5.04; " +
				"debit COIN:wallet:v1 333; debit CostOfRevenue:CreatorShare:USD 0.83; debit DIAMOND:issued 166; debit DIAMOND_FRAC:issued 0.5; debit Liability:DeferredRevenue:Coins:USD 5.04"},
		{"a rose is half a diamond: it all goes to the carry, which reaches 1 — still under a granule",
			gift("g3", "v1", "c1", "rose"),
			"credit COIN:issued 1; credit DIAMOND_FRAC:carry:c1 0.5; credit Revenue:Gifts:USD 0.02; debit COIN:wallet:v1 1; debit DIAMOND_FRAC:issued 0.5; debit Liability:DeferredRevenue:Coins:USD 0.02"},
		{"(a second purchase)", economy.GiftRequest{}, ""},
		{"agency: 60% of 333 = 199.8 diamonds, the agency's 20% is 39.96, the creator's 159.84; the last 87 coins of the first lot take its last 1.31, 246 of the second 3.72",
			economy.GiftRequest{Key: "g4", Viewer: "v1", Creator: "c2", GiftID: "odd", StreamID: "s2", SentAt: t0},
			"credit COIN:issued 333; credit DIAMOND:pending:agency:ag1:20261128 38; credit DIAMOND:pending:c2:20261128 158; credit DIAMOND_FRAC:carry:agency:ag1 1.96; credit DIAMOND_FRAC:carry:c2 1.84; " +
				"credit Liability:CreatorPayable:agency:ag1:USD 0.19; credit Liability:CreatorPayable:c2:USD 0.79; credit Revenue:Gifts:USD 5.03; " +
				"debit COIN:wallet:v1 333; debit CostOfRevenue:CreatorShare:USD 0.19; debit CostOfRevenue:CreatorShare:USD 0.79; debit DIAMOND:issued 158; debit DIAMOND:issued 38; " +
				"debit DIAMOND_FRAC:issued 1.84; debit DIAMOND_FRAC:issued 1.96; debit Liability:DeferredRevenue:Coins:USD 5.03"},
	}
	for _, tt := range tests {
		if tt.req.Key == "" {
			e.buy(t, "v1", "a-v1b")
			continue
		}
		tx, err := e.eco.SendGift(ctx, tt.req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := postings(tx); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
	e.want(t, pending, "666")
	e.want(t, economy.DiamondCarry("c1"), "1")
	e.want(t, economy.CreatorPayable("c1", "USD"), "3.33") // 666 diamonds × 0.005
	// The same gift again is the original; other content under its key is refused.
	again, err := e.eco.SendGift(ctx, tests[0].req)
	if err != nil || !again.Replayed {
		t.Fatalf("retried gift: %v", err)
	}
	other := tests[0].req
	other.GiftID = "rose"
	if _, err := e.eco.SendGift(ctx, other); !errors.Is(err, ledger.ErrIdempotencyConflict) {
		t.Errorf("key reused for another gift: %v", err)
	}
	verifyClean(t, e)
}

func TestGiftRefusals(t *testing.T) {
	e := giftEnv(t)
	ctx := context.Background()
	if err := e.eco.BlockViewer(ctx, "block-v9", "v9"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edit  func(*economy.GiftRequest)
		kind  ledger.Kind
		field string
		is    error
	}{
		{"self gift", func(r *economy.GiftRequest) { r.Viewer = "v2"; r.Creator = "v2" }, ledger.Invalid, "creator", economy.ErrSelfGift},
		{"unknown creator", func(r *economy.GiftRequest) { r.Creator = "nobody" }, ledger.NotFound, "creator", economy.ErrUnknownCreator},
		{"unknown gift", func(r *economy.GiftRequest) { r.GiftID = "unicorn" }, ledger.NotFound, "gift_id", nil},
		// It reached the catalog's query and failed there (FuzzRequests).
		{"a NUL in the gift id", func(r *economy.GiftRequest) { r.GiftID = "ro\x00se" }, ledger.Invalid, "gift_id", nil},
		{"gift and coins", func(r *economy.GiftRequest) { r.Coins = 5 }, ledger.Invalid, "coins", nil},
		{"neither gift nor coins", func(r *economy.GiftRequest) { r.GiftID = "" }, ledger.Invalid, "coins", nil},
		{"no sent_at", func(r *economy.GiftRequest) { r.SentAt = time.Time{} }, ledger.Invalid, "sent_at", nil},
		{"sent in the future", func(r *economy.GiftRequest) { r.SentAt = t0.Add(time.Hour) }, ledger.Invalid, "sent_at", nil},
		{"sent too long ago", func(r *economy.GiftRequest) { r.SentAt = t0.Add(-economy.MaxGiftDelay - time.Second) }, ledger.Invalid, "sent_at", nil},
		{"no key", func(r *economy.GiftRequest) { r.Key = "" }, ledger.Invalid, "key", nil},
		{"not enough coins", func(r *economy.GiftRequest) { r.GiftID, r.Coins = "", 1422 }, ledger.InsufficientFunds, "coins", ledger.ErrInsufficientFunds},
		{"viewer without coins", func(r *economy.GiftRequest) { r.Viewer = "v3" }, ledger.InsufficientFunds, "coins", ledger.ErrInsufficientFunds},
		{"blocked viewer", func(r *economy.GiftRequest) { r.Viewer = "v9" }, ledger.FailedPrecondition, "viewer", ledger.ErrAccountFrozen},
	}
	for i, tt := range tests {
		r := gift("refused-"+string(rune('a'+i)), "v1", "c1", "lion")
		tt.edit(&r)
		_, err := e.eco.SendGift(ctx, r)
		if ledger.KindOf(err) != tt.kind || ledger.FieldOf(err) != tt.field || (tt.is != nil && !errors.Is(err, tt.is)) {
			t.Errorf("%s: %v (kind %v, field %q)", tt.name, err, ledger.KindOf(err), ledger.FieldOf(err))
		}
	}
	// Nothing was posted: v1 still holds all of its coins.
	e.want(t, economy.CoinWallet("v1"), "1321")
	e.want(t, economy.PromoWallet("v1"), "100")
	// Unblocked, the viewer may gift again (with coins they do not have: refused for that).
	if err := e.eco.UnblockViewer(ctx, "unblock-v9", "v9"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eco.SendGift(ctx, gift("after-unblock", "v9", "c1", "rose")); !errors.Is(err, ledger.ErrInsufficientFunds) {
		t.Errorf("unblocked viewer without coins: %v", err)
	}
	verifyClean(t, e)
}

func TestReverseGift(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	g, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion"))
	if err != nil {
		t.Fatal(err)
	}
	g2, err := e.eco.SendGift(ctx, gift("g2", "v1", "c1", "odd"))
	if err != nil {
		t.Fatal(err)
	}
	rev, err := e.eco.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "fraud-1", GiftTx: g.ID.String(), Reason: "stolen card"})
	if err != nil {
		t.Fatal(err)
	}
	// Coins go back where they came from; the paid ones into their lot with
	// their deferred revenue; the 500 diamonds come back out of pending.
	want := "credit COIN:promo:v1 100; credit COIN:wallet:v1 900; credit CostOfRevenue:CreatorShare:USD 2.5; credit DIAMOND:issued 500; credit Liability:DeferredRevenue:Coins:USD 13.62; " +
		"debit COIN:issued 1000; debit DIAMOND:pending:c1:20261128 500; debit Liability:CreatorPayable:c1:USD 2.5; debit Revenue:Gifts:USD 13.62"
	if got := postings(rev); got != want {
		t.Errorf("reversal:\n got %s\nwant %s", got, want)
	}
	e.want(t, economy.CoinWallet("v1"), "988") // 1321 − 333
	e.want(t, economy.PromoWallet("v1"), "100")
	e.want(t, economy.PendingDiamonds("c1", releaseDay), "166")
	// Refusals name the request's field, not the ledger's ("transaction_id").
	if _, err := e.eco.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "fraud-2", GiftTx: g.ID.String()}); !errors.Is(err, ledger.ErrAlreadyReversed) || ledger.FieldOf(err) != "gift_tx" {
		t.Errorf("second reversal: %v (field %q)", err, ledger.FieldOf(err))
	}
	if _, err := e.eco.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "fraud-3", GiftTx: rev.ID.String()}); ledger.KindOf(err) != ledger.Invalid || ledger.FieldOf(err) != "gift_tx" {
		t.Errorf("reversing a reversal as a gift: %v (field %q)", err, ledger.FieldOf(err))
	}
	if _, err := e.eco.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "fraud-4", GiftTx: "not-an-id"}); ledger.FieldOf(err) != "gift_tx" {
		t.Errorf("bad id: %v", err)
	}
	// Once the creator's diamonds are released, the gift stays. (Released
	// as of a time the day is over but not yet closed, since a late gift
	// lands in it below.)
	later := economy.New(e.svc, e.cat, func() time.Time { return releaseDay.Add(48 * time.Hour) })
	if _, err := later.ReleaseEarnings(ctx, releaseDay.Add(23*time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	_, err = later.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "fraud-5", GiftTx: g2.ID.String()})
	if !errors.Is(err, economy.ErrEarningsReleased) || ledger.FieldOf(err) != "gift_tx" || strings.Contains(ledger.Reason(err), "DIAMOND:") {
		t.Errorf("reversing a gift whose diamonds were released: %v (field %q)", err, ledger.FieldOf(err))
	}
	// A gift arriving late refills the released day while the reversal is
	// refused: posted again, it takes the late gift's diamonds instead.
	posts := 0
	refilled := racingLedger{Ledger: e.svc, victimKey: "gift-reversal:fraud-6", after: func(ctx context.Context) error {
		if posts++; posts > 1 {
			return nil
		}
		_, err := e.eco.SendGift(ctx, gift("g3", "v1", "c1", "lion"))
		return err
	}}
	racing := economy.New(refilled, e.cat, func() time.Time { return releaseDay.Add(48 * time.Hour) })
	if _, err := racing.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "fraud-6", GiftTx: g2.ID.String()}); err != nil || posts != 2 {
		t.Errorf("reversing a gift while a late one refills its day: %v, after %d posts", err, posts)
	}
	e.want(t, economy.PendingDiamonds("c1", releaseDay), "334") // 500 − 166
	verifyClean(t, e)
}

// TestReverseGiftsAcrossLanes: with two commit lanes a gift's fraction of a
// diamond may sit in either lane's carry row, and its reversal may run on the
// other. Every reversal must still succeed and leave nothing behind.
// Regression: a reversal drew only on its own lane's row and was refused
// ("DIAMOND:pending would be -1") when the fraction sat in the other.
// A gift whose diamonds stayed in its earner's carry (half a diamond; a
// granule is 2) is reversed after the next day's gifts minted the carry's
// granule into the next day's pending account: that day lends the granule
// back, and the earner keeps exactly the other gifts' diamonds. A retry
// under the key is answered with it; once no pending day holds a granule
// (released), the reversal is refused ErrEarningsReleased.
func TestReverseGiftWhoseFractionANextDayGiftMinted(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	g1, err := e.eco.SendGift(ctx, gift("s1", "v1", "c1", "rose"))
	if err != nil {
		t.Fatal(err)
	}
	next, sent := e.rosesNextDay(t, "v1", "s2", "s3", "s4")
	later := economy.PendingDiamonds("c1", releaseDay.Add(24*time.Hour))
	e.want(t, later, "2")
	e.want(t, economy.DiamondCarry("c1"), "0")
	req := economy.ReverseGiftRequest{Key: "fraud-s1", GiftTx: g1.ID.String(), Reason: "stolen card"}
	rev, err := next.ReverseGift(ctx, req)
	if err != nil {
		t.Fatalf("reversing a gift whose fraction the next day's gift minted: %v", err)
	}
	e.want(t, later, "0")
	e.want(t, economy.DiamondCarry("c1"), "1.5") // three roses' half diamonds
	e.want(t, economy.PendingDiamonds("c1", releaseDay), "0")
	again, err := next.ReverseGift(ctx, req)
	if err != nil || !again.Replayed || again.ID != rev.ID {
		t.Fatalf("retried reversal: %v, %v", again, err)
	}
	req.Reason = "another reason"
	if _, err := next.ReverseGift(ctx, req); !errors.Is(err, ledger.ErrIdempotencyConflict) {
		t.Errorf("the key with another reason: %v", err)
	}
	verifyClean(t, e)

	// s5 mints the carry's granule into the next day's pending account
	// again, and that day is released: no pending day holds the granule
	// that taking s2's half diamond back needs.
	e.rosesNextDay(t, "v1", "s5")
	e.want(t, later, "2")
	over := releaseDay.Add(48 * time.Hour)
	if _, err := economy.New(e.svc, e.cat, func() time.Time { return over }).ReleaseEarnings(ctx, over, nil); err != nil {
		t.Fatal(err)
	}
	e.want(t, later, "0")
	_, err = next.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "fraud-s2", GiftTx: sent["s2"].ID.String(), Reason: "stolen card"})
	if !errors.Is(err, economy.ErrEarningsReleased) || ledger.FieldOf(err) != "gift_tx" {
		t.Errorf("reversing s2 once its granule was released: %v", err)
	}
	verifyClean(t, e)
}

// TestReverseGiftWhoseGranulesTwoDaysHold: a gift of 166.5 diamonds minted
// 166 into its release day's account and left half a diamond in the carry,
// whose granule the next day's roses minted into theirs. Taking the gift
// back returns 84 granules: 83 from its own day and one from the next.
func TestReverseGiftWhoseGranulesTwoDaysHold(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	odd, err := e.eco.SendGift(ctx, gift("odd", "v1", "c1", "odd"))
	if err != nil {
		t.Fatal(err)
	}
	next, _ := e.rosesNextDay(t, "v1", "s2", "s3", "s4")
	own, later := economy.PendingDiamonds("c1", releaseDay), economy.PendingDiamonds("c1", releaseDay.Add(24*time.Hour))
	e.want(t, own, "166")
	e.want(t, later, "2")
	if _, err := next.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "fraud-odd", GiftTx: odd.ID.String(), Reason: "stolen card"}); err != nil {
		t.Fatalf("reversing a gift whose granules two days hold: %v", err)
	}
	e.want(t, own, "0")
	e.want(t, later, "0")
	e.want(t, economy.DiamondCarry("c1"), "1.5") // three roses' half diamonds
	e.want(t, economy.CreatorPayable("c1", "USD"), "0")
	verifyClean(t, e)
}

// rosesNextDay has viewer send c1 a rose under each key the day after t0
// and returns the gifts, by key, and an economy whose clock is that day.
func (e *env) rosesNextDay(t *testing.T, viewer string, keys ...string) (*economy.Economy, map[string]*ledger.Transaction) {
	t.Helper()
	nextDay := t0.Add(24 * time.Hour)
	next := economy.New(e.svc, e.cat, func() time.Time { return nextDay })
	sent := map[string]*ledger.Transaction{}
	for _, k := range keys {
		g := gift(k, viewer, "c1", "rose")
		g.SentAt = nextDay
		tx, err := next.SendGift(context.Background(), g)
		if err != nil {
			t.Fatal(err)
		}
		sent[k] = tx
	}
	return next, sent
}

func TestReverseGiftsAcrossLanes(t *testing.T) {
	e := giftEnv(t, 2)
	ctx := context.Background()
	e.buy(t, "v1", "a-v1-2")
	e.buy(t, "v1", "a-v1-3")
	concurrently := func(n int, do func(i int) error) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := do(i); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	ids := make([]string, 40)
	concurrently(len(ids), func(i int) error {
		g := "rose" // half a diamond for c1
		if i%4 == 0 {
			g = "odd" // 166.5
		}
		tx, err := e.eco.SendGift(ctx, gift(fmt.Sprintf("g%d", i), "v1", "c1", g))
		if err == nil {
			ids[i] = tx.ID.String()
		}
		return err
	})
	if t.Failed() {
		t.FailNow()
	}
	// 30 halves + 10 × 166.5 = 1,680 diamonds, minted (two at a time: a
	// granule is worth a whole cent) or still in the lanes' carry rows.
	carry, _ := e.svc.Balance(ctx, economy.DiamondCarry("c1"), time.Time{})
	pending, _ := e.svc.Balance(ctx, economy.PendingDiamonds("c1", releaseDay), time.Time{})
	if !pending.Add(carry).Equal(dec("1680")) {
		t.Fatalf("pending %s + carry %s is not 1,680 diamonds", pending, carry)
	}
	concurrently(len(ids), func(i int) error {
		_, err := e.eco.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "rev-" + ids[i], GiftTx: ids[i], Reason: "fraud"})
		return err
	})
	e.want(t, economy.DiamondCarry("c1"), "0")
	e.want(t, economy.PendingDiamonds("c1", releaseDay), "0")
	e.want(t, economy.CoinWallet("v1"), "3963")
	verifyClean(t, e)
}

func verifyClean(t *testing.T, e *env) {
	t.Helper()
	r, err := e.svc.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !r.Clean() {
		t.Fatalf("verify: %v", r.Violations)
	}
	if v, omitted, err := e.eco.Verify(context.Background(), nil); err != nil || len(v) > 0 || omitted > 0 {
		t.Fatalf("the economy's verify: %v (%d more), %v", v, omitted, err)
	}
}

func TestReleaseEarnings(t *testing.T) {
	e := giftEnv(t)
	ctx := context.Background()
	for i, g := range []string{"lion", "odd"} {
		if _, err := e.eco.SendGift(ctx, gift("g"+string(rune('a'+i)), "v1", "c2", g)); err != nil {
			t.Fatal(err)
		}
	}
	creatorPending, agencyPending := economy.PendingDiamonds("c2", releaseDay), economy.PendingDiamonds(economy.AgencyEarner("ag1"), releaseDay)
	cp, _ := e.svc.Balance(ctx, creatorPending, time.Time{})
	ap, _ := e.svc.Balance(ctx, agencyPending, time.Time{})
	// The test clock is fixed at t0: this economy's clock is past the day.
	dayOver := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	e2 := economy.New(e.svc, e.cat, func() time.Time { return dayOver })
	if _, err := e2.ReleaseEarnings(ctx, dayOver.Add(24*time.Hour), nil); ledger.FieldOf(err) != "as_of" {
		t.Errorf("as_of in the future: %v", err)
	}
	// Still on hold during the release day itself.
	rep, err := e2.ReleaseEarnings(ctx, time.Date(2026, 11, 28, 23, 59, 0, 0, time.UTC), nil)
	if err != nil || rep.Released != 0 {
		t.Fatalf("during the release day: %+v %v", rep, err)
	}
	var pages int
	rep, err = e2.ReleaseEarnings(ctx, dayOver, func(economy.ReleaseReport) { pages++ })
	if err != nil || rep.Released != 2 || !rep.Diamonds.Equal(cp.Add(ap)) {
		t.Fatalf("after the day: %+v %v (want %s + %s)", rep, err, cp, ap)
	}
	e.want(t, creatorPending, "0")
	e.want(t, economy.AvailableDiamonds("c2"), cp.String())
	e.want(t, economy.AvailableDiamonds(economy.AgencyEarner("ag1")), ap.String())
	// Running again moves nothing: released accounts are empty.
	if rep, err := e2.ReleaseEarnings(ctx, dayOver, nil); err != nil || rep.Released != 0 || rep.Scanned != 2 {
		t.Fatalf("rerun: %+v %v", rep, err)
	}
	if pages == 0 {
		t.Error("no progress reported")
	}
	verifyClean(t, e)
}

// A gift sent more than MaxGiftDelay before the ledger sees it is refused:
// held and priced from when it was sent, it would skip its hold (its day long
// over, released at the next run) and take old prices. A retry of a gift
// already recorded is still answered, however late.
func TestLateGift(t *testing.T) {
	e := giftEnv(t)
	ctx := context.Background()
	sent, err := e.eco.SendGift(ctx, gift("on-time", "v1", "c1", "lion"))
	if err != nil {
		t.Fatal(err)
	}
	now := releaseDay.Add(24 * time.Hour) // the on-time gift's release day is over
	late := economy.New(e.svc, e.cat, func() time.Time { return now })
	again, err := late.SendGift(ctx, gift("on-time", "v1", "c1", "lion"))
	if err != nil || !again.Replayed || again.ID != sent.ID {
		t.Fatalf("late retry of a recorded gift: %v", err)
	}
	if _, err := late.SendGift(ctx, gift("on-time", "v1", "c1", "rose")); !errors.Is(err, ledger.ErrIdempotencyConflict) {
		t.Errorf("late retry with other content: %v", err)
	}
	_, err = late.SendGift(ctx, gift("backdated", "v1", "c1", "rose"))
	if ledger.KindOf(err) != ledger.Invalid || ledger.FieldOf(err) != "sent_at" {
		t.Errorf("gift sent a week before the ledger saw it: %v", err)
	}
	e.want(t, economy.CoinWallet("v1"), "421") // 100 promo and 900 paid coins went on the lion
	// At the limit it is taken, and held from when it was sent.
	e.buy(t, "v1", "a-v1b")
	edge := gift("edge", "v1", "c1", "lion")
	edge.SentAt = now.Add(-economy.MaxGiftDelay)
	if _, err := late.SendGift(ctx, edge); err != nil {
		t.Fatalf("gift at the limit: %v", err)
	}
	e.want(t, economy.PendingDiamonds("c1", edge.SentAt.Add(7*24*time.Hour)), "500")
	verifyClean(t, e)
}

// RunReleases releases at once, then again every interval (finding nothing
// more), and returns when its context ends.
func TestRunReleases(t *testing.T) {
	e := giftEnv(t)
	ctx := context.Background()
	if _, err := e.eco.SendGift(ctx, gift("ga", "v1", "c2", "lion")); err != nil {
		t.Fatal(err)
	}
	pending := economy.PendingDiamonds("c2", releaseDay)
	held, _ := e.svc.Balance(ctx, pending, time.Time{})
	dayOver := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	e2 := economy.New(e.svc, e.cat, func() time.Time { return dayOver })
	runCtx, stop := context.WithCancel(ctx)
	reports := make(chan economy.ReleaseReport, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e2.RunReleases(runCtx, 10*time.Millisecond, func(rep economy.ReleaseReport, err error) {
			if err != nil {
				t.Errorf("release run: %v", err)
			}
			select {
			case reports <- rep:
			default:
			}
		})
	}()
	first, second := <-reports, <-reports
	stop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunReleases did not return when its context ended")
	}
	if first.Released < 1 || !first.Diamonds.GreaterThanOrEqual(held) || second.Released != 0 {
		t.Errorf("first run %+v (the creator held %s), second %+v", first, held, second)
	}
	e.want(t, pending, "0")
	e.want(t, economy.AvailableDiamonds("c2"), held.String())
	verifyClean(t, e)
}

// A gift's terms encode with their keys in order, so the ledger takes them
// as they are instead of decoding and re-encoding them on every gift.
func TestGiftTermsEncodeCanonically(t *testing.T) {
	terms := economy.GiftTerms{Agency: "a", AgencyDiamonds: "1", AgencyShare: "0.1", Coins: 33, Creator: "c",
		CreatorDiamonds: "15.5", CreatorShare: "0.5", Currency: "USD", DiamondValue: "0.005", Diamonds: "16.5", GiftID: "heart",
		Granule: "1", ReleaseDay: "2026-11-28", SentAt: "2026-11-21T05:00:00Z", StreamID: "s", Viewer: "v"}
	got, err := json.Marshal(terms)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	sorted, _ := json.Marshal(m) // encoding/json sorts map keys
	if string(got) != string(sorted) {
		t.Errorf("GiftTerms encode as\n%s\nnot in key order:\n%s", got, sorted)
	}
}

// A blocked viewer cannot gift or be granted promo coins, but what the
// stores did is still booked (a fraudster's chargebacks arrive while they are
// blocked: finance must find every store transaction in the ledger), and so
// are gift reversals; the coins stay frozen.
func TestBlockedViewerStillBooksTheStores(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	g, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion")) // 100 promo, 900 paid
	if err != nil {
		t.Fatal(err)
	}
	if err := e.eco.BlockViewer(ctx, "block-v1", "v1"); err != nil {
		t.Fatal(err)
	}
	e.buy(t, "v1", "a-v1-blocked")
	if _, err := e.eco.Refund(ctx, refund("a-v1-blocked", "r-blocked", 0), economy.ClawbackThenLoss); err != nil {
		t.Fatalf("refund while blocked: %v", err)
	}
	if _, err := e.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: "r-blocked"}); err != nil {
		t.Fatalf("refund reversal while blocked: %v", err)
	}
	if _, err := e.eco.ReverseGift(ctx, economy.ReverseGiftRequest{Key: "fraud", GiftTx: g.ID.String(), Reason: "stolen card"}); err != nil {
		t.Fatalf("gift reversal while blocked: %v", err)
	}
	e.want(t, economy.CoinWallet("v1"), "2642") // 421 + 1321 bought while blocked + 900 back
	e.want(t, economy.PromoWallet("v1"), "100")
	if _, err := e.eco.SendGift(ctx, gift("g2", "v1", "c1", "rose")); !errors.Is(err, ledger.ErrAccountFrozen) {
		t.Errorf("gift while blocked: %v", err)
	}
	if _, err := e.eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: "promo-blocked", User: "v1", Coins: 5}); !errors.Is(err, ledger.ErrAccountFrozen) || ledger.FieldOf(err) != "user" {
		t.Errorf("promo grant while blocked: %v (field %q), want the user named", err, ledger.FieldOf(err))
	}

	// A debt a chargeback leaves is repaid from what the blocked viewer buys.
	e.buy(t, "v3", "a-v3")
	if _, err := e.eco.SendGift(ctx, gift("g3", "v3", "c1", "lion")); err != nil {
		t.Fatal(err)
	}
	if err := e.eco.BlockViewer(ctx, "block-v3", "v3"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.eco.Refund(ctx, refund("a-v3", "r-v3", 0), economy.OweCoins); err != nil {
		t.Fatalf("chargeback while blocked: %v", err)
	}
	e.want(t, economy.CoinDebt("v3"), "1000")
	e.buy(t, "v3", "a-v3-blocked")
	e.want(t, economy.CoinDebt("v3"), "0")
	e.want(t, economy.CoinWallet("v3"), "321")
	verifyClean(t, e)
}

// claimThenDie claims an admin key and fails, as a process that died right
// after claiming it would.
type claimThenDie struct{ *postgres.DB }

func (s claimThenDie) ClaimAdminKey(ctx context.Context, key, request string) (string, bool, error) {
	if _, _, err := s.DB.ClaimAdminKey(ctx, key, request); err != nil {
		return "", false, err
	}
	return "", false, errors.New("the process died")
}

// A block or unblock retried under its key changes nothing more: a viewer
// unblocked in between stays unblocked. A request interrupted after it
// claimed its key is finished by its retry; the key with another request is
// refused.
func TestBlockViewerKeys(t *testing.T) {
	e := giftEnv(t, 1)
	ctx := context.Background()
	status := func() ledger.Status {
		t.Helper()
		a, err := e.svc.Account(ctx, economy.CoinWallet("v1"))
		if err != nil {
			t.Fatal(err)
		}
		return a.Status
	}
	for _, step := range []struct {
		name string
		do   func() error
		want ledger.Status
	}{
		{"block", func() error { return e.eco.BlockViewer(ctx, "k-block", "v1") }, ledger.Frozen},
		{"unblock", func() error { return e.eco.UnblockViewer(ctx, "k-unblock", "v1") }, ledger.Open},
		{"the block retried", func() error { return e.eco.BlockViewer(ctx, "k-block", "v1") }, ledger.Open},
	} {
		if err := step.do(); err != nil || status() != step.want {
			t.Fatalf("%s: %v, wallet %s, want %s", step.name, err, status(), step.want)
		}
	}
	if err := e.eco.UnblockViewer(ctx, "k-block", "v1"); !errors.Is(err, ledger.ErrIdempotencyConflict) || ledger.FieldOf(err) != "idempotency_key" {
		t.Errorf("the block's key on an unblock: %v", err)
	}
	if err := e.eco.BlockViewer(ctx, "k-block", "v2"); !errors.Is(err, ledger.ErrIdempotencyConflict) {
		t.Errorf("the block's key on another viewer: %v", err)
	}

	clock := func() time.Time { return t0 }
	dying := economy.New(e.svc, economy.NewCatalog(claimThenDie{e.db}, clock), clock)
	if err := dying.BlockViewer(ctx, "k-interrupted", "v1"); err == nil {
		t.Fatal("the dying process's block succeeded")
	}
	if status() != ledger.Open {
		t.Fatalf("wallet %s after a block that died before changing it", status())
	}
	if err := e.eco.BlockViewer(ctx, "k-interrupted", "v1"); err != nil || status() != ledger.Frozen {
		t.Errorf("the interrupted block retried: %v, wallet %s, want frozen", err, status())
	}
}

// statusRacer runs race once, after the block's first change of status (the
// paid wallet's, while the wallets were changed one by one): an unblock
// arriving while a block is under way.
type statusRacer struct {
	economy.Ledger
	race  func()
	calls int
}

func (l *statusRacer) SetAccountsStatus(ctx context.Context, names []string, st ledger.Status) ([]*ledger.Account, error) {
	a, err := l.Ledger.SetAccountsStatus(ctx, names, st)
	if l.calls++; l.calls == 1 {
		l.race()
	}
	return a, err
}

// TestUnblockDuringABlock: an unblock that commits while a block is under
// way leaves both wallets blocked or both open, as one after the other
// would; never the paid wallet open and the promo wallet frozen.
func TestUnblockDuringABlock(t *testing.T) {
	e := giftEnv(t)
	ctx := context.Background()
	racer := &statusRacer{Ledger: e.svc, race: func() {
		if err := e.eco.UnblockViewer(ctx, "unblock-v1", "v1"); err != nil {
			t.Error(err)
		}
	}}
	if err := economy.New(racer, e.cat, func() time.Time { return t0 }).BlockViewer(ctx, "block-v1", "v1"); err != nil {
		t.Fatal(err)
	}
	var got []ledger.Status
	for _, name := range []string{economy.CoinWallet("v1"), economy.PromoWallet("v1")} {
		a, err := e.svc.Account(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, a.Status)
	}
	if got[0] != got[1] {
		t.Errorf("the paid wallet is %s, the promo wallet %s", got[0], got[1])
	}
}

// TestReverseGiftOfADayAnEarlierClawbackBorrowedFrom: a release job whose
// clock runs a little ahead released a day minutes before its end, and a
// refund a minute before that end, seeing the day still pending, clawed back
// its gift's diamonds: the day held none, so the latest day lent them. That
// day is not over and was not released, so a reversal of its own gift takes
// the diamonds from the earner's other pending day; it used to be refused as
// released.
func TestReverseGiftOfADayAnEarlierClawbackBorrowedFrom(t *testing.T) {
	e := giftEnv(t, 1)
	s := lentDayScenario(t, e)
	if _, err := s.reverser(e.svc).ReverseGift(context.Background(), s.reversal); err != nil {
		t.Fatalf("reversing the gift of a day an earlier clawback borrowed from: %v", err)
	}
	e.want(t, s.days[1], "0")
	e.want(t, s.days[2], "0")
	e.want(t, economy.CreatorPayable("c1", "USD"), "2.5") // the released day's 500 diamonds
	verifyClean(t, e)
}

// A gift reversal whose lender's diamonds move between each plan and its
// post is answered Aborted, to be retried under its key, rather than with
// the ledger's words for a pending account short of diamonds; the retry
// posts it.
func TestReverseGiftRacedOnEveryAttempt(t *testing.T) {
	e := giftEnv(t, 1)
	s := lentDayScenario(t, e)
	ctx := context.Background()
	move := func(from, to string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := e.svc.Post(ctx, ledger.PostRequest{IdempotencyKey: uuid.NewString(), Kind: "test-race",
				Postings: []ledger.PostingRequest{{Account: from, Side: ledger.Debit, Amount: dec("500")}, {Account: to, Side: ledger.Credit, Amount: dec("500")}}})
			return err
		}
	}
	aside := economy.AvailableDiamonds("c1")
	racing := racingLedger{Ledger: e.svc, victimKey: "gift-reversal:", before: move(s.days[1], aside), after: move(aside, s.days[1])}
	_, err := s.reverser(racing).ReverseGift(ctx, s.reversal)
	if !errors.Is(err, ledger.ErrRetriesExhausted) || ledger.KindOf(err) != ledger.Aborted {
		t.Fatalf("a reversal raced on every attempt: %v, want Aborted", err)
	}
	e.want(t, s.days[1], "500")
	if _, err := s.reverser(e.svc).ReverseGift(ctx, s.reversal); err != nil {
		t.Fatalf("its retry: %v", err)
	}
	e.want(t, s.days[1], "0")
	verifyClean(t, e)
}

// lentDay is c1's three release days of a 500-diamond gift each: the first
// released minutes before its end, its gift's refund then clawing back the
// third day's diamonds; reversal is of the third day's gift, and reverser
// the economy that reverses it at the first day's end.
type lentDay struct {
	days     []string
	reversal economy.ReverseGiftRequest
	reverser func(economy.Ledger) *economy.Economy
}

func lentDayScenario(t *testing.T, e *env) lentDay {
	t.Helper()
	ctx := context.Background()
	dayEnd := releaseDay.Truncate(24 * time.Hour).Add(24 * time.Hour) // the first release day's end
	at := func(l economy.Ledger, clock time.Time) *economy.Economy {
		return economy.New(l, e.cat, func() time.Time { return clock })
	}
	s := lentDay{days: make([]string, 3), reverser: func(l economy.Ledger) *economy.Economy { return at(l, dayEnd) }}
	for i, viewer := range []string{"v5", "v6", "v7"} {
		e.buy(t, viewer, "a-"+viewer)
		g := gift("lion-"+viewer, viewer, "c1", "lion")
		g.SentAt = t0.Add(time.Duration(i) * 24 * time.Hour)
		tx, err := at(e.svc, g.SentAt).SendGift(ctx, g)
		if err != nil {
			t.Fatal(err)
		}
		s.reversal = economy.ReverseGiftRequest{Key: "fraud-" + viewer, GiftTx: tx.ID.String(), Reason: "stolen card"}
		s.days[i] = economy.PendingDiamonds("c1", releaseDay.Add(time.Duration(i)*24*time.Hour))
		e.want(t, s.days[i], "500")
	}
	if _, err := at(e.svc, dayEnd.Add(-2*time.Minute)).ReleaseEarnings(ctx, dayEnd.Add(time.Minute), nil); err != nil {
		t.Fatal(err)
	}
	e.want(t, s.days[0], "0")
	r := refund("a-v5", "r-v5", 0)
	r.RefundedAt = dayEnd.Add(-time.Minute)
	if plan := refundWithClawbacks(t, at(e.svc, dayEnd.Add(-time.Minute)), r); len(plan.Clawbacks) != 1 || plan.Clawbacks[0].Lender != s.days[2] {
		t.Fatalf("clawbacks %+v, want one lent by the latest day", plan.Clawbacks)
	}
	e.want(t, s.days[2], "0")
	return s
}
