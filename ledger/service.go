package ledger

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/namecache"
)

// Options tune the write path; zero values take the defaults.
type Options struct {
	// Lanes is how many commit batches may be in flight at once, each on its
	// own database connection. Default 2: one batch builds in Go while the
	// other executes in the database (1, 2 and 4 measured alike on two
	// cores; see docs/benchmarks.md).
	Lanes int
	// MaxBatch caps the transactions committed in one database transaction.
	// Default 256.
	MaxBatch int
	// CommitTimeout bounds one batch's database work. Default 30s, at most
	// Settled/2.
	CommitTimeout time.Duration
	// Linger caps how long a lane waits for more requests after the first
	// before committing a batch that is not full: it waits a fifth of what
	// its recent batches took to commit, up to Linger. Negative: not at all.
	Linger time.Duration
	Clock  func() time.Time
	Logger *slog.Logger
}

// DefaultLinger caps a lane's wait. A fixed wait suits one workload only:
// through gRPC at 32 callers gift-hot (commits of ~3.5 ms) ran 4% faster
// waiting 0.5-1 ms than 250 µs, while transfer-hot (~1.8 ms) ran 12% slower
// at 1 ms (docs/benchmarks.md, "Seventh pass"); hence a share of the commit
// time, so that a lane gathers while the other commits and not much longer.
const DefaultLinger = time.Millisecond

// lingerFor is how long a lane whose recent commits took recent waits for
// more requests: a fifth of that, up to limit; none while limit is negative.
// (Go's timers fire about 1 ms late when the process is otherwise idle, so
// at low load any wait under 1 ms takes about 1 ms.)
func lingerFor(limit, recent time.Duration) time.Duration {
	return max(0, min(limit, recent/5))
}

// Service is the ledger: it validates requests and commits them in batches.
type Service struct {
	store    Store
	opts     Options
	log      *slog.Logger
	queue    chan *request
	stop     chan struct{}
	workers  sync.WaitGroup
	closeMu  sync.RWMutex
	closed   bool
	accounts namecache.Cache[*Account]
	assets   sync.Map // code -> Asset
	// lotAssets guesses, by holder account name, the value assets of its
	// open lots (sorted, never modified): which relief legs to lock.
	lotAssets namecache.Cache[[]string]
	// reliefLegs holds resolved relief legs by their content (reliefLegsKey),
	// shared read-only by the requests that name them.
	reliefLegs namecache.Cache[map[string]reliefLeg]

	batches, batched, deferred atomic.Uint64
	committing                 atomic.Int64 // nanoseconds
}

// CommitStats count the lanes' work since the service started: the batches
// committed, the requests they carried and the time spent committing them.
// The mean batch size is what the write path's cost per request turns on:
// each batch pays for its locks, round trips and commit once
// (docs/architecture.md).
// Deferred counts requests committed a second time because their lots were
// not in the currencies guessed (see reliefSpec) or they needed more than the
// oldest LotsRead.
type CommitStats struct {
	Batches, Requests, Deferred uint64
	Committing                  time.Duration
}

// CommitStats returns the counts so far.
func (s *Service) CommitStats() CommitStats {
	return CommitStats{Batches: s.batches.Load(), Requests: s.batched.Load(), Deferred: s.deferred.Load(),
		Committing: time.Duration(s.committing.Load())}
}

// Sub is what happened between an earlier reading and this one.
func (c CommitStats) Sub(earlier CommitStats) CommitStats {
	return CommitStats{Batches: c.Batches - earlier.Batches, Requests: c.Requests - earlier.Requests,
		Deferred: c.Deferred - earlier.Deferred, Committing: c.Committing - earlier.Committing}
}

type request struct {
	pending *Pending
	ctx     context.Context
	done    chan struct{}
}

// Settled is how long after an instant no transaction can still be recorded
// before it: a batch reads its recorded time under its locks and commits
// within the commit timeout, which is held well under this. A balance as of
// a settled instant never changes, so the store may keep it.
const Settled = 15 * time.Minute

