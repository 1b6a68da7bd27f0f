package ledger

import (
	"bytes"
	"fmt"
	"slices"
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
	// Deferred: its relief met a lot whose value leg the batch had not
	// locked, or needed more lots than the batch read. Nothing was posted;
	// it is committed again, with every leg and more of the holder's lots.
	Deferred
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

	askedEffective time.Time // zero: the effective time is the recorded time
	pastFrozen     bool      // PostRequest.PastFrozen

	// What was asked, never modified: Decide works on copies, since it may
	// run again, and appends spill and relief postings after these.
	basePostings []Posting
	baseAccounts []*Account

	// Lots: what was asked, and what Decide made of it.
	openLot   *LotOpen
	relief    *reliefSpec
	refund    *refundSpec
	carries   []carrySpec
	expects   []expectSpec
	sweep     *sweepSpec
	spills    []spill
	carryRows []rowChange // how each carry row changes, the lane's own included
	OpenedLot *Lot        // the lot this transaction opened, in its state after the batch
	Reliefs   []LotRelief // what it took from each lot
	// heldAssets: the value assets of the relief holder's open lots after
	// the batch, as read under its locks; the next relief's guess.
	heldAssets []string
}

// asked returns the postings asked for, as capacity-capped slices: appending
// to them copies, so the base is never changed. The first call (PlanBatch,
// before any Decide) fixes the base.
func (pd *Pending) asked() ([]Posting, []*Account) {
	if pd.basePostings == nil {
		pd.basePostings, pd.baseAccounts = pd.Tx.Postings, pd.Accounts
		if pd.basePostings == nil {
			// Nothing asked (a carry alone): still fix the base, once.
			pd.basePostings = []Posting{}
		}
	}
	n := len(pd.basePostings)
	return pd.basePostings[:n:n], pd.baseAccounts[:n:n]
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
	// AllRows are per-shard accounts of which every row is locked and read,
	// not only the lane's: carries taken back draw on all of them.
	AllRows map[uuid.UUID]bool
	// LotAccounts are the accounts whose open lots must be locked and read:
	// the oldest LotLimit of each, or all of them when LotLimit is 0.
	LotAccounts []uuid.UUID
	LotLimit    int
	// LotIDs are lots to lock and read whether open or not (refunds); the
	// lots drawn on by the transactions in Reverses are read as well.
	LotIDs []uuid.UUID
}

// laneShard is the one shard of an account that a lane writes.
func laneShard(a *Account, lane int) int { return lane % a.Shards }

