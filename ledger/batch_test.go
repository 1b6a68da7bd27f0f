package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

func pendingTransfer(key string, from, to *Account, amount int64) *Pending {
	amt := decimal.NewFromInt(amount)
	req := []PostingRequest{{Account: from.Name, Side: Debit, Amount: amt}, {Account: to.Name, Side: Credit, Amount: amt}}
	return &Pending{
		Tx: Transaction{ID: uuid.New(), IdempotencyKey: key, Kind: "transfer", Postings: []Posting{
			{Account: from.Name, AccountID: from.ID, Side: Debit, Amount: amt},
			{Account: to.Name, AccountID: to.ID, Side: Credit, Amount: amt},
		}},
		Fingerprint: fingerprint("transfer", time.Time{}, json.RawMessage("{}"), nil, req, nil),
		Accounts:    []*Account{from, to},
	}
}

func TestDecide(t *testing.T) {
	alice := &Account{ID: uuid.New(), Name: "alice", Normal: Credit, Shards: 1}
	bob := &Account{ID: uuid.New(), Name: "bob", Normal: Credit, Shards: 1}
	mint := &Account{ID: uuid.New(), Name: "mint", Normal: Credit, AllowNegative: true, Shards: 4}
	frozen := &Account{ID: uuid.New(), Name: "frozen", Normal: Credit, Shards: 1}
	committedID := uuid.New()
	reversed := uuid.New()
	fresh := uuid.New()

	rev := func(key string, target uuid.UUID) *Pending {
		p := pendingTransfer(key, bob, alice, 1)
		p.Tx.Reverses = &target
		p.Fingerprint = []byte(key)
		return p
	}
	batch := []*Pending{
		pendingTransfer("a1", alice, bob, 6),    // 10 -> 4
		pendingTransfer("a2", alice, bob, 5),    // would be -1: refused
		pendingTransfer("a1", alice, bob, 6),    // in-batch retry of a1
		pendingTransfer("a1", alice, bob, 7),    // a1 reused with other content
		pendingTransfer("done", mint, alice, 1), // committed before, same content
		pendingTransfer("done", mint, alice, 2), // committed before, other content
		pendingTransfer("a3", mint, alice, 100), // mint may go negative
		pendingTransfer("a4", alice, bob, 104),  // sees a3's credit: 104 -> 0
		pendingTransfer("f1", alice, frozen, 1), // frozen
		rev("r1", reversed),                     // already reversed before
		rev("r2", fresh),                        // first reversal of fresh
		rev("r3", fresh),                        // second, same batch
		pendingTransfer("a2", alice, bob, 1),    // a2 with other content, after a2's refusal: 1 -> 0
		pendingTransfer("a2", alice, bob, 1),    // in-batch retry of that one
	}
	plan := PlanBatch(batch, 1)
	if !plan.Checked[alice.ID] || !plan.Checked[bob.ID] || plan.Checked[mint.ID] {
		t.Fatalf("checked accounts %v", plan.Checked)
	}
	for _, l := range plan.Locks {
		if l.AccountID == mint.ID && l.Shard != 1 {
			t.Errorf("lane 1 locks mint shard %d, want only shard 1", l.Shard)
		}
	}
	st := &State{
		RecordedAt: time.Unix(100, 0).UTC(),
		Committed:  map[string]Committed{"done": {ID: committedID, Fingerprint: batch[4].Fingerprint}},
		Reversed:   map[uuid.UUID]bool{reversed: true},
		Status:     map[uuid.UUID]Status{alice.ID: Open, bob.ID: Open, mint.ID: Open, frozen.ID: Frozen},
		Balance:    map[uuid.UUID]decimal.Decimal{alice.ID: decimal.NewFromInt(10), bob.ID: decimal.NewFromInt(1)},
	}
	Decide(batch, st)
	want := []struct {
		outcome Outcome
		is      error
	}{
		{Accepted, nil},
		{Refused, ErrInsufficientFunds},
		{Duplicate, nil},
		{Refused, ErrIdempotencyConflict},
		{Replay, nil},
		{Refused, ErrIdempotencyConflict},
		{Accepted, nil},
		{Accepted, nil},
		{Refused, ErrAccountFrozen},
		{Refused, ErrAlreadyReversed},
		{Accepted, nil},
		{Refused, ErrAlreadyReversed},
		{Accepted, nil},
		{Duplicate, nil},
	}
	for i, w := range want {
		p := batch[i]
		if p.Outcome != w.outcome || (w.is != nil && !errors.Is(p.Err, w.is)) || (w.is == nil && p.Err != nil) {
			t.Errorf("#%d %s: outcome %d err %v; want %d %v", i, p.Tx.IdempotencyKey, p.Outcome, p.Err, w.outcome, w.is)
		}
	}
	if batch[4].ReplayOf != committedID {
		t.Errorf("replay of %s, want %s", batch[4].ReplayOf, committedID)
	}
	seqs := []int{batch[0].Tx.BatchSeq, batch[6].Tx.BatchSeq, batch[7].Tx.BatchSeq, batch[10].Tx.BatchSeq, batch[12].Tx.BatchSeq}
	if !slices.Equal(seqs, []int{0, 1, 2, 3, 4}) || !batch[0].Tx.RecordedAt.Equal(st.RecordedAt) {
		t.Errorf("accepted sequence %v", seqs)
	}
	// Deltas: alice -6 +100 -104 +1 (reversal r2) -1 = -10; bob +6 +104 -1 +1 = +110; mint -100 on shard 1.
	got := map[string]string{}
	for _, d := range plan.Deltas(batch) {
		for _, a := range []*Account{alice, bob, mint} {
			if a.ID == d.AccountID {
				got[a.Name] = d.Delta.String()
				if a == mint && d.Shard != 1 {
					t.Errorf("mint delta on shard %d", d.Shard)
				}
			}
		}
	}
	if got["alice"] != "-10" || got["bob"] != "110" || got["mint"] != "-100" {
		t.Errorf("deltas %v", got)
	}
	// The in-batch retry takes the first's result once resolved.
	batch[2].Resolve()
	if batch[2].Tx.ID != batch[0].Tx.ID || !batch[2].Tx.Replayed {
		t.Errorf("in-batch duplicate resolved to %+v", batch[2].Tx)
	}
	// Deciding again (a retried database transaction, later) gives the same
	// answers, recorded at the new attempt's time.
	st.RecordedAt = st.RecordedAt.Add(time.Second)
	Decide(batch, st)
	if batch[1].Outcome != Refused || batch[7].Outcome != Accepted {
		t.Error("Decide is not repeatable")
	}
	if !batch[0].Tx.EffectiveAt.Equal(st.RecordedAt) {
		t.Errorf("retried batch: effective %s, recorded %s", batch[0].Tx.EffectiveAt, st.RecordedAt)
	}
}