// NewService starts the commit lanes; Close stops them.
func NewService(store Store, opts Options) *Service {
	if opts.Lanes <= 0 {
		opts.Lanes = 2
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.Linger == 0 {
		opts.Linger = DefaultLinger
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = 30 * time.Second
	}
	opts.CommitTimeout = min(opts.CommitTimeout, Settled/2)
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Service{
		store: store,
		opts:  opts,
		log:   opts.Logger,
		queue: make(chan *request, opts.MaxBatch*opts.Lanes),
		stop:  make(chan struct{}),
	}
	s.reliefLegs.Limit = maxCachedReliefLegs
	for lane := 0; lane < opts.Lanes; lane++ {
		s.workers.Add(1)
		go s.runLane(lane)
	}
	return s
}

// Close finishes the requests already queued and stops the lanes.
func (s *Service) Close() {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	s.closeMu.Unlock()
	s.workers.Wait()
}

// CreateAsset registers an asset; registering the same one again is a no-op.
func (s *Service) CreateAsset(ctx context.Context, a Asset) (Asset, error) {
	if err := a.Validate("ledger.CreateAsset"); err != nil {
		return Asset{}, err
	}
	return s.store.CreateAsset(ctx, a)
}

// Asset returns a registered asset.
func (s *Service) Asset(ctx context.Context, code string) (Asset, error) {
	if a, ok := s.assets.Load(code); ok {
		return a.(Asset), nil
	}
	if !assetCodeRE.MatchString(code) {
		return Asset{}, &Error{Op: "ledger.Asset", Err: ErrAssetNotFound, Message: code} // and no query: a NUL would fail it
	}
	a, err := s.store.Asset(ctx, code)
	if err != nil {
		return Asset{}, err
	}
	s.assets.Store(code, a)
	return a, nil
}

// CreateAccount opens an account; opening the same definition again returns
// the existing account.
func (s *Service) CreateAccount(ctx context.Context, a Account) (*Account, error) {
	const op = "ledger.CreateAccount"
	if a.Shards == 0 {
		a.Shards = 1
	}
	if a.Status == "" {
		a.Status = Open
	}
	if err := a.Validate(op); err != nil {
		return nil, err
	}
	if _, err := s.Asset(ctx, a.Asset); err != nil {
		if KindOf(err) == NotFound {
			// The account is what was asked for; its asset is bad input.
			return nil, &Error{Op: op, Kind: Invalid, Field: "asset", Err: err}
		}
		return nil, wrap(op, "asset", err)
	}
	a.ID = uuid.New()
	a.CreatedAt = s.opts.Clock().UTC()
	return s.store.CreateAccount(ctx, &a)
}

// Account returns the account's current attributes.
func (s *Service) Account(ctx context.Context, name string) (*Account, error) {
	if err := ValidateAccountName("ledger.Account", "name", name); err != nil {
		return nil, err
	}
	return s.store.Account(ctx, name)
}

// AccountsByName returns the accounts named, in one read and in the order
// named; nil where a name is no account's (a malformed name included, so
// callers that must name the bad field check names first).
func (s *Service) AccountsByName(ctx context.Context, names []string) ([]*Account, error) {
	if len(names) > MaxPage {
		return nil, invalid("ledger.AccountsByName", "names", "at most %d at once", MaxPage)
	}
	// A malformed name is no account's; one holding a NUL would fail the
	// query, so none is sent.
	wellFormed := make([]string, 0, len(names))
	for _, name := range names {
		if ValidateAccountName("", "", name) == nil {
			wellFormed = append(wellFormed, name)
		}
	}
	found, err := s.store.AccountsByName(ctx, wellFormed)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*Account, len(found))
	for _, a := range found {
		byName[a.Name] = a
	}
	out := make([]*Account, len(names))
	for i, name := range names {
		out[i] = byName[name]
	}
	return out, nil
}

// account returns the cached account; its status may be stale and is
// re-read under lock by every commit batch.
func (s *Service) account(ctx context.Context, name string) (*Account, error) {
	if a, ok := s.accounts.Get(name); ok {
		return a, nil
	}
	a, err := s.store.Account(ctx, name)
	if err != nil {
		return nil, err
	}
	s.accounts.Put(name, a)
	return a, nil
}

