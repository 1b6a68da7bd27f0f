package ledger

import (
	"fmt"
	"sort"
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
}

// LotRelief is what one transaction took from one lot.
type LotRelief struct {
	LotID uuid.UUID
	Units decimal.Decimal
	Value decimal.Decimal
}

// reliefSpec is a Relief resolved against accounts and assets at submit time.
type reliefSpec struct {
	account *Account
	units   decimal.Decimal
	legs    map[string]reliefLeg
}

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
func (pd *Pending) planRelief(op string, work lotWork) ([]LotRelief, []Posting, []*Account, error) {
	r := pd.relief
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
	for _, l := range work[r.account.ID] {
		if need.Sign() == 0 {
			break
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
		take := decimal.Min(need, l.UnitsLeft)
		value := l.ValueLeft
		if take.LessThan(l.UnitsLeft) {
			value = l.ValueLeft.Mul(take).Div(l.UnitsLeft).Round(leg.scale)
		}
		takes = append(takes, LotRelief{LotID: l.ID, Units: take, Value: value})
		valueByAsset[l.ValueAsset] = valueByAsset[l.ValueAsset].Add(value)
		need = need.Sub(take)
	}
	if need.Sign() > 0 {
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

// commitRelief applies accepted takes to the working lots.
func commitRelief(work lotWork, account uuid.UUID, takes []LotRelief) {
	byID := map[uuid.UUID]LotRelief{}
	for _, t := range takes {
		byID[t.LotID] = t
	}
	for _, l := range work[account] {
		if t, ok := byID[l.ID]; ok {
			l.UnitsLeft = l.UnitsLeft.Sub(t.Units)
			l.ValueLeft = l.ValueLeft.Sub(t.Value)
		}
	}
}

// fingerprintLots renders the lot instructions for the request fingerprint.
func fingerprintLots(open *LotOpen, r *Relief) string {
	var b strings.Builder
	if open != nil {
		fmt.Fprintf(&b, "open=%d,%d;", open.UnitsPosting, open.ValuePosting)
	}
	if r != nil {
		fmt.Fprintf(&b, "relieve=%q,%s;", r.Account, r.Units)
		assets := make([]string, 0, len(r.Legs))
		for a := range r.Legs {
			assets = append(assets, a)
		}
		sort.Strings(assets)
		for _, a := range assets {
			fmt.Fprintf(&b, "%s=%q>%q;", a, r.Legs[a].From, r.Legs[a].To)
		}
	}
	return b.String()
}
