package economy

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
)

// ReleaseReport says what a release run did.
type ReleaseReport struct {
	Scanned  int             // pending accounts looked at
	Released int             // accounts whose diamonds moved
	Diamonds decimal.Decimal // diamonds moved
}

// ReleaseEarnings moves the diamonds of every pending account whose release
// day ended by asOf into its earner's available diamonds: one transaction per
// account, keyed by the account and the amount, so the job can stop anywhere
// and run again (a rerun finds released accounts empty and skips them).
// Diamonds of a gift sent on day D with a holding period H are released once
// day D+H (UTC) is over: the holding period is rounded up to the end of that
// day. progress, if not nil, is called after each page of accounts.
//
// A run reads the accounts of the days it has not closed: a day is closed
// once a run has released it releaseCloseAfter after its end, when no
// diamonds can reach it any more, and later runs start after it.
func (e *Economy) ReleaseEarnings(ctx context.Context, asOf time.Time, progress func(ReleaseReport)) (ReleaseReport, error) {
	const op = "economy.ReleaseEarnings"
	rep := ReleaseReport{Diamonds: decimal.Zero}
	if asOf.IsZero() || asOf.After(e.clock().Add(maxClockSkew)) {
		return rep, invalid(op, "as_of", "must be given and not in the future")
	}
	store := e.catalog.store
	closed, err := store.ReleaseClosedThrough(ctx)
	if err != nil {
		return rep, err
	}
	var after PendingAccount
	for {
		page, err := store.PendingAccounts(ctx, closed, lastDayOver(asOf), after, pendingPage)
		if err != nil {
			return rep, err
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1]
		rep.Scanned += len(page)
		if err := e.releaseDue(ctx, op, page, &rep); err != nil {
			return rep, err
		}
		if progress != nil {
			progress(rep)
		}
	}
	if lastClosable := lastDayOver(asOf.Add(-releaseCloseAfter)); lastClosable > closed {
		return rep, store.CloseReleaseDays(ctx, closed, lastClosable)
	}
	return rep, nil
}

// releaseCloseAfter is how long after its end a release day is closed: by
// then no diamonds can reach its pending accounts. A gift reaches the ledger
// at most MaxGiftDelay after it was sent (and commits within its request's
// deadline), and a refund reversal that returns diamonds to a day already
// over releases them itself.
const releaseCloseAfter = 24 * time.Hour

// MaxRequestDeadline is the longest a server may let a request run: a gift
// checked for lateness commits within it, and with MaxGiftDelay and clock
// skew it must stay well inside the day after which the release job closes
// a day.
const MaxRequestDeadline = 12 * time.Hour

// lastDayOver is the last release day (YYYYMMDD) whose end is at or before t.
func lastDayOver(t time.Time) string {
	return t.UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour).Format(releaseDayLayout)
}

// releaseDue releases the pending accounts of one page. Released accounts
// stay, empty, until their day is closed: their balances are read a page at
// a time, not one query per account.
func (e *Economy) releaseDue(ctx context.Context, op string, page []PendingAccount, rep *ReleaseReport) error {
	due, held, err := e.pendingHeld(ctx, page)
	if err != nil {
		return err
	}
	for i, a := range due {
		if held[i].Sign() <= 0 {
			continue
		}
		earner, _, _ := ParsePending(a.Name)
		moved, err := e.release(ctx, op, a.Name, earner)
		if err != nil {
			return err
		}
		if moved.Sign() > 0 {
			rep.Released++
			rep.Diamonds = rep.Diamonds.Add(moved)
		}
	}
	return nil
}

// pendingPage is how many noted pending accounts a release run or the
// economy's verify reads at a time.
const pendingPage = 500

// pendingHeld reads the balances of a page of noted pending accounts,
// passing over those noted but never created (the process stopped in
// between), which hold nothing.
func (e *Economy) pendingHeld(ctx context.Context, page []PendingAccount) ([]*ledger.Account, []decimal.Decimal, error) {
	names := make([]string, len(page))
	for i, p := range page {
		names[i] = p.Account
	}
	found, err := e.ledger.AccountsByName(ctx, names)
	if err != nil {
		return nil, nil, err
	}
	accounts := slices.DeleteFunc(found, func(a *ledger.Account) bool { return a == nil })
	if len(accounts) == 0 {
		return nil, nil, nil
	}
	held, err := e.ledger.Balances(ctx, accounts, time.Time{})
	if err != nil {
		return nil, nil, err
	}
	return accounts, held, nil
}

// RunReleases runs ReleaseEarnings as of now at once and then every
// interval until ctx ends, handing each run's report, or the error that
// stopped it, to report. A run that fails is simply run again at the next
// tick: the job is resumable and idempotent, so several servers may run it
// against one ledger.
func (e *Economy) RunReleases(ctx context.Context, every time.Duration, report func(ReleaseReport, error)) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		rep, err := e.ReleaseEarnings(ctx, e.clock(), nil)
		if ctx.Err() != nil {
			return
		}
		report(rep, err)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// release moves what the pending account holds into the earner's available
// diamonds: a sweep, which moves the balance as it stands when the release
// commits, so diamonds taken back meanwhile (gift reversals, clawbacks)
// lower what moves rather than refuse it, and late gifts' diamonds arriving
// before it commits move with it. An account a concurrent run emptied first
// moves nothing. The key is fresh each time: a refund reversal can return
// the very amount an earlier release moved, and its release must not be
// taken for a replay of that one.
func (e *Economy) release(ctx context.Context, op, pending, earner string) (decimal.Decimal, error) {
	if err := e.open(ctx, ledger.Account{Name: AvailableDiamonds(earner), Asset: Diamond, Normal: ledger.Credit}); err != nil {
		return decimal.Zero, err
	}
	meta, _ := json.Marshal(map[string]string{"earner": earner, "pending": pending})
	tx, err := e.ledger.Post(ctx, ledger.PostRequest{
		IdempotencyKey: "release:" + pending + ":" + uuid.NewString(),
		Kind:           "release",
		Metadata:       meta,
		Sweep:          &ledger.Sweep{From: pending, To: AvailableDiamonds(earner)},
	})
	if errors.Is(err, ledger.ErrNothingToSweep) {
		return decimal.Zero, nil
	}
	if err != nil {
		return decimal.Zero, &ledger.Error{Op: op, Field: "pending", Err: err, Message: pending}
	}
	return tx.Postings[0].Amount, nil
}

// ParsePending splits "DIAMOND:pending:{earner}:{yyyymmdd}".
func ParsePending(name string) (string, time.Time, bool) {
	rest, ok := strings.CutPrefix(name, pendingPrefix)
	i := strings.LastIndexByte(rest, ':')
	if !ok || i <= 0 {
		return "", time.Time{}, false
	}
	day, err := time.Parse(releaseDayLayout, rest[i+1:])
	if err != nil {
		return "", time.Time{}, false
	}
	return rest[:i], day, true
}