// SetAccountStatus freezes, reopens or closes an account. A closed account
// stays closed.
func (s *Service) SetAccountStatus(ctx context.Context, name string, st Status) (*Account, error) {
	accounts, err := s.SetAccountsStatus(ctx, []string{name}, st)
	if err != nil {
		return nil, err
	}
	return accounts[0], nil
}

// SetAccountsStatus freezes, reopens or closes accounts together: all of
// them or, refused, none.
func (s *Service) SetAccountsStatus(ctx context.Context, names []string, st Status) ([]*Account, error) {
	const op = "ledger.SetAccountStatus"
	if len(names) == 0 || len(names) > MaxPage {
		return nil, invalid(op, "name", "give 1 to %d accounts", MaxPage)
	}
	for _, name := range names {
		if err := ValidateAccountName(op, "name", name); err != nil {
			return nil, err
		}
	}
	switch st {
	case Open, Frozen, Closed:
	default:
		return nil, invalid(op, "status", "must be open, frozen or closed")
	}
	return s.store.SetAccountStatus(ctx, names, st)
}

// Post validates req and commits it, or returns the original transaction
// when the key was committed before with the same content.
//
// A refused request (insufficient funds, a frozen account, ...) is not
// recorded under its key: retrying it is evaluated afresh and may succeed
// once the ledger's state allows it.
func (s *Service) Post(ctx context.Context, req PostRequest) (*Transaction, error) {
	const op = "ledger.Post"
	if err := req.validate(op); err != nil {
		return nil, err
	}
	meta := req.Metadata // canonical once validated
	pd := &Pending{
		Tx: Transaction{
			ID:             s.store.NewTransactionID(),
			IdempotencyKey: req.IdempotencyKey,
			Kind:           req.Kind,
			// Stored to the microsecond: the original answer and a replay agree.
			EffectiveAt: req.EffectiveAt.UTC().Truncate(time.Microsecond),
			Metadata:    meta,
		},
		Fingerprint:    fingerprint(req.Kind, req.EffectiveAt, meta, req.Reverses, req.Postings, req.fingerprintParts()),
		askedEffective: req.EffectiveAt.UTC().Truncate(time.Microsecond),
		pastFrozen:     req.PastFrozen,
	}
	for i, p := range req.Postings {
		a, err := s.account(ctx, p.Account)
		if err != nil {
			return nil, wrap(op, Indexed("postings", i)+".account", err)
		}
		if a.PerShard {
			// Its rows move only through carries, which keep each in range.
			return nil, invalid(op, Indexed("postings", i)+".account", "is a per-shard carry account; move it with a carry")
		}
		asset, err := s.Asset(ctx, a.Asset)
		if err != nil {
			return nil, wrap(op, Indexed("postings", i)+".account", err)
		}
		if err := asset.CheckAmount(op, "amount", p.Amount); err != nil {
			return nil, under(Indexed("postings", i), err)
		}
		pd.Accounts = append(pd.Accounts, a)
		pd.Tx.Postings = append(pd.Tx.Postings, Posting{
			Account: a.Name, AccountID: a.ID, Asset: a.Asset, Side: p.Side, Amount: p.Amount,
		})
		if p.SpillTo != "" {
			to, err := s.account(ctx, p.SpillTo)
			if err != nil {
				return nil, wrap(op, Indexed("postings", i)+".spill_to", err)
			}
			if p.Side != Debit || a.Normal != Credit || a.AllowNegative {
				return nil, invalid(op, Indexed("postings", i)+".spill_to", "needs a debit from a credit-normal account that may not go negative")
			}
			if to.Asset != a.Asset || to.ID == a.ID || to.PerShard {
				return nil, invalid(op, Indexed("postings", i)+".spill_to", "must be another account in %s, not a per-shard one", a.Asset)
			}
			pd.spills = append(pd.spills, spill{index: i, to: to})
		}
	}
	if err := checkBalanced(op, pd.Tx.Postings); err != nil {
		return nil, err
	}
	if err := s.resolveLots(ctx, op, req, pd); err != nil {
		return nil, err
	}
	if err := s.prepareCarries(ctx, op, req.Carries, pd); err != nil {
		return nil, err
	}
	if err := s.prepareExpectations(ctx, op, req.Expect, pd); err != nil {
		return nil, err
	}
	if err := s.prepareSweep(ctx, op, req, pd); err != nil {
		return nil, err
	}
	if r := req.Reverses; r != nil {
		if *r == uuid.Nil {
			return nil, invalid(op, "reverses", "must be a transaction id")
		}
		target := *r
		pd.Tx.Reverses = &target
	}
	return s.submit(ctx, pd)
}