// fakeStore commits in memory and fails any batch holding a poisoned key
// with an unexpected error, as a database would for a row it rejects.
type fakeStore struct {
	Store
	mu       sync.Mutex
	accounts map[string]*Account
	posted   []string
	failed   []int         // sizes of the batches that failed
	hold     chan struct{} // when set, the first commit waits for it
	holding  chan struct{} // closed when the first commit starts waiting
}

func (f *fakeStore) Account(_ context.Context, name string) (*Account, error) {
	if a, ok := f.accounts[name]; ok {
		return a, nil
	}
	return nil, ErrAccountNotFound
}

func (f *fakeStore) Asset(_ context.Context, code string) (Asset, error) {
	return Asset{Code: code, Scale: 2}, nil
}

func (f *fakeStore) NewTransactionID() uuid.UUID { return uuid.New() }

func (f *fakeStore) CommitBatch(_ context.Context, lane int, batch []*Pending) error {
	if f.hold != nil {
		close(f.holding)
		<-f.hold
		f.hold = nil // only the lane's goroutine touches it
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range batch {
		if strings.HasPrefix(p.Tx.IdempotencyKey, "poison") {
			f.failed = append(f.failed, len(batch))
			return errors.New("database rejected a row")
		}
	}
	Decide(batch, &State{Status: map[uuid.UUID]Status{}, Balance: map[uuid.UUID]decimal.Decimal{}})
	for _, p := range batch {
		if p.Outcome == Accepted {
			f.posted = append(f.posted, p.Tx.IdempotencyKey)
		}
	}
	return nil
}

// One request the database rejects must not sink the others in its batch.
func TestBatchFallbackIsolatesFailure(t *testing.T) {
	mint := &Account{ID: uuid.New(), Name: "mint", Asset: "USD", Normal: Credit, AllowNegative: true, Shards: 1}
	user := &Account{ID: uuid.New(), Name: "user", Asset: "USD", Normal: Credit, AllowNegative: true, Shards: 1}
	hold := make(chan struct{})
	store := &fakeStore{accounts: map[string]*Account{"mint": mint, "user": user}, hold: hold, holding: make(chan struct{})}
	svc := NewService(store, Options{Lanes: 1})
	defer svc.Close()
	post := func(key string) error {
		_, err := svc.Post(context.Background(), PostRequest{IdempotencyKey: key, Kind: "transfer", Postings: []PostingRequest{
			{Account: "mint", Side: Debit, Amount: decimal.NewFromInt(1)},
			{Account: "user", Side: Credit, Amount: decimal.NewFromInt(1)}}})
		return err
	}
	// The first request holds the only lane while the rest queue up behind
	// it, so they are committed as one batch.
	warm := make(chan error)
	go func() { warm <- post("warm") }()
	<-store.holding
	var wg sync.WaitGroup
	errs := map[string]error{}
	var mu sync.Mutex
	keys := []string{"ok1", "poison", "ok2", "ok3", "ok4", "ok5", "ok6", "ok7"}
	for _, key := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := post(key)
			mu.Lock()
			errs[key] = err
			mu.Unlock()
		}()
	}
	for len(svc.queue) < len(keys) {
		time.Sleep(time.Millisecond)
	}
	close(hold)
	wg.Wait()
	if err := <-warm; err != nil {
		t.Fatal(err)
	}
	// The whole batch failed, then the poisoned request alone.
	if len(store.failed) != 2 || store.failed[0] != len(keys) || store.failed[1] != 1 {
		t.Fatalf("failed batches %v, want [%d 1]", store.failed, len(keys))
	}
	for key, err := range errs {
		if (err != nil) != (key == "poison") {
			t.Errorf("%s: %v", key, err)
		}
	}
	if KindOf(errs["poison"]) != Internal {
		t.Errorf("poison: kind %v", KindOf(errs["poison"]))
	}
	if len(store.posted) != 8 { // warm and the seven good ones
		t.Errorf("posted %v", store.posted)
	}
}

