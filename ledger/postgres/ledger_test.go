package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
)

func TestRefusals(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{})
		ctx := context.Background()
		e.account("mint", "USD", true, 1)
		e.account("alice", "USD", false, 1)
		e.account("bob", "USD", false, 1)
		e.account("frozen", "USD", false, 1)
		e.account("closed", "USD", false, 1)
		e.account("coins", "COIN", false, 1)
		e.post(transfer("fund", "mint", "alice", "10.00"))
		if _, err := e.svc.SetAccountStatus(ctx, "frozen", ledger.Frozen); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.SetAccountStatus(ctx, "closed", ledger.Closed); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name  string
			req   ledger.PostRequest
			kind  ledger.Kind
			is    error
			field string
		}{
			{"unknown account", transfer("u1", "alice", "nobody", "1"), ledger.NotFound, ledger.ErrAccountNotFound, "postings[1].account"},
			{"frozen account", transfer("u2", "alice", "frozen", "1"), ledger.FailedPrecondition, ledger.ErrAccountFrozen, "postings[1].account"},
			{"closed account", transfer("u3", "alice", "closed", "1"), ledger.FailedPrecondition, ledger.ErrAccountClosed, "postings[1].account"},
			{"insufficient funds", transfer("u4", "alice", "bob", "10.01"), ledger.InsufficientFunds, ledger.ErrInsufficientFunds, "postings[0].account"},
			{"too many decimals", transfer("u5", "alice", "bob", "0.001"), ledger.Invalid, nil, "postings[0].amount"},
			{"assets differ", ledger.PostRequest{IdempotencyKey: "u6", Kind: "transfer", Postings: []ledger.PostingRequest{
				{Account: "alice", Side: ledger.Debit, Amount: decimal.NewFromInt(1)},
				{Account: "coins", Side: ledger.Credit, Amount: decimal.NewFromInt(1)}}}, ledger.Invalid, nil, "postings"},
		}
		for _, tt := range tests {
			_, err := e.svc.Post(ctx, tt.req)
			if ledger.KindOf(err) != tt.kind || ledger.FieldOf(err) != tt.field || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Errorf("%s: got %v (kind %v, field %q)", tt.name, err, ledger.KindOf(err), ledger.FieldOf(err))
			}
		}
		// Atomic: the refused transfers moved nothing.
		e.wantBalance("alice", "10")
		// Past the freeze (money that moved outside): posted, into and out
		// of a frozen account; a closed one still refuses.
		past := func(key, from, to string) ledger.PostRequest {
			r := transfer(key, from, to, "1")
			r.PastFrozen = true
			return r
		}
		e.post(past("p1", "alice", "frozen"))
		e.post(past("p2", "frozen", "bob"))
		if _, err := e.svc.Post(ctx, past("p3", "alice", "closed")); !errors.Is(err, ledger.ErrAccountClosed) {
			t.Errorf("past the freeze into a closed account: %v", err)
		}
		e.wantBalance("alice", "9")
		// A frozen account takes postings again once reopened; a closed one never.
		if _, err := e.svc.SetAccountStatus(ctx, "frozen", ledger.Open); err != nil {
			t.Fatal(err)
		}
		e.post(transfer("u2b", "alice", "frozen", "1"))
		if _, err := e.svc.SetAccountStatus(ctx, "closed", ledger.Open); !errors.Is(err, ledger.ErrAccountClosed) {
			t.Errorf("reopening a closed account: %v", err)
		}
		// Accounts change status together or, refused, not at all.
		for _, c := range []struct {
			with string
			is   error
		}{{"closed", ledger.ErrAccountClosed}, {"nobody", ledger.ErrAccountNotFound}} {
			if _, err := e.svc.SetAccountsStatus(ctx, []string{"frozen", c.with}, ledger.Frozen); !errors.Is(err, c.is) {
				t.Errorf("freezing frozen with %s: %v", c.with, err)
			}
			if _, err := e.svc.Post(ctx, transfer("together-"+c.with, "alice", "frozen", "1")); err != nil {
				t.Errorf("freezing it with %s, refused, froze frozen: %v", c.with, err)
			}
		}
		both, err := e.svc.SetAccountsStatus(ctx, []string{"frozen", "bob"}, ledger.Frozen)
		if err != nil || len(both) != 2 || both[0].Name != "frozen" || both[1].Name != "bob" {
			t.Fatalf("freezing two: %v %v", both, err)
		}
		for _, to := range []string{"frozen", "bob"} {
			if _, err := e.svc.Post(ctx, transfer("into-"+to, "alice", to, "1")); !errors.Is(err, ledger.ErrAccountFrozen) {
				t.Errorf("into %s, frozen with another: %v", to, err)
			}
		}
		if _, err := e.svc.SetAccountsStatus(ctx, []string{"frozen", "bob"}, ledger.Open); err != nil {
			t.Fatal(err)
		}
		// A refusal is not stored under its key: the same request succeeds once funds arrive.
		e.post(transfer("fund2", "mint", "alice", "5"))
		e.post(transfer("u4", "alice", "bob", "10.01"))
		e.verifyClean()
	})
}

