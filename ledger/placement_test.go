package ledger

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

func TestWholeRows(t *testing.T) {
	alice := &Account{ID: uuid.New(), Name: "alice", Normal: Credit, Shards: 2}
	paid := &Account{ID: uuid.New(), Name: "paid", Normal: Credit, Shards: 1}
	mint := &Account{ID: uuid.New(), Name: "mint", Normal: Credit, AllowNegative: true, Shards: 4}
	carry := &Account{ID: uuid.New(), Name: "carry", Normal: Credit, Shards: 2, PerShard: true}
	spilling := pendingTransfer("s", alice, mint, 5)
	spilling.spills = []spill{{index: 0, to: paid}}
	carrying := pendingTransfer("c", mint, alice, 5)
	carrying.carries = []carrySpec{{account: carry, source: mint, fraction: decimal.NewFromInt(1)}}
	takingBack := pendingTransfer("t", mint, alice, 5)
	takingBack.carries = []carrySpec{{account: carry, source: mint, fraction: decimal.NewFromInt(-1)}}
	for _, tc := range []struct {
		name string
		pd   *Pending
		want []uuid.UUID
	}{
		{"debits a checked account", pendingTransfer("a", alice, mint, 1), []uuid.UUID{alice.ID}},
		{"debits one that may go negative", pendingTransfer("m", mint, alice, 1), nil},
		{"spills into another checked account", spilling, []uuid.UUID{alice.ID, paid.ID}},
		{"adds to a carry: the lane's row only", carrying, nil},
		{"takes from a carry: every row", takingBack, []uuid.UUID{carry.ID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.pd.wholeRows(); !slices.Equal(got, tc.want) {
				t.Errorf("wholeRows %v, want %v", got, tc.want)
			}
		})
	}
}

// A request whose account's rows the other lane's batch in flight holds is
// handed to that lane instead of waiting for its row lock in this lane's
// batch; a request that touches none of them is not held up.
func TestPlacementHandsOverToTheHoldingLane(t *testing.T) {
	alice := &Account{ID: uuid.New(), Name: "alice", Asset: "USD", Normal: Credit, Shards: 1}
	bob := &Account{ID: uuid.New(), Name: "bob", Asset: "USD", Normal: Credit, Shards: 1}
	sink := &Account{ID: uuid.New(), Name: "sink", Asset: "USD", Normal: Credit, AllowNegative: true, Shards: 2}
	hold := make(chan struct{})
	store := &fakeStore{accounts: map[string]*Account{"alice": alice, "bob": bob, "sink": sink},
		balances: map[uuid.UUID]decimal.Decimal{alice.ID: decimal.NewFromInt(100), bob.ID: decimal.NewFromInt(100)},
		hold:     hold, holding: make(chan struct{})}
	svc := NewService(store, Options{Lanes: 2, Linger: time.Microsecond})
	defer svc.Close()
	var release sync.Once
	defer release.Do(func() { close(hold) }) // a failing test must not leave a lane held
	post := func(ctx context.Context, key, from string) error {
		_, err := svc.Post(ctx, PostRequest{IdempotencyKey: key, Kind: "transfer", Postings: []PostingRequest{
			{Account: from, Side: Debit, Amount: decimal.NewFromInt(1)},
			{Account: "sink", Side: Credit, Amount: decimal.NewFromInt(1)}}})
		return err
	}
	first := make(chan error)
	go func() { first <- post(context.Background(), "a1", "alice") }()
	<-store.holding // one lane's batch holds alice's row and waits

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := post(ctx, "b1", "bob"); err != nil {
		t.Fatalf("bob's transfer waited for the held lane: %v", err)
	}
	second := make(chan error)
	go func() { second <- post(context.Background(), "a2", "alice") }()
	for svc.CommitStats().HandedOver == 0 {
		if ctx.Err() != nil {
			t.Fatal("alice's second transfer was not handed to the lane holding her row")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-second:
		t.Fatalf("alice's second transfer answered before the batch holding her row committed: %v", err)
	default:
	}
	release.Do(func() { close(hold) })
	for _, ch := range []chan error{first, second} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if store.laneOf["a1"] != store.laneOf["a2"] || store.laneOf["b1"] == store.laneOf["a1"] {
		t.Errorf("lanes %v: want a1 and a2 on one lane, b1 on the other", store.laneOf)
	}
	if got := svc.CommitStats().HandedOver; got != 1 {
		t.Errorf("handed over %d, want 1", got)
	}
}

func TestLaneTakesHandedUpToMax(t *testing.T) {
	ls := newLaneStates(1)[0]
	a, b, c := &request{}, &request{}, &request{}
	ls.handed = []*request{a, b, c}
	got := ls.takeHanded([]*request{{}}, 3)
	if len(got) != 3 || got[1] != a || got[2] != b {
		t.Fatalf("took %d, want the existing one, a and b", len(got))
	}
	if len(ls.handed) != 1 || ls.handed[0] != c {
		t.Fatalf("left %v, want c", ls.handed)
	}
	if ls.retire() {
		t.Fatal("retired with a handed request left")
	}
	ls.takeHanded(nil, 3)
	if !ls.retire() {
		t.Fatal("did not retire with nothing left")
	}
	ls.holding[uuid.Nil] = true
	if ls.takeIfHolding(&request{rows: []uuid.UUID{uuid.Nil}}) {
		t.Fatal("a retired lane took a hand-over")
	}
}
