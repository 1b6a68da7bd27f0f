package economy_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
)

// A release day is closed a day after its end: the run that closes it has
// released it, and later runs do not read its accounts again. Diamonds a
// refund reversal returns to a closed day are released by the reversal
// itself, so none are left behind in it.
func TestReleaseClosesDays(t *testing.T) {
	e := giftEnv(t)
	ctx := context.Background()
	if _, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion")); err != nil { // 500 diamonds, 900 paid coins
		t.Fatal(err)
	}
	if _, err := e.eco.Refund(ctx, refund("a-v1", "r-v1", 0), economy.ClawbackThenLoss); err != nil { // 450 clawed back
		t.Fatal(err)
	}
	pending := economy.PendingDiamonds("c1", releaseDay)
	e.want(t, pending, "50")

	// A process that stopped between noting a pending account and creating
	// it left a row for an account that does not exist.
	if err := e.db.NotePendingAccount(ctx, "20261128", economy.PendingDiamonds("c2", releaseDay)); err != nil {
		t.Fatal(err)
	}

	closing := releaseDay.Add(48 * time.Hour)
	later := economy.New(e.svc, e.cat, func() time.Time { return closing })
	rep, err := later.ReleaseEarnings(ctx, closing, nil)
	if err != nil || rep.Scanned != 2 || rep.Released != 1 || rep.Diamonds.String() != "50" {
		t.Fatalf("the run that closes the day: %+v %v", rep, err)
	}
	if rep, err := later.ReleaseEarnings(ctx, closing, nil); err != nil || rep.Scanned != 0 {
		t.Fatalf("a run after the day is closed: %+v %v", rep, err)
	}

	if _, err := later.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: "r-v1"}); err != nil {
		t.Fatal(err)
	}
	e.want(t, pending, "0")
	e.want(t, economy.AvailableDiamonds("c1"), "500")
	again, err := later.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: "r-v1"})
	if err != nil || !again.Replayed {
		t.Fatalf("retried reversal: %v", err)
	}
	e.want(t, economy.AvailableDiamonds("c1"), "500")
	verifyClean(t, e)
}

// Diamonds a refund reversal returns to a released day are released even
// when the day's earlier release moved the same amount: each release is a
// transaction of its own, not a replay of the earlier one; and runs side by
// side still release a day's diamonds once.
func TestReleaseOfARepeatedAmount(t *testing.T) {
	e := giftEnv(t)
	ctx := context.Background()
	e.buy(t, "v5", "a-v5")
	for _, g := range []economy.GiftRequest{gift("g1", "v1", "c1", "lion"), gift("g5", "v5", "c1", "lion")} { // 500 diamonds each
		if _, err := e.eco.SendGift(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.eco.Refund(ctx, refund("a-v5", "r-v5", 0), economy.ClawbackThenLoss); err != nil { // g5's 500 clawed back
		t.Fatal(err)
	}
	pending := economy.PendingDiamonds("c1", releaseDay)
	e.want(t, pending, "500")
	closing := releaseDay.Add(48 * time.Hour)
	later := economy.New(e.svc, e.cat, func() time.Time { return closing })
	// Runs side by side release the day's 500 once between them.
	var wg sync.WaitGroup
	released := make([]decimal.Decimal, 4)
	for i := range released {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := later.ReleaseEarnings(ctx, closing, nil)
			if err != nil {
				t.Errorf("release run %d: %v", i, err)
			}
			released[i] = rep.Diamonds
		}()
	}
	wg.Wait()
	if sum := decimal.Sum(decimal.Zero, released...); sum.String() != "500" {
		t.Fatalf("concurrent runs released %v, want 500 in all", released)
	}
	// The reversal returns 500 to the closed day, and releases them.
	if _, err := later.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: economy.Apple, RefundID: "r-v5"}); err != nil {
		t.Fatal(err)
	}
	e.want(t, pending, "0")
	e.want(t, economy.AvailableDiamonds("c1"), "1000")
	verifyClean(t, e)
}