// resolveLots checks a request's lot instructions against its postings.
func (s *Service) resolveLots(ctx context.Context, op string, req PostRequest, pd *Pending) error {
	if req.OpenLot != nil && (req.Relieve != nil || req.RefundLot != nil || req.Reverses != nil) {
		return invalid(op, "open_lot", "a transaction that opens a lot does nothing else with lots")
	}
	if err := s.prepareRefund(ctx, op, req.RefundLot, pd); err != nil {
		return err
	}
	if o := req.OpenLot; o != nil {
		if len(pd.spills) > 0 {
			return invalid(op, "open_lot", "cannot be combined with spilling postings")
		}
		n := len(pd.Tx.Postings)
		if o.UnitsPosting < 0 || o.UnitsPosting >= n || pd.Tx.Postings[o.UnitsPosting].Side != Credit {
			return invalid(op, "open_lot.units_posting", "must be the index of a credit posting")
		}
		if o.ValuePosting < 0 || o.ValuePosting >= n || pd.Tx.Postings[o.ValuePosting].Side != Credit {
			return invalid(op, "open_lot.value_posting", "must be the index of a credit posting")
		}
		if pd.Tx.Postings[o.UnitsPosting].Asset == pd.Tx.Postings[o.ValuePosting].Asset {
			return invalid(op, "open_lot.value_posting", "must be in another asset than the units")
		}
		open := *o
		pd.openLot = &open
		pd.Tx.MovesLots = true
	}
	r := req.Relieve
	if r == nil {
		return nil
	}
	a, err := s.account(ctx, r.Account)
	if err != nil {
		return wrap(op, "relieve.account", err)
	}
	debited := decimal.Zero
	for _, p := range pd.Tx.Postings {
		if p.AccountID == a.ID {
			if p.Side == Debit {
				debited = debited.Add(p.Amount)
			} else {
				debited = debited.Sub(p.Amount)
			}
		}
	}
	spillsInto := false
	for _, sp := range pd.spills {
		spillsInto = spillsInto || sp.to.ID == a.ID
	}
	switch {
	case r.Units.IsZero() && !spillsInto:
		return invalid(op, "relieve.units", "may be left zero only when a posting spills onto %s", a.Name)
	case !r.Units.IsZero() && spillsInto:
		return invalid(op, "relieve.units", "must be left zero: what spills onto %s is decided at commit", a.Name)
	case !r.Units.IsZero() && (r.Units.Sign() < 0 || !r.Units.Equal(debited)):
		return invalid(op, "relieve.units", "must be positive and equal what the postings debit from %s (%s)", a.Name, debited)
	}
	if len(r.Legs) == 0 {
		return invalid(op, "relieve.legs", "needs the relief accounts of at least one value asset")
	}
	legs, err := s.resolveReliefLegs(ctx, op, r.Legs)
	if err != nil {
		return err
	}
	spec := &reliefSpec{account: a, units: r.Units, legs: legs}
	spec.lockAssets, spec.narrowed = s.lotAssets.Get(a.Name)
	pd.relief = spec
	pd.Tx.MovesLots = true
	return nil
}