func TestPostAfterClose(t *testing.T) {
	svc := NewService(&fakeStore{accounts: map[string]*Account{}}, Options{})
	svc.Close()
	svc.Close() // idempotent
	_, err := svc.submit(context.Background(), &Pending{})
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("post after close: %v", err)
	}
}

// A retried batch decides spills again from the postings asked for.
func TestDecideSpillRepeatable(t *testing.T) {
	promo := &Account{ID: uuid.New(), Name: "promo", Normal: Credit, Shards: 1}
	paid := &Account{ID: uuid.New(), Name: "paid", Normal: Credit, Shards: 1}
	sink := &Account{ID: uuid.New(), Name: "sink", Normal: Credit, AllowNegative: true, Shards: 1}
	pd := pendingTransfer("g", promo, sink, 50)
	pd.spills = []spill{{index: 0, to: paid}}
	st := &State{
		Status:  map[uuid.UUID]Status{},
		Balance: map[uuid.UUID]decimal.Decimal{promo.ID: decimal.NewFromInt(30), paid.ID: decimal.NewFromInt(100)},
	}
	for attempt := range 2 {
		Decide([]*Pending{pd}, st)
		if pd.Outcome != Accepted || len(pd.Tx.Postings) != 3 ||
			!pd.Tx.Postings[0].Amount.Equal(decimal.NewFromInt(30)) || !pd.Tx.Postings[2].Amount.Equal(decimal.NewFromInt(20)) {
			t.Fatalf("attempt %d: %v %+v", attempt, pd.Err, pd.Tx.Postings)
		}
	}
	if !pd.basePostings[0].Amount.Equal(decimal.NewFromInt(50)) {
		t.Fatalf("the asked-for posting was changed: %+v", pd.basePostings[0])
	}
}

