package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// LotOpen makes a transaction open a FIFO lot: the units credited by one of
// its postings, carrying the value credited by another (coins bought, and the
// deferred revenue they are worth). The lot's id is the transaction's.
type LotOpen struct {
	UnitsPosting int // index of the posting crediting the units
	ValuePosting int // index of the posting crediting the value
}

// ReliefLeg names, for one value asset, the account the lots' value sits in
// (debited) and the account the relieved value moves to (credited).
type ReliefLeg struct {
	From string
	To   string
}

// Relief consumes Units from Account's open lots, oldest first, and moves each
// lot's share of value: taking k of a lot's u remaining units moves
// value_left × k / u, rounded half up to the value asset's scale, and the last
// unit takes what is left, so a lot's value is relieved exactly. The request
// must itself debit Account by Units; the value legs are added when the batch
// decides, under its locks. Units zero means whatever the transaction ends up
// debiting from Account once spills are decided (the paid part of a gift).
type Relief struct {
	Account string
	Units   decimal.Decimal
	Legs    map[string]ReliefLeg // by value asset
}

// ErrInsufficientLots is returned when an account's open lots hold fewer
// units than a relief asks for.
var ErrInsufficientLots = &Error{Kind: InsufficientFunds, Message: "not enough units in open lots"}

// Lot is an open lot as read under the batch's locks.
type Lot struct {
	ID             uuid.UUID
	AccountID      uuid.UUID
	OpenedAt       time.Time
	BatchSeq       int
	Units          decimal.Decimal
	UnitsLeft      decimal.Decimal
	ValueAccountID uuid.UUID
	ValueAsset     string
	Value          decimal.Decimal
	ValueLeft      decimal.Decimal
	// Refunded counts units given back to their source (LotRefund), spent or
	// not; UnitsLeft never exceeds Units − Refunded.
	Refunded decimal.Decimal
}

// LotRelief is what one transaction took from one lot: units and value
// relieved, and units refunded. A reversal records the negation of what the
// transaction it reverses took.
type LotRelief struct {
	LotID    uuid.UUID
	Units    decimal.Decimal
	Value    decimal.Decimal
	Refunded decimal.Decimal
}

// LotRefund gives Units of one lot back to their source (a store refund).
// Of them, Unspent are still in the lot and leave it with UnspentValue of its
// value; the request's postings must debit exactly those from the lot's
// holder and value accounts. The caller computes Unspent and UnspentValue
// from the lot as it read it (ReliefValue), and its other amounts from the
// units RefundedBefore (a store's legs are refunded in cumulative shares); if
// the lot changed before the commit, the request is refused with
// ErrLotChanged and may be planned again.
type LotRefund struct {
	Lot            uuid.UUID
	Holder         string // the account holding the lot's units
	ValueAccount   string // the account holding its value
	Units          decimal.Decimal
	Unspent        decimal.Decimal
	UnspentValue   decimal.Decimal
	RefundedBefore decimal.Decimal // the lot's Refunded as planned from
}

// ErrLotChanged is returned when a lot moved between a LotRefund's planning
// and its commit; plan it again from the lot's new state.
var ErrLotChanged = &Error{Kind: Aborted, Message: "the lot changed since the refund was planned; plan it again"}

// ErrRefundExceedsLot is returned when a refund asks for more units than the
// lot has not yet refunded.
var ErrRefundExceedsLot = &Error{Kind: FailedPrecondition, Message: "refund exceeds the lot's units not yet refunded"}

// ErrLotRefunded is returned when reversing a transaction would put units
// back into a lot that was refunded since.
var ErrLotRefunded = &Error{Kind: FailedPrecondition, Message: "a lot the transaction drew on was refunded since"}

// LotRefundedError is ErrLotRefunded naming every lot that refused, so
// that a caller can say which refunds stand in the way.
type LotRefundedError struct{ Lots []uuid.UUID }