// resolveReliefLegs resolves and checks a relief's legs. A gift names the
// relief accounts of every currency, twelve accounts: looked up one by one
// they were about half of a gift's account lookups, which took 5.7% of the
// coinledger process's CPU in a gift-hot profile (docs/benchmarks.md,
// "Twelfth pass"), so a resolution is cached by the legs' content.
func (s *Service) resolveReliefLegs(ctx context.Context, op string, legs map[string]ReliefLeg) (map[string]reliefLeg, error) {
	key := reliefLegsKey(legs)
	if resolved, ok := s.reliefLegs.Get(key); ok {
		return resolved, nil
	}
	resolved := make(map[string]reliefLeg, len(legs))
	for asset, leg := range legs {
		field := "relieve.legs[" + asset + "]"
		from, to, err := s.accountPair(ctx, op, leg.From, leg.To)
		if err != nil {
			return nil, under(field, err)
		}
		if from.Asset != asset || to.Asset != asset {
			return nil, invalid(op, field, "accounts must both hold %s", asset)
		}
		ast, err := s.Asset(ctx, asset)
		if err != nil {
			return nil, wrap(op, field, err)
		}
		resolved[asset] = reliefLeg{from: from, to: to, scale: ast.Scale}
	}
	s.reliefLegs.Put(key, resolved)
	return resolved, nil
}

// maxCachedReliefLegs bounds the relief-leg cache: callers name a few sets of
// legs (the economy, two), not one per request.
const maxCachedReliefLegs = 1024

// reliefLegsKey renders legs in asset order, each string prefixed with its
// length so that no two contents render alike.
func reliefLegsKey(legs map[string]ReliefLeg) string {
	assets := make([]string, 0, len(legs))
	n := 0
	for asset, leg := range legs {
		assets = append(assets, asset)
		n += len(asset) + len(leg.From) + len(leg.To) + 12
	}
	slices.Sort(assets)
	b := make([]byte, 0, n)
	for _, asset := range assets {
		leg := legs[asset]
		for _, part := range [...]string{asset, leg.From, leg.To} {
			b = strconv.AppendInt(b, int64(len(part)), 10)
			b = append(b, ':')
			b = append(b, part...)
		}
	}
	return string(b)
}

// ReverseRequest asks to undo a posted transaction with a new one that
// mirrors its postings and references it.
type ReverseRequest struct {
	IdempotencyKey string
	TransactionID  uuid.UUID
	Metadata       []byte
}

// Reverse posts the reversal of a transaction. A transaction is reversed at
// most once; balance policies apply to the reversal like to any posting.
func (s *Service) Reverse(ctx context.Context, req ReverseRequest) (*Transaction, error) {
	const op = "ledger.Reverse"
	if err := validateKey(op, "idempotency_key", req.IdempotencyKey); err != nil {
		return nil, err
	}
	if req.TransactionID == uuid.Nil {
		return nil, invalid(op, "transaction_id", "is required")
	}
	meta, err := canonicalMetadata(op, "metadata", req.Metadata)
	if err != nil {
		return nil, err
	}
	orig, err := s.store.Transaction(ctx, req.TransactionID)
	if err != nil {
		return nil, wrap(op, "transaction_id", err)
	}
	target := orig.ID
	pd := &Pending{Tx: Transaction{
		ID:             s.store.NewTransactionID(),
		IdempotencyKey: req.IdempotencyKey,
		Kind:           "reversal",
		Metadata:       meta,
		Reverses:       &target,
	}}
	var asked []PostingRequest
	for i, p := range orig.Postings {
		a, err := s.account(ctx, p.Account)
		if err != nil {
			return nil, wrap(op, fmt.Sprintf("postings[%d].account", i), err)
		}
		if a.PerShard {
			// A mirrored carry change would land on whichever row this lane
			// holds; the operation that made it undoes it with a Carry.
			return nil, &Error{Op: op, Kind: FailedPrecondition, Field: "transaction_id",
				Message: "the transaction moved a per-shard carry; undo it with the operation that made it"}
		}
		side := Debit
		if p.Side == Debit {
			side = Credit
		}
		pd.Accounts = append(pd.Accounts, a)
		pd.Tx.Postings = append(pd.Tx.Postings, Posting{Account: p.Account, AccountID: p.AccountID, Asset: p.Asset, Side: side, Amount: p.Amount})
		asked = append(asked, PostingRequest{Account: p.Account, Side: side, Amount: p.Amount})
	}
	pd.Fingerprint = fingerprint("reversal", time.Time{}, meta, &target, asked, nil)
	pd.Tx.MovesLots = orig.MovesLots
	return s.submit(ctx, pd)
}