// An expectation is checked against the balance the transactions before it
// in the batch left, and a refused one moves nothing.
func TestDecideExpectations(t *testing.T) {
	owed := &Account{ID: uuid.New(), Name: "debt", Normal: Debit, Shards: 1}
	wallet := &Account{ID: uuid.New(), Name: "wallet", Normal: Credit, Shards: 1}
	expecting := func(key string, amount, expect int64) *Pending {
		p := pendingTransfer(key, wallet, owed, amount) // a credit to debt repays it
		p.expects = []expectSpec{{account: owed, balance: decimal.NewFromInt(expect)}}
		return p
	}
	batch := []*Pending{
		expecting("repay-1", 3, 5), // 5 owed: 5 -> 2
		expecting("repay-2", 2, 5), // planned from the same read: refused
		expecting("repay-3", 2, 2), // planned after repay-1: 2 -> 0
	}
	plan := PlanBatch(batch, 0)
	if !plan.Checked[owed.ID] {
		t.Fatal("an expected account's full balance is not read")
	}
	st := &State{
		RecordedAt: time.Unix(100, 0).UTC(),
		Committed:  map[string]Committed{},
		Reversed:   map[uuid.UUID]bool{},
		Status:     map[uuid.UUID]Status{owed.ID: Open, wallet.ID: Open},
		Balance:    map[uuid.UUID]decimal.Decimal{owed.ID: decimal.NewFromInt(5), wallet.ID: decimal.NewFromInt(10)},
	}
	Decide(batch, st)
	if batch[0].Outcome != Accepted || batch[2].Outcome != Accepted {
		t.Fatalf("outcomes %v %v %v", batch[0].Err, batch[1].Err, batch[2].Err)
	}
	if batch[1].Outcome != Refused || !errors.Is(batch[1].Err, ErrUnexpectedBalance) || FieldOf(batch[1].Err) != "expect[0]" {
		t.Fatalf("stale expectation: %v %v", batch[1].Outcome, batch[1].Err)
	}
	if !strings.Contains(batch[1].Err.Error(), "debt holds 2, not 5") {
		t.Errorf("message does not say what was found: %v", batch[1].Err)
	}
}