func (e *LotRefundedError) Error() string {
	ids := make([]string, len(e.Lots))
	for i, id := range e.Lots {
		ids[i] = id.String()
	}
	if len(ids) == 1 {
		return "lot " + ids[0] + ": " + ErrLotRefunded.Message
	}
	return "lots " + strings.Join(ids, ", ") + ": " + ErrLotRefunded.Message
}

func (e *LotRefundedError) Unwrap() error { return ErrLotRefunded }

// ErrOpensLot is returned when reversing a transaction that opened a lot: a
// refund owns that.
var ErrOpensLot = &Error{Kind: FailedPrecondition, Message: "the transaction opened a FIFO lot; undo it with a refund"}

// ReliefValue is the value that taking units of a lot with unitsLeft units
// and valueLeft value moves: proportional, rounded half up to scale, and all
// of what is left with the last unit.
func ReliefValue(units, unitsLeft, valueLeft decimal.Decimal, scale int32) decimal.Decimal {
	if units.GreaterThanOrEqual(unitsLeft) {
		return valueLeft
	}
	return valueLeft.Mul(units).Div(unitsLeft).Round(scale)
}

// reliefSpec is a Relief resolved against accounts and assets at submit time.
type reliefSpec struct {
	account *Account
	units   decimal.Decimal
	legs    map[string]reliefLeg
	// When narrowed, the batch locks the legs of these value assets only:
	// the ones the holder's lots were in when a batch last read them. A lot
	// in another asset defers the transaction (errLegNotLocked) to a batch of
	// its own with every leg, so a stale guess costs a round, never a wrong
	// posting. Each leg locked is a balance row and a status read per batch,
	// and most holders' lots are all in one currency.
	narrowed   bool
	lockAssets []string
	// readLots is how many of the holder's oldest open lots the batch reads
	// for this relief: 0 LotsRead, and each deferral reads more (widen).
	readLots int
}

// widen is what a deferred relief reads in its next round: sixteen times as
// many lots, and past maxLotsRead every one (0 in Plan.LotLimit). A relief
// that needs hundreds of a wallet's thousands of lots takes two rounds more
// rather than locking all of them; one that needs them all takes three.
func (r *reliefSpec) widen() {
	n := max(r.readLots, LotsRead) * 16
	if n > maxLotsRead {
		n = -1
	}
	r.narrowed, r.readLots = false, n
}

// maxLotsRead is the most lots a limited read asks for.
const maxLotsRead = 4096

// locks reports whether the batch locks asset's leg.
func (r *reliefSpec) locks(asset string) bool {
	return !r.narrowed || slices.Contains(r.lockAssets, asset)
}

// lockedLegs yields the legs whose accounts a batch locks for r. A gift
// names six currencies' legs, and most holders' lots are in one.
func (r *reliefSpec) lockedLegs(yield func(reliefLeg) bool) {
	if !r.narrowed {
		for _, leg := range r.legs {
			if !yield(leg) {
				return
			}
		}
		return
	}
	for _, asset := range r.lockAssets {
		if leg, ok := r.legs[asset]; ok && !yield(leg) {
			return
		}
	}
}

// errLegNotLocked: a lot's value asset is outside a narrowed relief.
var errLegNotLocked = errors.New("relief meets a lot whose value leg the batch did not lock")

// LotsRead is how many of a holder's oldest open lots a batch reads and locks
// for its reliefs. A relief nearly always takes from the oldest one or two;
// reading every open lot would make a wallet of many small purchases cost
// each of its gifts a lock per lot. A relief that needs more is deferred
// (errLotsNotRead) to a round that reads more (reliefSpec.widen).
const LotsRead = 16

// errLotsNotRead: a relief needs lots past the oldest the batch read.
var errLotsNotRead = errors.New("relief needs more lots than the batch read")

type reliefLeg struct {
	from, to *Account
	scale    int32
}

// lotWork is a batch's working copy of lot state: Decide may run again on a
// retry, so it never mutates what the store read.
type lotWork map[uuid.UUID][]*Lot

func (st *State) lotWork() lotWork {
	w := lotWork{}
	for acct, lots := range st.Lots {
		for _, l := range lots {
			c := *l
			w[acct] = append(w[acct], &c)
		}
	}
	return w
}