func (s *Service) submit(ctx context.Context, pd *Pending) (*Transaction, error) {
	r := &request{pending: pd, ctx: ctx, done: make(chan struct{})}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case s.queue <- r:
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return nil, ctx.Err()
	}
	s.closeMu.RUnlock()
	// Once queued, the request is answered even if ctx ends: it may commit,
	// and the caller's retry with the same key will then see it.
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if pd.Err != nil {
		return nil, pd.Err
	}
	tx := pd.Tx
	return &tx, nil
}

// runLane takes whatever is queued, up to MaxBatch, and commits it as one
// database transaction. Under load batches grow by themselves: requests
// arriving while a lane commits ride in its next batch.
func (s *Service) runLane(lane int) {
	defer s.workers.Done()
	batch := make([]*request, 0, s.opts.MaxBatch)
	var recent time.Duration // this lane's commit time, a moving average
	for {
		batch = batch[:0]
		select {
		case r := <-s.queue:
			batch = append(batch, r)
		case <-s.stop:
			// Drain what was queued before Close.
			select {
			case r := <-s.queue:
				batch = append(batch, r)
			default:
				return
			}
		}
		var linger <-chan time.Time
		if wait := lingerFor(s.opts.Linger, recent); wait > 0 {
			linger = time.After(wait)
		}
	fill:
		for len(batch) < s.opts.MaxBatch {
			select {
			case r := <-s.queue:
				batch = append(batch, r)
				continue
			default:
			}
			if linger == nil {
				break
			}
			select {
			case r := <-s.queue:
				batch = append(batch, r)
			case <-linger:
				break fill
			}
		}
		if took := s.commit(lane, batch); took > 0 {
			recent += (took - recent) / 8
		}
	}
}

// commit posts reqs as one batch and answers them; it returns how long the
// database work took, zero when every request was abandoned before it.
func (s *Service) commit(lane int, reqs []*request) time.Duration {
	pending := make([]*Pending, 0, len(reqs))
	live := reqs[:0:0]
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			// Abandoned before its batch began: never posted.
			r.pending.Err = err
			close(r.done)
			continue
		}
		pending = append(pending, r.pending)
		live = append(live, r)
	}
	if len(pending) == 0 {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommitTimeout)
	defer cancel()
	start := time.Now()
	s.commitRound(ctx, lane, pending)
	took := time.Since(start)
	// Counted before anyone is answered, so a caller sees its own batch.
	s.committing.Add(int64(took))
	s.batched.Add(uint64(len(pending)))
	s.batches.Add(1)
	for _, pd := range pending {
		pd.Resolve()
		if pd.Outcome == Accepted {
			s.learnLots(pd)
		}
	}
	for _, r := range live {
		close(r.done)
	}
	return took
}

// commitRound commits pending as one batch, then any the batch deferred with
// every relief leg and more lots; a relief is deferred at most three times
// (reliefSpec.widen), the last round reading every open lot.
func (s *Service) commitRound(ctx context.Context, lane int, pending []*Pending) {
	err := s.store.CommitBatch(ctx, lane, pending)
	if err != nil && len(pending) > 1 && KindOf(err) == Internal {
		// One bad request must not sink its neighbours: commit each alone.
		s.log.Warn("commit batch failed; retrying its transactions one by one", "lane", lane, "size", len(pending), "err", err)
		for _, pd := range pending {
			s.commitRound(ctx, lane, []*Pending{pd})
		}
		return
	}
	var deferred []*Pending
	for _, pd := range pending {
		switch {
		case err != nil:
			pd.Outcome, pd.Err = Refused, err
		case pd.Outcome == Deferred:
			pd.relief.widen()
			deferred = append(deferred, pd)
		}
	}
	if len(deferred) > 0 {
		s.deferred.Add(uint64(len(deferred)))
		s.commitRound(ctx, lane, deferred)
	}
}