// A multi-leg transaction that fails on its last leg posts none of its legs,
// and neither does it disturb the other transactions of its batch.
func TestAtomicWithinBatch(t *testing.T) {
	e := newEnv(t, dbtest.Postgres(), ledger.Options{Lanes: 1})
	e.account("mint", "USD", true, 1)
	for i := range 3 {
		e.account(fmt.Sprintf("u%d", i), "USD", false, 1)
	}
	e.post(transfer("fund", "mint", "u0", "5"))
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 0 {
				// u0 -> u1 5 and u0 -> u2 5: the second leg overdraws u0.
				_, errs[i] = e.svc.Post(context.Background(), ledger.PostRequest{IdempotencyKey: "split", Kind: "split", Postings: []ledger.PostingRequest{
					{Account: "u0", Side: ledger.Debit, Amount: decimal.NewFromInt(5)},
					{Account: "u1", Side: ledger.Credit, Amount: decimal.NewFromInt(5)},
					{Account: "u0", Side: ledger.Debit, Amount: decimal.NewFromInt(5)},
					{Account: "u2", Side: ledger.Credit, Amount: decimal.NewFromInt(5)},
				}})
				return
			}
			_, errs[i] = e.svc.Post(context.Background(), transfer(fmt.Sprintf("m%d", i), "mint", "u2", "1"))
		}()
	}
	wg.Wait()
	if !errors.Is(errs[0], ledger.ErrInsufficientFunds) {
		t.Fatalf("split: %v", errs[0])
	}
	for i, err := range errs[1:] {
		if err != nil {
			t.Fatalf("m%d: %v", i+1, err)
		}
	}
	e.wantBalance("u0", "5")
	e.wantBalance("u2", "39")
	e.verifyClean()
}

func TestIdempotency(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{})
		ctx := context.Background()
		e.account("mint", "USD", true, 1)
		e.account("alice", "USD", false, 1)
		first := e.post(transfer("k", "mint", "alice", "1.50"))
		if first.Replayed {
			t.Fatal("first post marked replayed")
		}
		again := e.post(transfer("k", "mint", "alice", "1.5"))
		if again.ID != first.ID || !again.Replayed || !again.RecordedAt.Equal(first.RecordedAt) {
			t.Fatalf("retry returned %+v, want original %+v", again, first)
		}
		// An effective time finer than the database keeps: original and replay agree.
		withTime := transfer("k-time", "mint", "alice", "1")
		withTime.EffectiveAt = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
		t1, t2 := e.post(withTime), e.post(withTime)
		if !t2.Replayed || !t1.EffectiveAt.Equal(t2.EffectiveAt) || !t1.EffectiveAt.Equal(withTime.EffectiveAt.Truncate(time.Microsecond)) {
			t.Fatalf("effective time: original %s, replay %s", t1.EffectiveAt, t2.EffectiveAt)
		}
		// Metadata: the replay and a read answer it as the original did, not
		// as jsonb prints it (its own spacing and key order).
		withMeta := transfer("k-meta", "mint", "alice", "1")
		withMeta.Metadata = json.RawMessage(`{"zeta": [1, "<b>"], "memo": "m", "n": 1.50}`)
		m1, m2 := e.post(withMeta), e.post(withMeta)
		read, err := e.svc.TransactionByKey(ctx, "k-meta")
		if err != nil {
			t.Fatal(err)
		}
		if !m2.Replayed || string(m2.Metadata) != string(m1.Metadata) || string(read.Metadata) != string(m1.Metadata) {
			t.Fatalf("metadata: original %s, replay %s, read %s", m1.Metadata, m2.Metadata, read.Metadata)
		}
		_, err = e.svc.Post(ctx, transfer("k", "mint", "alice", "2"))
		if ledger.KindOf(err) != ledger.Conflict || !errors.Is(err, ledger.ErrIdempotencyConflict) || ledger.FieldOf(err) != "idempotency_key" {
			t.Fatalf("reused key with other content: %v", err)
		}

		// 50 identical requests racing: one posting, one id for all.
		var wg sync.WaitGroup
		ids := make([]uuid.UUID, 50)
		errs := make([]error, 50)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tx, err := e.svc.Post(ctx, transfer("race", "mint", "alice", "1"))
				if err == nil {
					ids[i] = tx.ID
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i := range ids {
			if errs[i] != nil || ids[i] != ids[0] {
				t.Fatalf("racer %d: %v, id %s vs %s", i, errs[i], ids[i], ids[0])
			}
		}
		e.wantBalance("alice", "4.5") // 1.50, k-time, k-meta and race, each once
		e.verifyClean()
	})
}