// planRelief takes units FIFO from the working lots without changing them,
// returning the takes and the value legs to post.
func (pd *Pending) planRelief(op string, st *State) ([]LotRelief, []Posting, []*Account, error) {
	r := pd.relief
	read, cut := st.LotsCut[r.account.ID]
	need := r.units
	if need.IsZero() { // as much as the postings, spills decided, debit from the account
		for _, p := range pd.Tx.Postings {
			if p.AccountID == r.account.ID {
				if p.Side == Debit {
					need = need.Add(p.Amount)
				} else {
					need = need.Sub(p.Amount)
				}
			}
		}
		if need.Sign() <= 0 {
			return nil, nil, nil, nil
		}
	}
	var takes []LotRelief
	valueByAsset := map[string]decimal.Decimal{}
	for i, l := range st.lots[r.account.ID] {
		if need.Sign() == 0 {
			break
		}
		if cut && i >= read {
			// Lots the batch opened, or read by id, come after lots it did
			// not read.
			return nil, nil, nil, errLotsNotRead
		}
		if l.UnitsLeft.Sign() == 0 {
			continue
		}
		leg, ok := r.legs[l.ValueAsset]
		if !ok {
			return nil, nil, nil, invalid(op, "relieve.legs", "lot %s carries %s, for which no relief accounts were given", l.ID, l.ValueAsset)
		}
		if leg.from.ID != l.ValueAccountID {
			return nil, nil, nil, invalid(op, "relieve.legs["+l.ValueAsset+"].from", "lot %s's value is not in %s", l.ID, leg.from.Name)
		}
		if !r.locks(l.ValueAsset) {
			return nil, nil, nil, errLegNotLocked
		}
		take := decimal.Min(need, l.UnitsLeft)
		value := ReliefValue(take, l.UnitsLeft, l.ValueLeft, leg.scale)
		takes = append(takes, LotRelief{LotID: l.ID, Units: take, Value: value})
		valueByAsset[l.ValueAsset] = valueByAsset[l.ValueAsset].Add(value)
		need = need.Sub(take)
	}
	if need.Sign() > 0 {
		if cut {
			return nil, nil, nil, errLotsNotRead
		}
		return nil, nil, nil, &Error{Op: op, Field: "relieve.units", Kind: InsufficientFunds,
			Err:     ErrInsufficientLots,
			Message: fmt.Sprintf("%s's lots hold %s units fewer than asked", r.account.Name, need)}
	}
	assets := make([]string, 0, len(valueByAsset))
	for a := range valueByAsset {
		assets = append(assets, a)
	}
	sort.Strings(assets)
	var postings []Posting
	var accounts []*Account
	for _, a := range assets {
		v := valueByAsset[a]
		if v.Sign() == 0 {
			continue
		}
		leg := r.legs[a]
		postings = append(postings,
			Posting{Account: leg.from.Name, AccountID: leg.from.ID, Asset: a, Side: Debit, Amount: v},
			Posting{Account: leg.to.Name, AccountID: leg.to.ID, Asset: a, Side: Credit, Amount: v})
		accounts = append(accounts, leg.from, leg.to)
	}
	return takes, postings, accounts, nil
}

// lots renders the lot instructions for the request fingerprint. The
// rendering is part of stored fingerprints, so it must never change:
// TestFingerprintRenderingIsStable pins it. (strconv rather than fmt: this
// runs for every gift.)
func (b *fpBuf) lots(open *LotOpen, r *Relief, refund *LotRefund) *fpBuf {
	if refund != nil {
		b.lit("refund=").lit(refund.Lot.String()).lit(",").q(refund.Holder).lit(",").q(refund.ValueAccount).
			lit(",").dec(refund.Units).lit(",").dec(refund.Unspent).lit(",").dec(refund.UnspentValue)
		if !refund.RefundedBefore.IsZero() { // absent from fingerprints stored before it was added
			b.lit(",").dec(refund.RefundedBefore)
		}
		b.lit(";")
	}
	if open != nil {
		b.lit("open=").num(open.UnitsPosting).lit(",").num(open.ValuePosting).lit(";")
	}
	if r != nil {
		b.lit("relieve=").q(r.Account).lit(",").dec(r.Units).lit(";")
		assets := make([]string, 0, len(r.Legs))
		for a := range r.Legs {
			assets = append(assets, a)
		}
		sort.Strings(assets)
		for _, a := range assets {
			b.lit(a).lit("=").q(r.Legs[a].From).lit(">").q(r.Legs[a].To).lit(";")
		}
	}
	return b
}