// learnLots keeps the guess of which currencies a holder's lots are in: what
// a relief's batch read, plus the currency of each lot opened since.
func (s *Service) learnLots(pd *Pending) {
	if r := pd.relief; r != nil {
		// Unchanged, as it nearly always is, it is not stored again: a
		// store allocates, and another request's guess is as good.
		if !r.narrowed || !slices.Equal(r.lockAssets, pd.heldAssets) {
			s.lotAssets.Put(r.account.Name, pd.heldAssets)
		}
		return
	}
	if pd.OpenedLot == nil {
		return
	}
	holder := pd.Tx.Postings[pd.openLot.UnitsPosting].Account
	held, ok := s.lotAssets.Get(holder)
	if asset := pd.OpenedLot.ValueAsset; ok && !slices.Contains(held, asset) {
		s.lotAssets.Put(holder, slices.Sorted(slices.Values(append(slices.Clone(held), asset))))
	}
}

// Transaction returns a posted transaction.
func (s *Service) Transaction(ctx context.Context, id uuid.UUID) (*Transaction, error) {
	return s.store.Transaction(ctx, id)
}

// TransactionByKey finds the transaction posted under an idempotency key.
func (s *Service) TransactionByKey(ctx context.Context, key string) (*Transaction, error) {
	if err := validateKey("ledger.TransactionByKey", "idempotency_key", key); err != nil {
		return nil, err
	}
	return s.store.TransactionByKey(ctx, key)
}

// Lot reads a FIFO lot (its id is the id of the transaction that opened it).
func (s *Service) Lot(ctx context.Context, id uuid.UUID) (*Lot, error) { return s.store.Lot(ctx, id) }

// LotMoves lists what transactions took from, or gave back to, a lot.
func (s *Service) LotMoves(ctx context.Context, lot uuid.UUID) ([]LotMove, error) {
	return s.store.LotMoves(ctx, lot)
}

// MaxPage bounds one page of a listing: accounts, or an account's entries.
const MaxPage = 1000

// Total is the sum of the balances of the accounts whose names start with
// prefix — all coin wallets, all creator payables — for reconciliation. The
// accounts must hold one asset.
func (s *Service) Total(ctx context.Context, prefix string) (decimal.Decimal, error) {
	if err := validatePrefix("ledger.Total", prefix); err != nil {
		return decimal.Zero, err
	}
	total, assets, err := s.store.Total(ctx, prefix)
	if err != nil {
		return total, err
	}
	if len(assets) > 1 {
		return decimal.Zero, invalid("ledger.Total", "prefix", "accounts under %q hold several assets (%v); a total needs one", prefix, assets)
	}
	return total, nil
}

// Accounts pages through accounts whose names start with prefix.
func (s *Service) Accounts(ctx context.Context, prefix, after string, limit int) ([]*Account, error) {
	if limit <= 0 || limit > MaxPage {
		return nil, invalid("ledger.Accounts", "limit", "must be between 1 and %d", MaxPage)
	}
	if err := validatePrefix("ledger.Accounts", prefix); err != nil {
		return nil, err
	}
	if after != "" {
		if err := ValidateAccountName("ledger.Accounts", "after", after); err != nil {
			return nil, err
		}
	}
	return s.store.Accounts(ctx, prefix, after, limit)
}

// Balance returns an account's balance on its normal side, now when asOf is
// zero, else as of that recorded time.
func (s *Service) Balance(ctx context.Context, name string, asOf time.Time) (decimal.Decimal, error) {
	a, err := s.Account(ctx, name)
	if err != nil {
		return decimal.Decimal{}, err
	}
	return s.store.Balance(ctx, a, asOf)
}