// A sweep moves the balance the transactions before it in the batch left,
// whatever the caller read before; one that finds nothing is refused and
// moves nothing.
func TestDecideSweep(t *testing.T) {
	pending := &Account{ID: uuid.New(), Name: "pending", Normal: Credit, Shards: 1}
	available := &Account{ID: uuid.New(), Name: "available", Normal: Credit, Shards: 1}
	issued := &Account{ID: uuid.New(), Name: "issued", Normal: Credit, AllowNegative: true, Shards: 1}
	sweeping := func(key string) *Pending {
		return &Pending{Tx: Transaction{ID: uuid.New(), IdempotencyKey: key}, Fingerprint: []byte(key),
			sweep: &sweepSpec{from: pending, to: available}}
	}
	batch := []*Pending{
		pendingTransfer("take-back", pending, issued, 3), // 10 -> 7
		sweeping("release"),                              // moves 7
		sweeping("release-again"),                        // nothing left
		pendingTransfer("late-gift", issued, pending, 2), // 0 -> 2
		sweeping("release-late"),                         // moves 2
	}
	plan := PlanBatch(batch, 0)
	if !plan.Checked[pending.ID] {
		t.Fatal("a swept account's full balance is not read")
	}
	st := &State{
		RecordedAt: time.Unix(100, 0).UTC(),
		Committed:  map[string]Committed{},
		Reversed:   map[uuid.UUID]bool{},
		Status:     map[uuid.UUID]Status{pending.ID: Open, available.ID: Open, issued.ID: Open},
		Balance:    map[uuid.UUID]decimal.Decimal{pending.ID: decimal.NewFromInt(10)},
	}
	for attempt := range 2 { // Decide may run again on a retry
		Decide(batch, st)
		for i, want := range []string{"", "debit pending 7, credit available 7", "", "", "debit pending 2, credit available 2"} {
			pd := batch[i]
			if pd.sweep == nil {
				if pd.Outcome != Accepted {
					t.Fatalf("attempt %d: %s: %v", attempt, pd.Tx.IdempotencyKey, pd.Err)
				}
				continue
			}
			var got []string
			for _, p := range pd.Tx.Postings {
				got = append(got, fmt.Sprintf("%s %s %s", p.Side, p.Account, p.Amount))
			}
			if want == "" {
				if pd.Outcome != Refused || !errors.Is(pd.Err, ErrNothingToSweep) || FieldOf(pd.Err) != "sweep.from" || len(got) > 0 {
					t.Errorf("attempt %d: %s: %v %v %v", attempt, pd.Tx.IdempotencyKey, pd.Outcome, pd.Err, got)
				}
				continue
			}
			if pd.Outcome != Accepted || strings.Join(got, ", ") != want {
				t.Errorf("attempt %d: %s: %v %v, want %s", attempt, pd.Tx.IdempotencyKey, pd.Err, got, want)
			}
		}
	}
}

// Taking a carry back draws on every row, not only the lane's, before it
// returns whole granules; a refused take-back leaves the rows as they were.
// Regression: it used to read only the lane's row and returned a granule
// too many when the fraction sat in another lane's row.
func TestDecideCarryAcrossRows(t *testing.T) {
	carryAcct := &Account{ID: uuid.New(), Name: "carry", Normal: Credit, Shards: 2, PerShard: true}
	source := &Account{ID: uuid.New(), Name: "frac:issued", Normal: Credit, AllowNegative: true, Shards: 1}
	issued := &Account{ID: uuid.New(), Name: "dia:issued", Normal: Credit, AllowNegative: true, Shards: 1}
	pending := &Account{ID: uuid.New(), Name: "pending", Normal: Credit, Shards: 1}
	carrying := func(key, fraction string) *Pending {
		return &Pending{Tx: Transaction{ID: uuid.New(), IdempotencyKey: key}, Fingerprint: []byte(key),
			carries: []carrySpec{{account: carryAcct, source: source, fraction: decimal.RequireFromString(fraction),
				granule: decimal.NewFromInt(1), legs: []carryLegSpec{{from: issued, to: pending, per: decimal.NewFromInt(1)}}}}}
	}
	batch := []*Pending{
		carrying("back-2.5", "-2.5"), // row 0 holds 0.5: 2 granules come back, not 3
		carrying("add-0.7", "0.7"),   // the lane's row (1): 0 -> 0.7
		carrying("back-0.6", "-0.6"), // from the lane's row: 0.7 -> 0.1
		carrying("back-3", "-3"),     // 0.1 held, 2.9 short: 3 granules, pending holds 1: refused
		carrying("back-0.1", "-0.1"), // the refused one left row 1 at 0.1
	}
	const lane = 1
	plan := PlanBatch(batch, lane)
	if !plan.AllRows[carryAcct.ID] {
		t.Fatal("taking a carry back does not lock all its rows")
	}
	st := &State{
		Lane: lane, Committed: map[string]Committed{}, Reversed: map[uuid.UUID]bool{}, Status: map[uuid.UUID]Status{},
		Balance: map[uuid.UUID]decimal.Decimal{carryAcct.ID: decimal.RequireFromString("0.5"), pending.ID: decimal.NewFromInt(3)},
		Rows:    map[ShardRef]decimal.Decimal{{carryAcct.ID, 0}: decimal.RequireFromString("0.5"), {carryAcct.ID, 1}: decimal.Zero},
	}
	Decide(batch, st)
	want := []struct {
		outcome  Outcome
		postings string
	}{
		{Accepted, "debit carry 0.5, credit frac:issued 0.5, debit pending 2, credit dia:issued 2"},
		{Accepted, "debit frac:issued 0.7, credit carry 0.7"},
		{Accepted, "debit carry 0.6, credit frac:issued 0.6"},
		{Refused, ""},
		{Accepted, "debit carry 0.1, credit frac:issued 0.1"},
	}
	for i, w := range want {
		pd := batch[i]
		var got []string
		for _, p := range pd.Tx.Postings {
			got = append(got, p.Side.String()+" "+p.Account+" "+p.Amount.String())
		}
		if pd.Outcome != w.outcome || strings.Join(got, ", ") != w.postings {
			t.Errorf("%s: outcome %v (%v), postings %q, want %v %q", pd.Tx.IdempotencyKey, pd.Outcome, pd.Err, strings.Join(got, ", "), w.outcome, w.postings)
		}
	}
	if !errors.Is(batch[3].Err, ErrInsufficientFunds) {
		t.Errorf("taking back more than carry and pending hold: %v", batch[3].Err)
	}
	rows := map[ShardRef]string{}
	for _, d := range plan.Deltas(batch) {
		rows[d.ShardRef] = d.Delta.String()
	}
	if rows[ShardRef{carryAcct.ID, 0}] != "-0.5" || rows[ShardRef{carryAcct.ID, 1}] != "0" || rows[ShardRef{pending.ID, 0}] != "-2" {
		t.Errorf("row deltas %v: want carry row 0 -0.5, row 1 0, pending -2", rows)
	}
}