// TestVerifyFindsDiamondsInAClosedDay: the economy's verify lists a pending
// account of a closed release day that holds diamonds (here put there
// behind the economy's back), and passes over one noted but never created.
func TestVerifyFindsDiamondsInAClosedDay(t *testing.T) {
	e := giftEnv(t)
	ctx := context.Background()
	if _, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion")); err != nil {
		t.Fatal(err)
	}
	if err := e.db.NotePendingAccount(ctx, "20261128", economy.PendingDiamonds("c2", releaseDay)); err != nil {
		t.Fatal(err)
	}
	closing := releaseDay.Add(48 * time.Hour)
	if _, err := economy.New(e.svc, e.cat, func() time.Time { return closing }).ReleaseEarnings(ctx, closing, nil); err != nil {
		t.Fatal(err)
	}
	verifyClean(t, e)
	pending := economy.PendingDiamonds("c1", releaseDay)
	if _, err := e.svc.Post(ctx, ledger.PostRequest{IdempotencyKey: "stuck", Kind: "test-stuck", Postings: []ledger.PostingRequest{
		{Account: economy.DiamondIssued, Side: ledger.Debit, Amount: dec("3")},
		{Account: pending, Side: ledger.Credit, Amount: dec("3")},
	}}); err != nil {
		t.Fatal(err)
	}
	var read []int
	v, omitted, err := e.eco.Verify(ctx, func(n int) { read = append(read, n) })
	if err != nil || omitted != 0 || len(v) != 1 || v[0].Check != economy.CheckReleaseClosed || v[0].Subject != pending ||
		v[0].Detail != "holds 3 DIAMOND, but its release day is closed (through 20261128)" {
		t.Fatalf("verify: %+v (%d more), %v", v, omitted, err)
	}
	if fmt.Sprint(read) != "[2]" { // c1's and the noted c2's, one page
		t.Errorf("progress: %v", read)
	}
}

// TestReleaseWhileGiftsArrive: gifts arriving late into a day being
// released (a day is released once over, and closed a day later) do not
// fail the release: it moves what the account holds when it commits, the
// late gift's whole diamonds with the rest.
func TestReleaseWhileGiftsArrive(t *testing.T) {
	e := giftEnv(t)
	ctx := context.Background()
	e.buy(t, "v5", "a-v5")
	if _, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion")); err != nil { // 500 diamonds
		t.Fatal(err)
	}
	pending := economy.PendingDiamonds("c1", releaseDay)
	late := 0
	racing := racingLedger{Ledger: e.svc, victimKey: "release:" + pending, before: func(ctx context.Context) error {
		late++
		_, err := e.eco.SendGift(ctx, gift(fmt.Sprintf("late-%d", late), "v5", "c1", "odd")) // 166 diamonds each, and a half carried
		return err
	}}
	closing := releaseDay.Add(48 * time.Hour)
	rep, err := economy.New(racing, e.cat, func() time.Time { return closing }).ReleaseEarnings(ctx, closing, nil)
	if err != nil || rep.Released != 1 || rep.Diamonds.String() != "666" || late != 1 {
		t.Fatalf("release while a gift arrives: %+v %v, after %d late gifts", rep, err, late)
	}
	e.want(t, economy.AvailableDiamonds("c1"), "666")
	e.want(t, pending, "0")
	verifyClean(t, e)
}

// TestReleaseWhileDiamondsAreTakenBack: diamonds taken back from a pending
// account between the run's read of it and its release lower what the
// release moves; they used to refuse it, and a run raced on every attempt
// stopped Aborted.
func TestReleaseWhileDiamondsAreTakenBack(t *testing.T) {
	e := giftEnv(t)
	ctx := context.Background()
	if _, err := e.eco.SendGift(ctx, gift("g1", "v1", "c1", "lion")); err != nil { // 500 diamonds
		t.Fatal(err)
	}
	pending := economy.PendingDiamonds("c1", releaseDay)
	takes := 0
	racing := racingLedger{Ledger: e.svc, victimKey: "release:" + pending, before: func(ctx context.Context) error {
		takes++ // a stand-in for a gift reversal's take-back
		_, err := e.svc.Post(ctx, ledger.PostRequest{IdempotencyKey: fmt.Sprintf("take-%d", takes), Kind: "test-take-back",
			Postings: []ledger.PostingRequest{
				{Account: pending, Side: ledger.Debit, Amount: dec("2")},
				{Account: economy.DiamondIssued, Side: ledger.Credit, Amount: dec("2")},
			}})
		return err
	}}
	closing := releaseDay.Add(48 * time.Hour)
	rep, err := economy.New(racing, e.cat, func() time.Time { return closing }).ReleaseEarnings(ctx, closing, nil)
	if err != nil || rep.Released != 1 || rep.Diamonds.String() != "498" || takes != 1 {
		t.Fatalf("release raced by a take-back: %+v %v, after %d take-backs", rep, err, takes)
	}
	e.want(t, pending, "0")
	e.want(t, economy.AvailableDiamonds("c1"), "498")
	verifyClean(t, e)
}