// Two services on one database (two processes) racing on the same keys.
func TestIdempotencyAcrossServices(t *testing.T) {
	e := newEnv(t, dbtest.Postgres(), ledger.Options{})
	other := ledger.NewService(e.db, ledger.Options{Lanes: 3})
	t.Cleanup(other.Close)
	e.account("mint", "USD", true, 1)
	e.account("alice", "USD", false, 4)
	var wg sync.WaitGroup
	ids := make([][2]uuid.UUID, 30)
	for i := range ids {
		for j, svc := range []*ledger.Service{e.svc, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tx, err := svc.Post(context.Background(), transfer(fmt.Sprintf("x%d", i), "mint", "alice", "1"))
				if err != nil {
					t.Errorf("x%d: %v", i, err)
					return
				}
				ids[i][j] = tx.ID
			}()
		}
	}
	wg.Wait()
	for i, p := range ids {
		if p[0] != p[1] {
			t.Errorf("x%d: two ids %s and %s", i, p[0], p[1])
		}
	}
	e.wantBalance("alice", "30")
	e.verifyClean()
}

func TestReversal(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{})
		ctx := context.Background()
		e.account("mint", "USD", true, 1)
		e.account("alice", "USD", false, 1)
		e.account("bob", "USD", false, 1)
		orig := e.post(transfer("t1", "mint", "alice", "7"))
		rev, err := e.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: "r1", TransactionID: orig.ID, Metadata: []byte(`{"reason":"fraud"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if rev.Reverses == nil || *rev.Reverses != orig.ID || rev.Postings[0].Side != ledger.Credit || rev.Postings[1].Side != ledger.Debit {
			t.Fatalf("reversal %+v", rev)
		}
		if got := e.balance("alice"); !got.IsZero() {
			t.Fatalf("alice = %s after reversal", got)
		}
		again, err := e.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: "r1", TransactionID: orig.ID, Metadata: []byte(`{"reason":"fraud"}`)})
		if err != nil || again.ID != rev.ID || !again.Replayed {
			t.Fatalf("retried reversal: %+v %v", again, err)
		}
		_, err = e.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: "r2", TransactionID: orig.ID})
		if !errors.Is(err, ledger.ErrAlreadyReversed) || ledger.KindOf(err) != ledger.FailedPrecondition {
			t.Fatalf("second reversal: %v", err)
		}
		_, err = e.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: "r3", TransactionID: uuid.New()})
		if !errors.Is(err, ledger.ErrTransactionNotFound) || ledger.FieldOf(err) != "transaction_id" {
			t.Fatalf("reversal of unknown: %v", err)
		}
		// Concurrent reversals of one transaction: exactly one wins.
		orig2 := e.post(transfer("t2", "mint", "bob", "3"))
		var wg sync.WaitGroup
		var mu sync.Mutex
		won, lost := 0, 0
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: fmt.Sprintf("rr%d", i), TransactionID: orig2.ID})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case errors.Is(err, ledger.ErrAlreadyReversed):
					lost++
				default:
					t.Errorf("reversal %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		if won != 1 || lost != 9 {
			t.Fatalf("won %d lost %d", won, lost)
		}
		// A reversal obeys balance policies: alice spent what t3 gave her.
		t3 := e.post(transfer("t3", "mint", "alice", "4"))
		e.post(transfer("spend", "alice", "bob", "4"))
		if _, err := e.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: "r4", TransactionID: t3.ID}); !errors.Is(err, ledger.ErrInsufficientFunds) {
			t.Fatalf("reversal overdrawing alice: %v", err)
		}
		e.verifyClean()
	})
}

func TestBalanceAsOfAndEntries(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{})
		ctx := context.Background()
		e.account("mint", "USD", true, 1)
		e.account("alice", "USD", false, 3)
		var marks []time.Time
		for i := range 25 {
			tx := e.post(transfer(fmt.Sprintf("t%d", i), "mint", "alice", "1"))
			marks = append(marks, tx.RecordedAt)
		}
		for _, i := range []int{0, 9, 24} {
			got, err := e.svc.Balance(ctx, "alice", marks[i])
			if err != nil || !got.Equal(decimal.NewFromInt(int64(i+1))) {
				t.Errorf("as of t%d: %s, %v; want %d", i, got, err, i+1)
			}
		}
		before, _ := e.svc.Balance(ctx, "alice", marks[0].Add(-time.Microsecond))
		if !before.IsZero() {
			t.Errorf("before the first entry: %s", before)
		}
		// Keyset pages of 10 cover every entry exactly once, in commit order.
		all := e.entryPages(t, "alice", ledger.Cursor{}, time.Time{}, 10)
		if len(all) != 25 {
			t.Fatalf("%d entries, want 25", len(all))
		}
		for i, en := range all {
			if !en.RecordedAt.Equal(marks[i]) || en.Side != ledger.Credit || en.Kind != "transfer" {
				t.Errorf("entry %d: %+v", i, en)
			}
		}
		// A statement's span (t9, t20]: 11 entries, which take the balance
		// as of t9 to the balance as of t20, across pages.
		span := e.entryPages(t, "alice", ledger.CursorAfter(marks[9]), marks[20], 4)
		if len(span) != 11 || !span[0].RecordedAt.Equal(marks[10]) || !span[10].RecordedAt.Equal(marks[20]) {
			t.Errorf("entries in (t9, t20]: %d, want t10..t20", len(span))
		}
		if _, err := e.svc.Entries(ctx, "alice", ledger.Cursor{}, time.Time{}, 0); ledger.FieldOf(err) != "limit" {
			t.Errorf("limit 0: %v", err)
		}
	})
}

// A balance as of a time is summed forward from the account's first entry
// when the time is nearer to it, and back from the balance now when the time
// is nearer to now: every instant of a history of credits and debits, and
// one between each pair, gives the running balance either way.
func TestBalanceAsOfFromEitherEnd(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{})
		ctx := context.Background()
		e.account("mint", "USD", true, 1)
		e.account("alice", "USD", false, 3)
		type mark struct {
			at      time.Time
			balance decimal.Decimal
		}
		var marks []mark
		running := decimal.Zero
		for i := range 30 {
			amount := decimal.New(int64(100+i*7), -2)
			from, to := "mint", "alice"
			if i%3 == 2 { // alice pays some back
				from, to, amount = "alice", "mint", amount.Div(decimal.NewFromInt(2)).Round(2)
				running = running.Sub(amount)
			} else {
				running = running.Add(amount)
			}
			tx := e.post(transfer(fmt.Sprintf("t%d", i), from, to, amount.String()))
			marks = append(marks, mark{tx.RecordedAt, running})
			// A history long next to the checks below, which move now on:
			// the later half of the marks stays nearer to now.
			time.Sleep(10 * time.Millisecond)
		}
		check := func(name string, at time.Time, want decimal.Decimal) {
			t.Helper()
			if got, err := e.svc.Balance(ctx, "alice", at); err != nil || !got.Equal(want) {
				t.Errorf("as of %s: %s, %v; want %s", name, got, err, want)
			}
		}
		check("an hour from now", time.Now().Add(time.Hour), running)
		for i := len(marks) - 1; i >= 0; i-- {
			check(fmt.Sprintf("t%d", i), marks[i].at, marks[i].balance)
			if i > 0 {
				check(fmt.Sprintf("just before t%d", i), marks[i].at.Add(-time.Microsecond), marks[i-1].balance)
			}
		}
		check("before the first entry", marks[0].at.Add(-time.Microsecond), decimal.Zero)
	})
}

// entryPages reads an account's entries page by page from a cursor up to
// until, checking that each page's cursor round-trips; at most 100 pages.
func (e *env) entryPages(t *testing.T, account string, cur ledger.Cursor, until time.Time, size int) []ledger.Entry {
	t.Helper()
	var all []ledger.Entry
	for range 100 {
		page, err := e.svc.Entries(context.Background(), account, cur, until, size)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
		cur = page[len(page)-1].After()
		if c2, err := ledger.ParseCursor("op", "page_token", cur.String()); err != nil || c2 != cur {
			t.Fatalf("cursor does not round-trip: %v", err)
		}
	}
	t.Fatalf("%s: more than 100 pages", account)
	return nil
}

// A balance as of a settled instant that summed many entries is kept, and
// later balances as of nearby instants sum from it, forward or back; the
// writer cannot change a kept balance, and verify reports one changed
// behind the service's back (and not the ones after it).
func TestBalanceCheckpoints(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{})
		ctx := context.Background()
		e.account("mint", "USD", true, 1)
		e.account("alice", "USD", false, 3)
		var at []time.Time
		var want []decimal.Decimal
		running := decimal.Zero
		for i := range 40 {
			amount := decimal.New(int64(100+i*7), -2)
			running = running.Add(amount)
			at = append(at, e.post(transfer(fmt.Sprintf("t%d", i), "mint", "alice", amount.String())).RecordedAt)
			want = append(want, running)
		}
		owner := e.owner()
		kept := func() (n int) {
			t.Helper()
			if err := owner.QueryRow(ctx, "SELECT count(*) FROM balance_checkpoints").Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		check := func(name string, i int, delta string) {
			t.Helper()
			w := want[i].Add(decimal.RequireFromString(delta))
			if got, err := e.svc.Balance(ctx, "alice", at[i]); err != nil || !got.Equal(w) {
				t.Errorf("%s: as of t%d %s, %v; want %s", name, i, got, err, w)
			}
		}

		e.db.KeepBalancesAsOf(time.Hour, 5)
		check("not settled", 20, "0")
		if n := kept(); n != 0 {
			t.Fatalf("%d balances kept as of an instant not settled", n)
		}
		e.db.KeepBalancesAsOf(0, 5)
		check("settled, 20 entries summed", 20, "0")
		if n := kept(); n != 1 {
			t.Fatalf("%d balances kept, want the one as of t20", n)
		}
		e.db.KeepBalancesAsOf(0, 1<<62) // no more
		check("one after the kept one", 21, "0")
		check("one before the kept one", 19, "0")
		e.verifyClean()

		// Changed behind the service's back, the kept balance shows in the
		// sums next to it, both ways, which is how we know they use it.
		if _, err := owner.Exec(ctx, "UPDATE balance_checkpoints SET balance = balance + 1"); err != nil {
			t.Fatal(err)
		}
		check("summed forward from a changed checkpoint", 21, "1")
		check("summed back from a changed checkpoint", 19, "1")
		if _, err := owner.Exec(ctx, "UPDATE balance_checkpoints SET balance = balance - 1"); err != nil {
			t.Fatal(err)
		}

		// Every instant, keeping what summed 5 or more: all exact, and verify
		// holds every kept balance to the entries.
		e.db.KeepBalancesAsOf(0, 5)
		for i := range at {
			check("each", i, "0")
		}
		if n := kept(); n < 3 {
			t.Errorf("%d balances kept, want several", n)
		}
		e.verifyClean()
		// Several accounts as of one instant, read together: each as alone,
		// though alice sums from a kept balance and mint from its history.
		accts, err := e.svc.AccountsByName(ctx, []string{"alice", "mint", "alice"})
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, 20, 39} {
			got, err := e.svc.Balances(ctx, accts, at[i])
			if err != nil {
				t.Fatal(err)
			}
			for j, a := range accts {
				if alone, err := e.svc.Balance(ctx, a.Name, at[i]); err != nil || !got[j].Equal(alone) {
					t.Errorf("%s as of t%d: together %s, alone %s %v", a.Name, i, got[j], alone, err)
				}
			}
			if !got[0].Equal(want[i]) || !got[2].Equal(want[i]) {
				t.Errorf("alice as of t%d together: %s, want %s", i, got[0], want[i])
			}
		}

		if b.Name != "postgres" {
			return // the role and tampering checks below are PostgreSQL's
		}
		writer := e.owner()
		if _, err := writer.Exec(ctx, "SET ROLE coinledger_writer"); err != nil {
			t.Fatal(err)
		}
		for _, stmt := range []string{"UPDATE balance_checkpoints SET balance = 0", "DELETE FROM balance_checkpoints"} {
			if _, err := writer.Exec(ctx, stmt); sqlStateOf(err) != "42501" {
				t.Errorf("%s as writer: %v, want insufficient_privilege", stmt, err)
			}
		}
		if _, err := owner.Exec(ctx, "UPDATE balance_checkpoints SET balance = balance + 1 WHERE as_of = $1 AND account_id = (SELECT id FROM accounts WHERE name = 'alice')", at[20]); err != nil {
			t.Fatal(err)
		}
		r, err := e.svc.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Violations) != 1 || r.Violations[0].Check != ledger.CheckCheckpoint || r.Violations[0].Subject != "alice" {
			t.Errorf("verify after one kept balance was changed: %+v, want one %s on alice", r.Violations, ledger.CheckCheckpoint)
		}
	})
}

// The writer role cannot change or remove what was posted; verify reports a
// database corrupted behind the service's back.
func TestImmutableAndVerifyDetectsCorruption(t *testing.T) {
	e := newEnv(t, dbtest.Postgres(), ledger.Options{})
	ctx := context.Background()
	e.account("mint", "USD", true, 1)
	e.account("alice", "USD", false, 1)
	e.account("bob", "USD", false, 1)
	tx := e.post(transfer("t1", "mint", "alice", "5"))
	e.post(transfer("t2", "mint", "bob", "5"))
	e.verifyClean()

	writer := e.owner()
	if _, err := writer.Exec(ctx, "SET ROLE coinledger_writer"); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		"UPDATE entries SET amount = 1",
		"DELETE FROM entries",
		"UPDATE transactions SET kind = 'x'",
		"DELETE FROM transactions",
	} {
		_, err := writer.Exec(ctx, stmt)
		if code := sqlStateOf(err); code != "42501" {
			t.Errorf("%s as writer: %v, want insufficient_privilege", stmt, err)
		}
	}

	owner := e.owner()
	const orphan = "00000000-0000-0000-0000-0000000000aa"
	for _, stmt := range []string{
		// One leg of t1 changed: t1 unbalanced, USD trial balance off, alice's stored balance wrong.
		fmt.Sprintf("UPDATE entries SET amount = 6 WHERE tx_id = '%s' AND idx = 1", tx.ID),
		// bob's stored balance pushed below zero.
		"UPDATE balances SET balance = -1 WHERE account_id = (SELECT id FROM accounts WHERE name = 'bob')",
		// An entry of no transaction.
		fmt.Sprintf("INSERT INTO entries SELECT '%s', 0, account_id, asset, 'debit', 1, recorded_at, 0 FROM entries WHERE tx_id = '%s' AND idx = 0", orphan, tx.ID),
	} {
		if _, err := owner.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	r, err := e.svc.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, v := range r.Violations {
		got[v.Check+" "+v.Subject] = true
	}
	// The changed leg (+1 credit) and the orphan (+1 debit) cancel in the USD
	// trial balance; the per-transaction and per-account checks still see both.
	want := []string{
		ledger.CheckTxBalanced + " " + tx.ID.String(),
		ledger.CheckTxBalanced + " " + orphan,
		ledger.CheckOrphanEntry + " " + orphan,
		ledger.CheckStored + " alice",
		ledger.CheckStored + " bob",
		ledger.CheckStored + " mint",
		ledger.CheckNegative + " bob",
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("verify did not report %q", w)
		}
	}
	if len(r.Violations) != len(want) {
		t.Errorf("%d violations, want %d: %+v", len(r.Violations), len(want), r.Violations)
	}
}

// A ledger broken everywhere gives a report of bounded size: the first
// MaxViolationsPerCheck of each check, and a count of the rest.
func TestVerifyBoundsItsReport(t *testing.T) {
	e := newEnv(t, dbtest.Postgres(), ledger.Options{})
	ctx := context.Background()
	e.account("mint", "USD", true, 1)
	e.account("alice", "USD", false, 1)
	tx := e.post(transfer("t1", "mint", "alice", "5"))
	// 150 entries of no transaction: each is an orphan and an unbalanced
	// transaction of its own.
	const orphans = 150
	if _, err := e.owner().Exec(ctx, fmt.Sprintf(`INSERT INTO entries
		SELECT gen_random_uuid(), 0, account_id, asset, 'debit', 1, recorded_at, 0
		FROM entries, generate_series(1, %d) WHERE tx_id = '%s' AND idx = 0`, orphans, tx.ID)); err != nil {
		t.Fatal(err)
	}
	r, err := e.svc.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]int{}
	for _, v := range r.Violations {
		listed[v.Check]++
	}
	for _, check := range []string{ledger.CheckOrphanEntry, ledger.CheckTxBalanced} {
		if listed[check] != ledger.MaxViolationsPerCheck {
			t.Errorf("%s: %d listed, want %d", check, listed[check], ledger.MaxViolationsPerCheck)
		}
	}
	if want := int64(2 * (orphans - ledger.MaxViolationsPerCheck)); r.Omitted != want || r.Clean() {
		t.Errorf("omitted %d (clean %v), want %d", r.Omitted, r.Clean(), want)
	}
	var out strings.Builder
	r.WriteTo(&out)
	if !strings.Contains(out.String(), "100 more not listed") {
		t.Errorf("report does not say what it left out:\n%s", out.String())
	}
}

func TestCreateAccountIdempotent(t *testing.T) {
	e := newEnv(t, dbtest.Postgres(), ledger.Options{})
	ctx := context.Background()
	a := e.account("alice", "USD", false, 2)
	b := e.account("alice", "USD", false, 2)
	if a.ID != b.ID {
		t.Fatalf("re-creating returned another account")
	}
	_, err := e.svc.CreateAccount(ctx, ledger.Account{Name: "alice", Asset: "COIN", Normal: ledger.Credit})
	if !errors.Is(err, ledger.ErrAccountExists) {
		t.Fatalf("different definition: %v", err)
	}
	_, err = e.svc.CreateAccount(ctx, ledger.Account{Name: "x", Asset: "EUR", Normal: ledger.Credit})
	if !errors.Is(err, ledger.ErrAssetNotFound) || ledger.FieldOf(err) != "asset" || ledger.KindOf(err) != ledger.Invalid {
		t.Fatalf("unknown asset: %v (kind %v), want Invalid on asset", err, ledger.KindOf(err))
	}
	_, err = e.svc.CreateAccount(ctx, ledger.Account{Name: "x", Asset: "USD", Normal: ledger.Credit, Shards: 65})
	if ledger.FieldOf(err) != "shards" {
		t.Fatalf("65 shards: %v", err)
	}
}

func TestTotal(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{})
		e.account("mint", "USD", true, 1)
		e.account("wallet:a", "USD", false, 1)
		e.account("wallet:b", "USD", false, 4)
		e.account("wallet:coins", "COIN", false, 1)
		e.post(transfer("t1", "mint", "wallet:a", "1.25"))
		e.post(transfer("t2", "mint", "wallet:b", "2.50"))
		ctx := context.Background()
		if got, err := e.svc.Total(ctx, "wallet:b"); err != nil || !got.Equal(decimal.RequireFromString("2.5")) {
			t.Errorf("one sharded account: %s %v", got, err)
		}
		if got, err := e.svc.Total(ctx, "nothing:"); err != nil || !got.IsZero() {
			t.Errorf("no accounts: %s %v", got, err)
		}
		if _, err := e.svc.Total(ctx, "wallet:"); ledger.FieldOf(err) != "prefix" {
			t.Errorf("USD and COIN under one prefix: %v", err)
		}
		e.account("x:a", "USD", false, 1)
		e.post(transfer("t3", "wallet:a", "x:a", "0.25"))
		if got, err := e.svc.Total(ctx, "x:"); err != nil || !got.Equal(decimal.RequireFromString("0.25")) {
			t.Errorf("x: %s %v", got, err)
		}
	})
}

func TestExpectations(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{})
		ctx := context.Background()
		e.account("mint", "USD", true, 1)
		e.account("wallet", "USD", false, 1)
		e.account("guarded", "USD", false, 1)
		if _, err := e.svc.CreateAccount(ctx, ledger.Account{Name: "lanes", Asset: "USD", Normal: ledger.Credit, Shards: 2, PerShard: true}); err != nil {
			t.Fatal(err)
		}
		expecting := func(key, account, balance string) ledger.PostRequest {
			req := transfer(key, "mint", "wallet", "1")
			req.Expect = []ledger.Expectation{{Account: account, Balance: decimal.RequireFromString(balance)}}
			return req
		}
		e.post(expecting("guard-holds", "guarded", "0"))
		e.post(transfer("fund-guarded", "mint", "guarded", "2.50"))

		if _, err := e.svc.Post(ctx, expecting("guard-fails", "guarded", "0")); !errors.Is(err, ledger.ErrUnexpectedBalance) || ledger.FieldOf(err) != "expect[0]" {
			t.Fatalf("guard on a funded account: %v", err)
		}
		if got, _ := e.svc.Balance(ctx, "wallet", time.Time{}); !got.Equal(decimal.NewFromInt(1)) {
			t.Errorf("a refused expectation moved the wallet to %s", got)
		}
		e.post(expecting("exact", "guarded", "2.5")) // 2.50 and 2.5 are the same balance

		// The expectation is part of the request: a retry with another is a conflict.
		if _, err := e.svc.Post(ctx, expecting("exact", "guarded", "3")); !errors.Is(err, ledger.ErrIdempotencyConflict) {
			t.Errorf("key reused with another expectation: %v", err)
		}
		for _, c := range []struct {
			name   string
			expect []ledger.Expectation
			field  string
		}{
			{"unknown account", []ledger.Expectation{{Account: "nobody", Balance: decimal.Zero}}, "expect[0].account"},
			{"per-shard account", []ledger.Expectation{{Account: "lanes", Balance: decimal.Zero}}, "expect[0].account"},
			{"too many", make([]ledger.Expectation, ledger.MaxExpectations+1), "expect"},
		} {
			req := transfer("bad-"+strings.ReplaceAll(c.name, " ", "-"), "mint", "wallet", "1")
			req.Expect = c.expect
			if _, err := e.svc.Post(ctx, req); ledger.FieldOf(err) != c.field {
				t.Errorf("%s: got %v, want field %s", c.name, err, c.field)
			}
		}
	})
}

// Accounts by prefix, paged: exactly the names that start with the prefix,
// in byte order, whichever query the database's collation allows.
func TestAccountsByPrefix(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{})
		for _, n := range []string{"p:a", "p:b:1", "p:b:2", "p:b", "p_x", "p", "p:B", "q:a", "o:z", "p:b:3:x", "p-x", "pz"} {
			e.account(n, "USD", false, 1)
		}
		for _, c := range []struct{ prefix, want string }{
			{"p:", "p:B p:a p:b p:b:1 p:b:2 p:b:3:x"},
			{"p:b:", "p:b:1 p:b:2 p:b:3:x"},
			{"p", "p p-x p:B p:a p:b p:b:1 p:b:2 p:b:3:x p_x pz"},
			{"r", ""},
		} {
			var got []string
			after := ""
			for {
				page, err := e.svc.Accounts(context.Background(), c.prefix, after, 2)
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range page {
					got = append(got, a.Name)
				}
				if len(page) < 2 {
					break
				}
				after = page[len(page)-1].Name
			}
			if strings.Join(got, " ") != c.want {
				t.Errorf("prefix %q: %q, want %q", c.prefix, strings.Join(got, " "), c.want)
			}
		}
	})
}

// Lookups by a string that no account name could be are answered without a
// query: a NUL in one failed in SQL as Internal (found by the API's
// FuzzRequests).
func TestAccountLookupsOfNoPossibleName(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{})
		e.account("p:a", "USD", false, 1)
		ctx := context.Background()
		for _, c := range []struct {
			name, field string
			call        func() error
		}{
			{"prefix with a NUL", "prefix", func() error { _, err := e.svc.Accounts(ctx, "p:\x00", "", 10); return err }},
			{"prefix with a space", "prefix", func() error { _, err := e.svc.Accounts(ctx, "p: a", "", 10); return err }},
			{"after that is no name", "after", func() error { _, err := e.svc.Accounts(ctx, "p:", "\xfb\x00", 10); return err }},
			{"total under a NUL", "prefix", func() error { _, err := e.svc.Total(ctx, "\x00"); return err }},
		} {
			if err := c.call(); ledger.KindOf(err) != ledger.Invalid || ledger.FieldOf(err) != c.field {
				t.Errorf("%s: %v, want Invalid on %s", c.name, err, c.field)
			}
		}
		found, err := e.svc.AccountsByName(ctx, []string{"p:a\x00", "p:a", "p a"})
		if err != nil || found[0] != nil || found[1] == nil || found[1].Name != "p:a" || found[2] != nil {
			t.Errorf("by name: %v, %v; want only p:a", found, err)
		}
		if _, err := e.svc.Asset(ctx, "US\x00D"); !errors.Is(err, ledger.ErrAssetNotFound) {
			t.Errorf("asset with a NUL: %v, want not found", err)
		}
		// Where a string still reaches a query, the database's refusal is
		// the input's fault, not an internal error.
		if _, err := e.db.Asset(ctx, "US\x00D"); ledger.KindOf(err) != ledger.Invalid {
			t.Errorf("the store asked for an asset with a NUL: %v (kind %v), want Invalid", err, ledger.KindOf(err))
		}
	})
}

// Balances reads many accounts' balances in one query, in the order asked,
// summing every shard row, and agrees with Balance account by account; as
// of an instant too.
func TestBalancesOfMany(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{Lanes: 4})
		mint := e.account("mint", "USD", true, 1)
		hot := e.account("hot", "USD", false, 4)
		cold := e.account("cold", "USD", false, 1)
		untouched := e.account("untouched", "USD", false, 1)
		dbtest.Fanout(40, 8, func(i int) { e.post(transfer(fmt.Sprintf("h%d", i), "mint", "hot", "1.25")) })
		mid := e.post(transfer("c", "mint", "cold", "7.00")).RecordedAt
		e.post(transfer("c2", "mint", "cold", "3.00"))
		e.post(transfer("h-last", "mint", "hot", "0.50"))
		asOf, err := e.svc.Balances(context.Background(), []*ledger.Account{hot, untouched, cold, mint}, mid)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(asOf); got != "[50 0 7 -57]" {
			t.Errorf("as of the first transfer to cold: %s, want [50 0 7 -57]", got)
		}
		got, err := e.svc.Balances(context.Background(), []*ledger.Account{hot, untouched, cold, mint, hot}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"50.5", "0", "10", "-60.5", "50.5"}
		for i, a := range []*ledger.Account{hot, untouched, cold, mint, hot} {
			if !got[i].Equal(decimal.RequireFromString(want[i])) || !got[i].Equal(e.balance(a.Name)) {
				t.Errorf("%s: Balances %s, Balance %s, want %s", a.Name, got[i], e.balance(a.Name), want[i])
			}
		}
		named, err := e.svc.AccountsByName(context.Background(), []string{"hot", "no:such", "cold", "hot"})
		if err != nil || len(named) != 4 || named[0].ID != hot.ID || named[1] != nil || named[2].ID != cold.ID || named[3].ID != hot.ID {
			t.Errorf("accounts by name: %v, %v", named, err)
		}
		if got, err := e.svc.Balances(context.Background(), nil, time.Time{}); err != nil || len(got) != 0 {
			t.Errorf("no accounts: %v %v", got, err)
		}
		if _, err := e.svc.Balances(context.Background(), make([]*ledger.Account, ledger.MaxSnapshot+1), time.Time{}); ledger.KindOf(err) != ledger.Invalid {
			t.Errorf("too many accounts now: %v", err)
		}
		if _, err := e.svc.Balances(context.Background(), make([]*ledger.Account, ledger.MaxPage+1), mid); ledger.KindOf(err) != ledger.Invalid {
			t.Errorf("too many accounts as of a time: %v", err)
		}
	})
}

// Transaction ids follow the store: time-ordered on PostgreSQL, so the
// indexes keyed by transaction grow at their right edge; random on
// CockroachDB, where ordered keys would make the last range hot.
func TestTransactionIDsSuitTheStore(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := newEnv(t, b, ledger.Options{})
		e.account("mint", "USD", true, 1)
		e.account("alice", "USD", false, 1)
		wantVersion := uuid.Version(7)
		if b.Name == "cockroach" {
			wantVersion = 4
		}
		var prev uuid.UUID
		for i := range 20 {
			tx := e.post(transfer(fmt.Sprintf("id-%d", i), "mint", "alice", "1"))
			if tx.ID.Version() != wantVersion {
				t.Fatalf("transaction %d: id %s is version %d, want %d", i, tx.ID, tx.ID.Version(), wantVersion)
			}
			if wantVersion == 7 && bytes.Compare(tx.ID[:], prev[:]) <= 0 {
				t.Fatalf("transaction %d: id %s does not sort after %s", i, tx.ID, prev)
			}
			prev = tx.ID
		}
	})
}