// fpBuf renders fingerprint parts as fmt's %q, %s and %d rendered them.
type fpBuf []byte

func (b *fpBuf) lit(s string) *fpBuf          { *b = append(*b, s...); return b }
func (b *fpBuf) q(s string) *fpBuf            { *b = appendQuote(*b, s); return b }
func (b *fpBuf) dec(d decimal.Decimal) *fpBuf { *b = AppendDecimal(*b, d); return b }
func (b *fpBuf) num(n int) *fpBuf             { *b = strconv.AppendInt(*b, int64(n), 10); return b }

// appendQuote is strconv.AppendQuote, byte for byte, without its rune-by-rune
// escaping for the plain ASCII names fingerprints are made of: such a string
// quotes to itself between double quotes (FuzzQuoteFastPath).
func appendQuote(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return strconv.AppendQuote(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// openAssets lists the value assets of the holder's open lots, sorted.
func (w lotWork) openAssets(holder uuid.UUID) []string {
	out := []string{}
	for _, l := range w[holder] {
		if l.UnitsLeft.Sign() > 0 && !slices.Contains(out, l.ValueAsset) {
			out = append(out, l.ValueAsset)
		}
	}
	slices.Sort(out)
	return out
}

// lotByID finds a lot in the working state.
func (w lotWork) lotByID(id uuid.UUID) *Lot {
	for _, lots := range w {
		for _, l := range lots {
			if l.ID == id {
				return l
			}
		}
	}
	return nil
}

// netDebit is what the postings take from an account, debits less credits.
func netDebit(postings []Posting, account uuid.UUID) decimal.Decimal {
	n := decimal.Zero
	for _, p := range postings {
		if p.AccountID == account {
			if p.Side == Debit {
				n = n.Add(p.Amount)
			} else {
				n = n.Sub(p.Amount)
			}
		}
	}
	return n
}

// planRefund checks a lot refund against the lot's state under lock.
func (pd *Pending) planRefund(op string, work lotWork) (LotRelief, error) {
	r := pd.refund
	l := work.lotByID(r.Lot)
	if l == nil {
		return LotRelief{}, &Error{Op: op, Field: "refund_lot.lot", Kind: NotFound, Message: "no lot " + r.Lot.String()}
	}
	if l.AccountID != r.holder.ID || l.ValueAccountID != r.valueAccount.ID {
		return LotRelief{}, invalid(op, "refund_lot", "lot %s is not held by %s with its value in %s", l.ID, r.holder.Name, r.valueAccount.Name)
	}
	if l.Refunded.Add(r.Units).GreaterThan(l.Units) {
		return LotRelief{}, &Error{Op: op, Field: "refund_lot.units", Err: ErrRefundExceedsLot,
			Message: fmt.Sprintf("lot %s has %s units not yet refunded, fewer than %s", l.ID, l.Units.Sub(l.Refunded), r.Units)}
	}
	if !r.RefundedBefore.Equal(l.Refunded) || !r.Unspent.Equal(decimal.Min(r.Units, l.UnitsLeft)) ||
		!r.UnspentValue.Equal(ReliefValue(r.Unspent, l.UnitsLeft, l.ValueLeft, r.scale)) {
		return LotRelief{}, wrap(op, "refund_lot", ErrLotChanged)
	}
	if !netDebit(pd.Tx.Postings, l.AccountID).Equal(r.Unspent) || !netDebit(pd.Tx.Postings, l.ValueAccountID).Equal(r.UnspentValue) {
		return LotRelief{}, invalid(op, "postings", "must debit the lot's holder by the unspent units and its value account by their value")
	}
	return LotRelief{LotID: l.ID, Units: r.Unspent, Value: r.UnspentValue, Refunded: r.Units}, nil
}

// refundSpec is a LotRefund resolved against accounts at submit time.
type refundSpec struct {
	LotRefund
	holder, valueAccount *Account
	scale                int32
}

// planRestore undoes what the reversed transaction took from its lots.
func planRestore(op string, work lotWork, reversed uuid.UUID, took []LotRelief) ([]LotRelief, error) {
	var out []LotRelief
	var refunded *LotRefundedError
	for _, t := range took {
		l := work.lotByID(t.LotID)
		if l == nil {
			return nil, &Error{Op: op, Kind: Internal, Message: fmt.Sprintf("lot %s of transaction %s was not read", t.LotID, reversed)}
		}
		left, value := l.UnitsLeft.Add(t.Units), l.ValueLeft.Add(t.Value)
		if left.Sign() < 0 || value.Sign() < 0 { // undoing a restore whose units were spent again
			return nil, wrap(op, "transaction_id", ErrInsufficientLots)
		}
		if r := l.Refunded.Sub(t.Refunded); r.Sign() < 0 || left.GreaterThan(l.Units.Sub(r)) || value.GreaterThan(l.Value) {
			if refunded == nil {
				refunded = &LotRefundedError{}
			}
			refunded.Lots = append(refunded.Lots, t.LotID)
			continue
		}
		out = append(out, LotRelief{LotID: t.LotID, Units: t.Units.Neg(), Value: t.Value.Neg(), Refunded: t.Refunded.Neg()})
	}
	if refunded != nil {
		return nil, wrap(op, "transaction_id", refunded)
	}
	return out, nil
}

// applyReliefs applies accepted reliefs (of any sign) to the working lots.
func applyReliefs(work lotWork, takes []LotRelief) {
	for _, t := range takes {
		if l := work.lotByID(t.LotID); l != nil {
			l.UnitsLeft = l.UnitsLeft.Sub(t.Units)
			l.ValueLeft = l.ValueLeft.Sub(t.Value)
			l.Refunded = l.Refunded.Add(t.Refunded)
		}
	}
}

// prepareRefund checks a lot refund and resolves its accounts.
func (s *Service) prepareRefund(ctx context.Context, op string, r *LotRefund, pd *Pending) error {
	if r == nil {
		return nil
	}
	if r.Lot == uuid.Nil {
		return invalid(op, "refund_lot.lot", "is required")
	}
	holder, err := s.account(ctx, r.Holder)
	if err != nil {
		return wrap(op, "refund_lot.holder", err)
	}
	value, err := s.account(ctx, r.ValueAccount)
	if err != nil {
		return wrap(op, "refund_lot.value_account", err)
	}
	asset, err := s.Asset(ctx, value.Asset)
	if err != nil {
		return wrap(op, "refund_lot.value_account", err)
	}
	switch {
	case r.Units.Sign() <= 0:
		return invalid(op, "refund_lot.units", "must be positive")
	case r.Unspent.Sign() < 0 || r.Unspent.GreaterThan(r.Units):
		return invalid(op, "refund_lot.unspent", "must be between 0 and units")
	case r.UnspentValue.Sign() < 0:
		return invalid(op, "refund_lot.unspent_value", "must not be negative")
	case r.RefundedBefore.Sign() < 0:
		return invalid(op, "refund_lot.refunded_before", "must not be negative")
	}
	pd.refund = &refundSpec{LotRefund: *r, holder: holder, valueAccount: value, scale: asset.Scale}
	pd.Tx.MovesLots = true
	return nil
}

// LotBefore orders lots oldest first: FIFO order.
func LotBefore(a, b *Lot) bool {
	if !a.OpenedAt.Equal(b.OpenedAt) {
		return a.OpenedAt.Before(b.OpenedAt)
	}
	if a.BatchSeq != b.BatchSeq {
		return a.BatchSeq < b.BatchSeq
	}
	return bytes.Compare(a.ID[:], b.ID[:]) < 0
}