// Balances are the balances of accounts (from Accounts, say), in their
// order: now (asOf zero), read together in one snapshot, or as of a
// recorded time.
func (s *Service) Balances(ctx context.Context, accounts []*Account, asOf time.Time) ([]decimal.Decimal, error) {
	limit := MaxPage
	if asOf.IsZero() {
		limit = MaxSnapshot
	}
	if len(accounts) > limit {
		return nil, invalid("ledger.Balances", "accounts", "at most %d at once", limit)
	}
	return s.store.Balances(ctx, accounts, asOf)
}

// MaxSnapshot bounds the accounts whose balances now are read together (one
// query). As of a time each account takes queries of its own, and MaxPage
// bounds them.
const MaxSnapshot = 20 * MaxPage

// BalancesOf reads, by name, the balances of the accounts list returns. Now
// (asOf zero) they are one state of the ledger: one query, after which list
// is called again. Accounts are only ever added, and a transaction's accounts
// exist before it commits, so when none has appeared the read saw no
// transaction on an account it left out; otherwise it reads again, and
// gives up as Aborted when accounts keep appearing. As of a recorded time
// they are read a page at a time: balances as of a settled instant agree
// however they are read.
func (s *Service) BalancesOf(ctx context.Context, asOf time.Time, list func() ([]*Account, error)) ([]*Account, map[string]decimal.Decimal, error) {
	const op = "ledger.BalancesOf"
	accounts, err := list()
	if err != nil {
		return nil, nil, err
	}
	for attempt := 1; ; attempt++ {
		held, err := s.balancesByName(ctx, accounts, asOf)
		if err != nil || !asOf.IsZero() {
			return accounts, held, err
		}
		again, err := list()
		switch {
		case err != nil:
			return nil, nil, err
		case len(again) == len(accounts):
			return accounts, held, nil
		case attempt == maxSnapshotAttempts:
			return nil, nil, &Error{Op: op, Err: ErrRetriesExhausted, Message: "accounts kept appearing while their balances were read"}
		}
		accounts = again
	}
}

const maxSnapshotAttempts = 5

// balancesByName reads the accounts' balances: now in one query, as of a
// time a page at a time.
func (s *Service) balancesByName(ctx context.Context, accounts []*Account, asOf time.Time) (map[string]decimal.Decimal, error) {
	out := make(map[string]decimal.Decimal, len(accounts))
	for len(accounts) > 0 {
		n := len(accounts)
		if !asOf.IsZero() {
			n = min(n, MaxPage)
		}
		balances, err := s.Balances(ctx, accounts[:n], asOf)
		if err != nil {
			return nil, err
		}
		for i, a := range accounts[:n] {
			out[a.Name] = balances[i]
		}
		accounts = accounts[n:]
	}
	return out, nil
}

// Entries returns up to limit entries of an account after the cursor and
// recorded at or before until (zero: no bound), in commit order.
func (s *Service) Entries(ctx context.Context, name string, after Cursor, until time.Time, limit int) ([]Entry, error) {
	if limit <= 0 || limit > MaxPage {
		return nil, invalid("ledger.Entries", "limit", "must be between 1 and %d", MaxPage)
	}
	a, err := s.Account(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.store.Entries(ctx, a, after, until, limit)
}

// Verify checks every invariant of the ledger over one snapshot.
func (s *Service) Verify(ctx context.Context) (*Report, error) {
	return s.store.Verify(ctx, nil)
}

// VerifyWithProgress is Verify, reporting each check as it starts.
func (s *Service) VerifyWithProgress(ctx context.Context, progress func(check string, n, of int)) (*Report, error) {
	return s.store.Verify(ctx, progress)
}

// accountPair resolves the from and to accounts of a leg.
// Its errors name "from", "to" or the leg as a whole: put them under the
// leg's field.
func (s *Service) accountPair(ctx context.Context, op, fromName, toName string) (*Account, *Account, error) {
	from, err := s.account(ctx, fromName)
	if err != nil {
		return nil, nil, wrap(op, "from", err)
	}
	to, err := s.account(ctx, toName)
	if err != nil {
		return nil, nil, wrap(op, "to", err)
	}
	if from.PerShard || to.PerShard {
		return nil, nil, invalid(op, "", "may not move a per-shard carry account")
	}
	return from, to, nil
}
