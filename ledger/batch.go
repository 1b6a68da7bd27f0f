package ledger

import (
	"bytes"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Outcome is what a commit batch decided for one pending transaction.
type Outcome uint8

const (
	Undecided Outcome = iota
	Accepted          // posted by this batch
	Refused           // Err says why; nothing posted
	Replay            // the key was committed before; ReplayOf names the original
	Duplicate         // the key appeared earlier in the same batch
)

// Pending is a validated transaction waiting in a commit batch. The store
// reads the state Plan asks for under lock, calls Decide, writes what was
// accepted and commits; on a retryable conflict it does all of it again.
type Pending struct {
	Tx          Transaction
	Fingerprint []byte
	Accounts    []*Account // Accounts[i] is the account of Tx.Postings[i]

	Outcome  Outcome
	Err      error
	ReplayOf uuid.UUID
	dupOf    *Pending
}

// ShardRef names one balance row.
type ShardRef struct {
	AccountID uuid.UUID
	Shard     int
}

// Plan is what a batch must lock and read before it can decide.
type Plan struct {
	Lane     int
	Keys     []string
	Reverses []uuid.UUID
	Accounts []*Account // every account touched, sorted by ID
	// Locks lists the balance rows to lock, sorted so that concurrent batches
	// take them in the same order and cannot deadlock. An account whose
	// balance must be checked (it is debited and may not go negative) has all
	// its shards locked; any other account only the lane's shard, which is the
	// only row this batch writes, so lanes crediting a hot account never wait
	// on each other.
	Locks []ShardRef
	// Checked are the accounts whose full balance Decide needs.
	Checked map[uuid.UUID]bool
}

// laneShard is the one shard of a account that a lane writes.
func laneShard(a *Account, lane int) int { return lane % a.Shards }

// PlanBatch works out the rows a batch must lock and the keys it must look up.
func PlanBatch(batch []*Pending, lane int) *Plan {
	p := &Plan{Lane: lane, Checked: map[uuid.UUID]bool{}}
	seen := map[uuid.UUID]*Account{}
	for _, pd := range batch {
		p.Keys = append(p.Keys, pd.Tx.IdempotencyKey)
		if pd.Tx.Reverses != nil {
			p.Reverses = append(p.Reverses, *pd.Tx.Reverses)
		}
		for i, posting := range pd.Tx.Postings {
			a := pd.Accounts[i]
			seen[a.ID] = a
			if !a.AllowNegative && a.signed(posting.Side, posting.Amount).Sign() < 0 {
				p.Checked[a.ID] = true
			}
		}
	}
	for _, a := range seen {
		p.Accounts = append(p.Accounts, a)
	}
	sort.Slice(p.Accounts, func(i, j int) bool { return bytes.Compare(p.Accounts[i].ID[:], p.Accounts[j].ID[:]) < 0 })
	for _, a := range p.Accounts {
		if p.Checked[a.ID] {
			for s := 0; s < a.Shards; s++ {
				p.Locks = append(p.Locks, ShardRef{a.ID, s})
			}
		} else {
			p.Locks = append(p.Locks, ShardRef{a.ID, laneShard(a, lane)})
		}
	}
	return p
}

// Committed describes a transaction already in the ledger under a key the
// batch is about to use.
type Committed struct {
	ID          uuid.UUID
	Fingerprint []byte
}

// State is what the store read under the batch's locks.
type State struct {
	RecordedAt time.Time                     // database clock, read after the locks were granted
	Committed  map[string]Committed          // by idempotency key
	Reversed   map[uuid.UUID]bool            // transactions that already have a reversal
	Status     map[uuid.UUID]Status          // of every account in the plan
	Balance    map[uuid.UUID]decimal.Decimal // normal-side balance of every checked account
}

// Decide applies the batch in order, as if each transaction ran alone after
// the ones before it: a refused transaction leaves no trace, and each sees
// the balances its predecessors left. It may be called again on a retry.
func Decide(batch []*Pending, st *State) {
	const op = "ledger.Post"
	balance := make(map[uuid.UUID]decimal.Decimal, len(st.Balance))
	for id, b := range st.Balance {
		balance[id] = b
	}
	firstByKey := map[string]*Pending{}
	reversedHere := map[uuid.UUID]bool{}
	seq := 0
	for _, pd := range batch {
		pd.Outcome, pd.Err, pd.ReplayOf, pd.dupOf = Undecided, nil, uuid.Nil, nil
		key := pd.Tx.IdempotencyKey
		if c, ok := st.Committed[key]; ok {
			if !bytes.Equal(c.Fingerprint, pd.Fingerprint) {
				pd.refuse(wrap(op, "idempotency_key", ErrIdempotencyConflict))
				continue
			}
			pd.Outcome, pd.ReplayOf = Replay, c.ID
			continue
		}
		if first, ok := firstByKey[key]; ok {
			if !bytes.Equal(first.Fingerprint, pd.Fingerprint) {
				pd.refuse(wrap(op, "idempotency_key", ErrIdempotencyConflict))
				continue
			}
			pd.Outcome, pd.dupOf = Duplicate, first
			continue
		}
		firstByKey[key] = pd
		if r := pd.Tx.Reverses; r != nil && (st.Reversed[*r] || reversedHere[*r]) {
			pd.refuse(wrap(op, "transaction_id", ErrAlreadyReversed))
			continue
		}
		if err := pd.apply(op, st, balance); err != nil {
			pd.refuse(err)
			continue
		}
		if r := pd.Tx.Reverses; r != nil {
			reversedHere[*r] = true
		}
		pd.Outcome = Accepted
		pd.Tx.RecordedAt = st.RecordedAt
		if pd.Tx.EffectiveAt.IsZero() {
			pd.Tx.EffectiveAt = st.RecordedAt
		}
		pd.Tx.BatchSeq = seq
		seq++
	}
}

func (pd *Pending) refuse(err error) { pd.Outcome, pd.Err = Refused, err }

// apply checks account states and balance policies and, if all pass, moves
// the running balances of checked accounts.
func (pd *Pending) apply(op string, st *State, balance map[uuid.UUID]decimal.Decimal) error {
	next := map[uuid.UUID]decimal.Decimal{}
	for i, posting := range pd.Tx.Postings {
		a := pd.Accounts[i]
		field := fmt.Sprintf("postings[%d].account", i)
		switch st.Status[a.ID] {
		case Frozen:
			return wrap(op, field, ErrAccountFrozen)
		case Closed:
			return wrap(op, field, ErrAccountClosed)
		}
		if a.AllowNegative {
			continue
		}
		cur, ok := next[a.ID]
		if !ok {
			cur = balance[a.ID]
		}
		next[a.ID] = cur.Add(a.signed(posting.Side, posting.Amount))
	}
	for i, a := range pd.Accounts {
		if b, ok := next[a.ID]; ok && b.Sign() < 0 {
			return &Error{Op: op, Field: fmt.Sprintf("postings[%d].account", i), Err: ErrInsufficientFunds,
				Message: fmt.Sprintf("%s would be %s %s", a.Name, b, a.Asset)}
		}
	}
	for id, b := range next {
		balance[id] = b
	}
	return nil
}

// ShardDelta is the change one batch makes to one balance row.
type ShardDelta struct {
	ShardRef
	Delta decimal.Decimal
}

// Deltas sums the accepted postings per balance row the lane writes.
func (p *Plan) Deltas(batch []*Pending) []ShardDelta {
	idx := map[ShardRef]int{}
	var out []ShardDelta
	for _, pd := range batch {
		if pd.Outcome != Accepted {
			continue
		}
		for i, posting := range pd.Tx.Postings {
			a := pd.Accounts[i]
			ref := ShardRef{a.ID, laneShard(a, p.Lane)}
			d := a.signed(posting.Side, posting.Amount)
			if j, ok := idx[ref]; ok {
				out[j].Delta = out[j].Delta.Add(d)
				continue
			}
			idx[ref] = len(out)
			out = append(out, ShardDelta{ref, d})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := bytes.Compare(out[i].AccountID[:], out[j].AccountID[:]); c != 0 {
			return c < 0
		}
		return out[i].Shard < out[j].Shard
	})
	return out
}

// Resolve fills in the result of an in-batch duplicate from the request it
// repeats, once the batch has committed and replays have been loaded.
func (pd *Pending) Resolve() {
	if pd.Outcome != Duplicate {
		return
	}
	first := pd.dupOf
	pd.Err = first.Err
	pd.Tx = first.Tx
	pd.Tx.Replayed = true
	if first.Outcome == Refused {
		pd.Outcome = Refused
	}
}