// A relief locks only the legs of the assets guessed; reaching a lot in
// another asset defers it, and a later request with its key is decided on
// its own.
func TestDecideDefersReliefOutsideGuess(t *testing.T) {
	wallet := &Account{ID: uuid.New(), Name: "wallet", Asset: "C", Normal: Credit, Shards: 1}
	sink := &Account{ID: uuid.New(), Name: "sink", Asset: "C", Normal: Credit, AllowNegative: true, Shards: 1}
	legs := map[string]reliefLeg{}
	legAccounts := map[string][]*Account{}
	for _, a := range []string{"USD", "EUR"} {
		from := &Account{ID: uuid.New(), Name: "deferred:" + a, Asset: a, Normal: Credit, AllowNegative: true, Shards: 2}
		to := &Account{ID: uuid.New(), Name: "revenue:" + a, Asset: a, Normal: Credit, AllowNegative: true, Shards: 2}
		legs[a] = reliefLeg{from: from, to: to, scale: 2}
		legAccounts[a] = []*Account{from, to}
	}
	spend := func(key string, units int64, guess ...string) *Pending {
		pd := pendingTransfer(key, wallet, sink, units)
		pd.relief = &reliefSpec{account: wallet, units: decimal.NewFromInt(units), legs: legs}
		if guess != nil {
			pd.relief.narrowed, pd.relief.lockAssets = true, guess
		}
		return pd
	}
	usdOnly := []string{"USD"}
	batch := []*Pending{
		spend("s1", 2, usdOnly...), // within the USD lot
		spend("s2", 2, usdOnly...), // the USD lot's last unit, then EUR: deferred
		spend("s2", 2),             // the same key, every leg: decided on its own
	}
	plan := PlanBatch(batch, 0)
	lockedNames := map[string]bool{}
	for _, a := range plan.Accounts {
		lockedNames[a.Name] = true
	}
	if !lockedNames["revenue:EUR"] || !lockedNames["deferred:USD"] {
		t.Fatalf("plan with an unguessed request locks %v", lockedNames)
	}
	if narrow := PlanBatch(batch[:2], 0); len(narrow.Accounts) != len(plan.Accounts)-2 {
		t.Errorf("guessed USD only, yet the plan has %d accounts, want %d", len(narrow.Accounts), len(plan.Accounts)-2)
	}
	lot := func(asset string, units int64, value string) *Lot {
		u := decimal.NewFromInt(units)
		return &Lot{ID: uuid.New(), AccountID: wallet.ID, Units: u, UnitsLeft: u, ValueAccountID: legs[asset].from.ID,
			ValueAsset: asset, Value: decimal.RequireFromString(value), ValueLeft: decimal.RequireFromString(value)}
	}
	st := &State{
		Status:  map[uuid.UUID]Status{},
		Balance: map[uuid.UUID]decimal.Decimal{wallet.ID: decimal.NewFromInt(13)},
		Lots:    map[uuid.UUID][]*Lot{wallet.ID: {lot("USD", 3, "3.00"), lot("EUR", 10, "5.00")}},
	}
	Decide(batch, st)
	if batch[0].Outcome != Accepted || batch[1].Outcome != Deferred || batch[2].Outcome != Accepted {
		t.Fatalf("outcomes %d %d %d, want accepted, deferred, accepted", batch[0].Outcome, batch[1].Outcome, batch[2].Outcome)
	}
	if batch[1].Err != nil || len(batch[1].Tx.Postings) != 2 || batch[1].Reliefs != nil {
		t.Errorf("deferred request left a trace: err %v, %d postings, reliefs %v", batch[1].Err, len(batch[1].Tx.Postings), batch[1].Reliefs)
	}
	// s2 (the third) took the USD lot's last unit and one EUR unit.
	if got := len(batch[2].Tx.Postings); got != 6 {
		t.Errorf("s2 posted %d postings, want 2 + a USD and a EUR leg", got)
	}
	for _, pd := range []*Pending{batch[0], batch[2]} {
		if !slices.Equal(pd.heldAssets, []string{"EUR"}) {
			t.Errorf("%s learned %v, want [EUR]: the USD lot is used up", pd.Tx.IdempotencyKey, pd.heldAssets)
		}
	}
	for _, d := range plan.Deltas(batch) {
		if d.AccountID == wallet.ID && !d.Delta.Equal(decimal.NewFromInt(-4)) {
			t.Errorf("wallet delta %s, want -4: the deferred request moves nothing", d.Delta)
		}
	}
}

