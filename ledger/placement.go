package ledger

import (
	"sync"

	"github.com/google/uuid"
)

// Lane placement. Two lanes that both hold a viewer's gift in their batches
// take that viewer's balance rows one after the other: the second lane's
// lock statement waits for the first lane's COMMIT, and its whole batch with
// it. So a lane filling its batch hands a request to the lane whose batch in
// flight already locks every row of one of the request's checked accounts;
// that lane commits it next, right after the batch it is waiting for anyway,
// and the rest of this lane's batch does not wait. It is a hint only: a
// request placed wrongly (the other batch began after the look) still waits
// for the row lock, which is what keeps it correct.

// laneState is what other lanes may see of one lane.
type laneState struct {
	mu      sync.Mutex
	holding map[uuid.UUID]bool // accounts whose every row the batch in flight locks
	handed  []*request         // handed over by other lanes; committed next
	wake    chan struct{}      // capacity 1: something was handed over
	retired bool               // stopped; takes nothing more
}

func newLaneStates(n int) []*laneState {
	out := make([]*laneState, n)
	for i := range out {
		out[i] = &laneState{holding: map[uuid.UUID]bool{}, wake: make(chan struct{}, 1)}
	}
	return out
}

// wholeRows lists the accounts whose every balance row a batch holding pd
// locks: checked accounts that are not per-shard, and per-shard ones read
// across all rows.
func (pd *Pending) wholeRows() []uuid.UUID {
	var out []uuid.UUID
	pd.touches(func(a *Account, t touch) {
		if t == checkedAllRows || t == checked && !a.PerShard {
			out = append(out, a.ID)
		}
	})
	return out
}

// place adds r to this lane's batch, or hands it to the lane whose batch in
// flight holds one of its accounts' rows.
func (s *Service) place(lane int, batch []*request, r *request) []*request {
	if len(s.lanes) > 1 && len(r.rows) > 0 {
		for other, ls := range s.lanes {
			if other != lane && ls.takeIfHolding(r) {
				s.handedOver.Add(1)
				return batch
			}
		}
	}
	return append(batch, r)
}

func (ls *laneState) takeIfHolding(r *request) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.retired || len(ls.holding) == 0 {
		return false
	}
	for _, id := range r.rows {
		if ls.holding[id] {
			ls.handed = append(ls.handed, r)
			select {
			case ls.wake <- struct{}{}:
			default:
			}
			return true
		}
	}
	return false
}

// begin takes what was handed over since into batch, up to max, and records
// for the other lanes the accounts whose rows the batch will hold until it
// commits.
func (ls *laneState) begin(batch []*request, max int) []*request {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	batch = ls.take(batch, max)
	for _, r := range batch {
		for _, id := range r.rows {
			ls.holding[id] = true
		}
	}
	return batch
}

// takeHanded moves what was handed over into batch, up to max.
func (ls *laneState) takeHanded(batch []*request, max int) []*request {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.take(batch, max)
}

func (ls *laneState) take(batch []*request, max int) []*request {
	n := min(len(ls.handed), max-len(batch))
	if n <= 0 {
		return batch
	}
	batch = append(batch, ls.handed[:n]...)
	rest := copy(ls.handed, ls.handed[n:])
	clear(ls.handed[rest:])
	ls.handed = ls.handed[:rest]
	return batch
}

// end clears the rows held: the batch has committed or failed.
func (ls *laneState) end() {
	ls.mu.Lock()
	clear(ls.holding)
	ls.mu.Unlock()
}

// retire stops the lane taking hand-overs, unless it has some to commit.
func (ls *laneState) retire() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if len(ls.handed) > 0 {
		return false
	}
	ls.retired = true
	return true
}