// PlanBatch works out the rows a batch must lock and the keys it must look up.
func PlanBatch(batch []*Pending, lane int) *Plan {
	p := &Plan{Lane: lane, Checked: map[uuid.UUID]bool{}, AllRows: map[uuid.UUID]bool{}, LotLimit: LotsRead}
	seen := map[uuid.UUID]*Account{}
	lotAccounts := map[uuid.UUID]bool{}
	for _, pd := range batch {
		p.Keys = append(p.Keys, pd.Tx.IdempotencyKey)
		if pd.Tx.Reverses != nil {
			p.Reverses = append(p.Reverses, *pd.Tx.Reverses)
		}
		postings, accounts := pd.asked()
		for i, posting := range postings {
			a := accounts[i]
			seen[a.ID] = a
			if !a.AllowNegative && a.lowers(posting.Side, posting.Amount) {
				p.Checked[a.ID] = true
			}
		}
		for _, sp := range pd.spills {
			seen[sp.to.ID] = sp.to
			if !sp.to.AllowNegative { // debited with whatever spills over
				p.Checked[sp.to.ID] = true
			}
		}
		for _, c := range pd.carries {
			seen[c.account.ID], seen[c.source.ID] = c.account, c.source
			p.Checked[c.account.ID] = true
			if c.fraction.Sign() < 0 {
				// Rare (reversals, clawbacks): the fraction to take back may sit
				// in any lane's row.
				p.AllRows[c.account.ID] = true
			}
			for _, leg := range c.legs {
				seen[leg.from.ID], seen[leg.to.ID] = leg.from, leg.to
				// Adding to a carry converts granules out of it (debiting From);
				// taking from it may convert either way.
				if !leg.from.AllowNegative {
					p.Checked[leg.from.ID] = true
				}
				if c.fraction.Sign() < 0 && !leg.to.AllowNegative {
					p.Checked[leg.to.ID] = true
				}
			}
		}
		for _, e := range pd.expects {
			seen[e.account.ID] = e.account
			p.Checked[e.account.ID] = true
		}
		if sw := pd.sweep; sw != nil {
			seen[sw.from.ID], seen[sw.to.ID] = sw.from, sw.to
			p.Checked[sw.from.ID] = true // its whole balance moves
			if !sw.to.AllowNegative {
				p.Checked[sw.to.ID] = true
			}
		}
		if r := pd.refund; r != nil {
			seen[r.holder.ID], seen[r.valueAccount.ID] = r.holder, r.valueAccount
			p.Checked[r.holder.ID] = true
			p.LotIDs = append(p.LotIDs, r.Lot)
		}
		if r := pd.relief; r != nil {
			// All of the account's balance rows, so that no lane can open a lot
			// on it unseen while this batch relieves its lots.
			seen[r.account.ID] = r.account
			p.Checked[r.account.ID] = true
			if !lotAccounts[r.account.ID] {
				lotAccounts[r.account.ID] = true
				p.LotAccounts = append(p.LotAccounts, r.account.ID)
			}
			switch {
			case r.readLots < 0:
				p.LotLimit = 0 // every lot
			case p.LotLimit > 0 && r.readLots > p.LotLimit:
				p.LotLimit = r.readLots
			}
			for leg := range r.lockedLegs {
				seen[leg.from.ID], seen[leg.to.ID] = leg.from, leg.to
				if !leg.from.AllowNegative { // debited by the relief legs
					p.Checked[leg.from.ID] = true
				}
			}
		}
	}
	sort.Slice(p.LotAccounts, func(i, j int) bool { return bytes.Compare(p.LotAccounts[i][:], p.LotAccounts[j][:]) < 0 })
	for _, a := range seen {
		p.Accounts = append(p.Accounts, a)
	}
	sort.Slice(p.Accounts, func(i, j int) bool { return bytes.Compare(p.Accounts[i].ID[:], p.Accounts[j].ID[:]) < 0 })
	for _, a := range p.Accounts {
		if p.Checked[a.ID] && (!a.PerShard || p.AllRows[a.ID]) {
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
	Lane       int                           // the lane committing: Plan.Lane
	RecordedAt time.Time                     // database clock, read after the locks were granted
	Committed  map[string]Committed          // by idempotency key
	Reversed   map[uuid.UUID]bool            // transactions that already have a reversal
	Status     map[uuid.UUID]Status          // of every account in the plan
	Balance    map[uuid.UUID]decimal.Decimal // normal-side balance of every checked account
	Rows       map[ShardRef]decimal.Decimal  // each locked row of a checked per-shard account
	Lots       map[uuid.UUID][]*Lot          // lots read, by holder, oldest first
	// LotsCut marks holders that may have open lots the batch did not read
	// (it read Plan.LotLimit of them): only Lots[holder][:n] are known to be
	// the oldest, and a relief that needs more is deferred to a round
	// reading more.
	LotsCut map[uuid.UUID]int
	// Took holds what each transaction being reversed took from its lots.
	Took map[uuid.UUID][]LotRelief

	lots lotWork // Decide's working copy; the lots' state after the batch
}

// LotUpdates lists the pre-existing lots the accepted transactions relieved,
// in their state after the batch.
func (st *State) LotUpdates() []*Lot {
	var out []*Lot
	for acct, lots := range st.Lots {
		for i, l := range lots {
			if w := st.lots[acct][i]; !w.UnitsLeft.Equal(l.UnitsLeft) || !w.ValueLeft.Equal(l.ValueLeft) || !w.Refunded.Equal(l.Refunded) {
				out = append(out, w)
			}
		}
	}
	return out
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
	rows := make(map[ShardRef]decimal.Decimal, len(st.Rows))
	for ref, b := range st.Rows {
		rows[ref] = b
	}
	firstByKey := map[string]*Pending{}
	reversedHere := map[uuid.UUID]bool{}
	st.lots = st.lotWork()
	seq := 0
	for _, pd := range batch {
		pd.Outcome, pd.Err, pd.ReplayOf, pd.dupOf = Undecided, nil, uuid.Nil, nil
		pd.Tx.Postings, pd.Accounts = pd.asked()
		pd.OpenedLot, pd.Reliefs, pd.carryRows, pd.heldAssets = nil, nil, nil, nil
		key := pd.Tx.IdempotencyKey
		if c, ok := st.Committed[key]; ok {
			if !bytes.Equal(c.Fingerprint, pd.Fingerprint) {
				pd.refuse(wrap(op, "idempotency_key", ErrIdempotencyConflict))
				continue
			}
			pd.Outcome, pd.ReplayOf = Replay, c.ID
			continue
		}
		// A refused request leaves no trace, so a later one with its key is
		// decided on its own, as it would be were it run after it alone.
		if first, ok := firstByKey[key]; ok && first.Outcome != Refused {
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
		if err := pd.checkExpectations(op, balance); err != nil {
			pd.refuse(err)
			continue
		}
		if len(pd.spills) > 0 {
			pd.resolveSpills(balance)
		}
		if pd.sweep != nil && !pd.resolveSweep(balance) {
			pd.reject(wrap(op, "sweep.from", ErrNothingToSweep))
			continue
		}
		// A refund's amounts were planned from its lot: a lot that moved
		// since is the reason, and a short account only its consequence.
		var refunded LotRelief
		if pd.refund != nil {
			t, err := pd.planRefund(op, st.lots)
			if err != nil {
				pd.reject(err)
				continue
			}
			refunded = t
		}
		// Statuses and funds of what was asked come next, so that a frozen
		// or short account is the reason given, not a consequence of it.
		if err := pd.apply(op, st, balance, false); err != nil {
			pd.reject(err)
			continue
		}
		var took []LotRelief
		if pd.relief != nil {
			t, legs, accounts, err := pd.planRelief(op, st)
			if err == errLegNotLocked || err == errLotsNotRead {
				// As if it arrived after this batch: a later request with
				// its key is decided on its own, and it replays that one.
				pd.Tx.Postings, pd.Accounts = pd.asked()
				pd.Outcome = Deferred
				delete(firstByKey, key)
				continue
			}
			if err != nil {
				pd.reject(err)
				continue
			}
			took = t
			pd.Tx.Postings = append(pd.Tx.Postings[:len(pd.Tx.Postings):len(pd.Tx.Postings)], legs...)
			pd.Accounts = append(pd.Accounts[:len(pd.Accounts):len(pd.Accounts)], accounts...)
		}
		if len(pd.carries) > 0 {
			// The postings are the capped base (appending copies) or copies
			// made by the spills or the relief above.
			pd.resolveCarries(st.Lane, rows)
		}
		if pd.refund != nil {
			took = append(took, refunded)
		}
		if r := pd.Tx.Reverses; r != nil {
			if st.lots.lotByID(*r) != nil {
				pd.reject(wrap(op, "transaction_id", ErrOpensLot))
				continue
			}
			t, err := planRestore(op, st.lots, *r, st.Took[*r])
			if err != nil {
				pd.reject(err)
				continue
			}
			took = append(took, t...)
		}
		if err := pd.apply(op, st, balance, true); err != nil {
			pd.reject(err)
			continue
		}
		if r := pd.Tx.Reverses; r != nil {
			reversedHere[*r] = true
		}
		commitRows(rows, pd.carryRows)
		pd.Outcome = Accepted
		pd.Tx.RecordedAt = st.RecordedAt
		pd.Tx.EffectiveAt = pd.askedEffective
		if pd.Tx.EffectiveAt.IsZero() {
			pd.Tx.EffectiveAt = st.RecordedAt
		}
		pd.Tx.BatchSeq = seq
		seq++
		applyReliefs(st.lots, took)
		pd.Reliefs = took
		if o := pd.openLot; o != nil {
			units, value := pd.Tx.Postings[o.UnitsPosting], pd.Tx.Postings[o.ValuePosting]
			lot := &Lot{ID: pd.Tx.ID, AccountID: units.AccountID, OpenedAt: st.RecordedAt, BatchSeq: pd.Tx.BatchSeq,
				Units: units.Amount, UnitsLeft: units.Amount, ValueAccountID: value.AccountID, ValueAsset: value.Asset,
				Value: value.Amount, ValueLeft: value.Amount, Refunded: decimal.Zero}
			st.lots[lot.AccountID] = append(st.lots[lot.AccountID], lot)
			pd.OpenedLot = lot
		}
	}
	for _, pd := range batch {
		if pd.Outcome == Accepted && pd.relief != nil {
			pd.heldAssets = st.lots.openAssets(pd.relief.account.ID)
		}
	}
}

func (pd *Pending) refuse(err error) { pd.Outcome, pd.Err = Refused, err }

// reject refuses a transaction whose postings Decide had begun to extend.
func (pd *Pending) reject(err error) {
	pd.Tx.Postings, pd.Accounts = pd.asked()
	pd.refuse(err)
}

// apply checks account states and balance policies and, if all pass and
// commit is set, moves the running balances of checked accounts.
func (pd *Pending) apply(op string, st *State, balance map[uuid.UUID]decimal.Decimal, commit bool) error {
	// The checked accounts' balances after this transaction, in the order
	// first posted to: a gift checks a handful, which a slice finds faster
	// than a map (and which fit the array on the stack).
	type checked struct {
		id    uuid.UUID
		first int // its first posting
		sum   sum
	}
	var few [8]checked
	next := few[:0]
	for i, posting := range pd.Tx.Postings {
		a := pd.Accounts[i]
		switch st.Status[a.ID] {
		case Frozen:
			if !pd.pastFrozen {
				return wrap(op, fmt.Sprintf("postings[%d].account", i), ErrAccountFrozen)
			}
		case Closed:
			return wrap(op, fmt.Sprintf("postings[%d].account", i), ErrAccountClosed)
		}
		if a.AllowNegative {
			continue
		}
		j := slices.IndexFunc(next, func(c checked) bool { return c.id == a.ID })
		if j < 0 {
			j = len(next)
			next = append(next, checked{id: a.ID, first: i})
			next[j].sum.add(balance[a.ID], false)
		}
		next[j].sum.add(posting.Amount, posting.Side != a.Normal)
	}
	// The refusal names the first account posted to that would go below zero.
	for _, c := range next {
		if c.sum.sign() < 0 {
			a := pd.Accounts[c.first]
			return &Error{Op: op, Field: fmt.Sprintf("postings[%d].account", c.first), Err: ErrInsufficientFunds,
				Message: fmt.Sprintf("%s would be %s %s", a.Name, c.sum.decimal(), a.Asset)}
		}
	}
	if commit {
		for _, c := range next {
			balance[c.id] = c.sum.decimal()
		}
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
	type rowSum struct {
		ref ShardRef
		sum sum
	}
	idx := map[ShardRef]int{}
	var rows []rowSum
	add := func(ref ShardRef, d decimal.Decimal, negate bool) {
		j, ok := idx[ref]
		if !ok {
			j = len(rows)
			idx[ref] = j
			rows = append(rows, rowSum{ref: ref})
		}
		rows[j].sum.add(d, negate)
	}
	for _, pd := range batch {
		if pd.Outcome != Accepted {
			continue
		}
		for i, posting := range pd.Tx.Postings {
			a := pd.Accounts[i]
			add(ShardRef{a.ID, laneShard(a, p.Lane)}, posting.Amount, posting.Side != a.Normal)
		}
		// The postings put a carry's change on the lane's row; what was
		// drawn from other rows moves there.
		for _, c := range pd.carryRows {
			if c.row != c.own {
				add(c.row, c.delta, false)
				add(c.own, c.delta, true)
			}
		}
	}
	out := make([]ShardDelta, len(rows))
	for j, r := range rows {
		out[j] = ShardDelta{r.ref, r.sum.decimal()}
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

// spill is a debit posting that overflows onto a second account.
type spill struct {
	index int // of the posting asked for
	to    *Account
}

// resolveSpills debits each spilling posting's account up to its running
// balance and moves the rest onto its spill account, on copies of the postings
// asked for (Decide may run again).
func (pd *Pending) resolveSpills(balance map[uuid.UUID]decimal.Decimal) {
	postings := append([]Posting(nil), pd.Tx.Postings...)
	accounts := append([]*Account(nil), pd.Accounts...)
	for _, sp := range pd.spills {
		p := postings[sp.index]
		avail := decimal.Max(balance[p.AccountID], decimal.Zero)
		take := decimal.Min(p.Amount, avail)
		rest := p.Amount.Sub(take)
		if rest.Sign() == 0 {
			continue
		}
		over := Posting{Account: sp.to.Name, AccountID: sp.to.ID, Asset: sp.to.Asset, Side: Debit, Amount: rest}
		if take.Sign() == 0 {
			postings[sp.index], accounts[sp.index] = over, sp.to
			continue
		}
		postings[sp.index].Amount = take
		postings = append(postings, over)
		accounts = append(accounts, sp.to)
	}
	pd.Tx.Postings, pd.Accounts = postings, accounts
}