func TestLingerFor(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name          string
		limit, recent time.Duration
		want          time.Duration
	}{
		{"a fifth of the recent commit time", ms, 3500 * time.Microsecond, 700 * time.Microsecond},
		{"short commits, short wait", ms, 1800 * time.Microsecond, 360 * time.Microsecond},
		{"capped by the limit", ms, 10 * ms, ms},
		{"nothing measured yet", ms, 0, 0},
		{"no linger asked for", -1, 10 * ms, 0},
	}
	for _, tt := range tests {
		if got := lingerFor(tt.limit, tt.recent); got != tt.want {
			t.Errorf("%s: lingerFor(%v, %v) = %v, want %v", tt.name, tt.limit, tt.recent, got, tt.want)
		}
	}
}

// Relief legs are cached by reliefLegsKey: two different sets of legs must
// never share a key, however their names are cut, and one set's key must not
// depend on the map's order.
func TestReliefLegsKeyIsUnambiguous(t *testing.T) {
	sets := []map[string]ReliefLeg{
		{"USD": {From: "a", To: "b"}},
		{"USD": {From: "a", To: "b"}, "EUR": {From: "c", To: "d"}},
		{"USD": {From: "a:", To: "b"}},
		{"USD": {From: "a", To: ":b"}},
		{"USD": {From: "1:a", To: "b"}},
		{"USD1:a": {From: "", To: "b"}},
		{"EUR": {From: "a", To: "b"}},
		{"USD": {From: "b", To: "a"}},
		{},
	}
	seen := map[string]int{}
	for i, legs := range sets {
		key := reliefLegsKey(legs)
		if j, dup := seen[key]; dup {
			t.Errorf("legs %v and %v share the key %q", sets[j], legs, key)
		}
		seen[key] = i
		for range 20 {
			if again := reliefLegsKey(legs); again != key {
				t.Fatalf("legs %v keyed %q, then %q", legs, key, again)
			}
		}
	}
}
