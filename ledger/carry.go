package ledger

import (
	"context"
	"slices"

	"github.com/shopspring/decimal"
)

// Carry adds Fraction (negative to take some back) to a carry account and
// converts whole granules of it into other units: when the carry reaches
// Granule, one granule leaves it and every leg moves its PerGranule amount
// From → To; when a negative Fraction would take the carry below zero, granules
// come back, each leg moving To → From. The carry stays in [0, Granule).
//
// Fractional diamonds use it: a gift worth 12.5 diamonds adds 12.5 to the
// creator's carry (a scale-6 unit) and mints only whole granules, so no
// fraction appears or vanishes. The carry account is PerShard: adding, a lane
// reads and writes only its own row, so gifts to one creator never wait for
// each other on it; each row stays in [0, Granule) by itself. Taking back
// locks all the rows (see resolveCarries).
//
// The conversion is decided when the batch commits, under its locks.
type Carry struct {
	Account  string // PerShard, credit-normal
	Source   string // the carry unit's issuance account, the other side of each change
	Fraction decimal.Decimal
	Granule  decimal.Decimal
	Legs     []CarryLeg
}

// CarryLeg is moved once per granule converted.
type CarryLeg struct {
	From, To   string
	PerGranule decimal.Decimal
}

// MaxCarries bounds the carries of one transaction.
const (
	MaxCarries   = 64
	maxCarryLegs = 8
)

type carrySpec struct {
	account, source   *Account
	fraction, granule decimal.Decimal
	legs              []carryLegSpec
}

type carryLegSpec struct {
	from, to *Account
	per      decimal.Decimal
}

// resolveCarries appends each carry's postings, given the running balances
// of the carry rows the batch holds, and records in carryRows how each row
// changes. It works on the postings as spills left them.
//
// Adding uses the lane's row only. Taking back draws on the rows, the lane's
// first, and returns granules only for what they cannot cover, so a reversal
// never takes back more whole units than were converted, whichever lane the
// fraction went to.
func (pd *Pending) resolveCarries(lane int, rows map[ShardRef]decimal.Decimal) {
	// Room for each carry's pair and its legs' pairs, grown once: the
	// postings may be the capped base, which this copies and never changes.
	extra := 0
	for _, c := range pd.carries {
		extra += 2 + 2*len(c.legs)
	}
	pd.Tx.Postings, pd.Accounts = slices.Grow(pd.Tx.Postings, extra), slices.Grow(pd.Accounts, extra)
	row := func(ref ShardRef) decimal.Decimal {
		b := rows[ref]
		for _, c := range pd.carryRows {
			if c.row == ref {
				b = b.Add(c.delta)
			}
		}
		return b
	}
	for _, c := range pd.carries {
		own := ShardRef{c.account.ID, laneShard(c.account, lane)}
		var n decimal.Decimal // granules converted, negative when returned
		if c.fraction.Sign() > 0 {
			n = floorDiv(row(own).Add(c.fraction), c.granule)
			pd.carryRows = append(pd.carryRows, rowChange{own, own, c.fraction.Sub(n.Mul(c.granule))})
		} else {
			need := c.fraction.Neg()
			for s := 0; s < c.account.Shards && need.Sign() > 0; s++ {
				ref := ShardRef{c.account.ID, (own.Shard + s) % c.account.Shards}
				if take := decimal.Min(row(ref), need); take.Sign() > 0 {
					pd.carryRows = append(pd.carryRows, rowChange{ref, own, take.Neg()})
					need = need.Sub(take)
				}
			}
			if need.Sign() > 0 {
				n = floorDiv(need.Neg(), c.granule) // -ceil(need / granule)
				pd.carryRows = append(pd.carryRows, rowChange{own, own, need.Neg().Sub(n.Mul(c.granule))})
			}
		}
		if delta := c.fraction.Sub(n.Mul(c.granule)); delta.Sign() != 0 {
			from, to := c.source, c.account
			if delta.Sign() < 0 {
				from, to = to, from
			}
			pd.addPair(from, to, delta.Abs())
		}
		if n.Sign() == 0 {
			continue
		}
		for _, leg := range c.legs {
			from, to := leg.from, leg.to
			if n.Sign() < 0 {
				from, to = to, from
			}
			pd.addPair(from, to, leg.per.Mul(n.Abs()))
		}
	}
}

// rowChange is a carry's change to one row; own is the committing lane's row
// of the same account, where the transaction's postings land.
type rowChange struct {
	row, own ShardRef
	delta    decimal.Decimal
}

// commitRows moves the running row balances by an accepted transaction's
// carry changes.
func commitRows(rows map[ShardRef]decimal.Decimal, changes []rowChange) {
	for _, c := range changes {
		rows[c.row] = rows[c.row].Add(c.delta)
	}
}

// addPair appends a debit of from and a credit of to.
func (pd *Pending) addPair(from, to *Account, amount decimal.Decimal) {
	pd.Tx.Postings = append(pd.Tx.Postings,
		Posting{Account: from.Name, AccountID: from.ID, Asset: from.Asset, Side: Debit, Amount: amount},
		Posting{Account: to.Name, AccountID: to.ID, Asset: to.Asset, Side: Credit, Amount: amount})
	pd.Accounts = append(pd.Accounts, from, to)
}

// floorDiv returns floor(x / g) for g > 0.
func floorDiv(x, g decimal.Decimal) decimal.Decimal {
	q, r := x.QuoRem(g, 0)
	if r.Sign() < 0 {
		q = q.Sub(decimal.NewFromInt(1))
	}
	return q
}

// prepareCarries checks the carries asked for and resolves their accounts.
func (s *Service) prepareCarries(ctx context.Context, op string, carries []Carry, pd *Pending) error {
	if len(carries) > MaxCarries {
		return invalid(op, "carries", "has more than %d carries", MaxCarries)
	}
	for i, c := range carries {
		a, err := s.account(ctx, c.Account)
		if err != nil {
			return wrap(op, Indexed("carries", i)+".account", err)
		}
		if !a.PerShard || a.Normal != Credit {
			return invalid(op, Indexed("carries", i)+".account", "must be a credit-normal per-shard account")
		}
		src, err := s.account(ctx, c.Source)
		if err != nil {
			return wrap(op, Indexed("carries", i)+".source", err)
		}
		if src.Asset != a.Asset || !src.AllowNegative {
			return invalid(op, Indexed("carries", i)+".source", "must be an account in %s that may go negative (its issuance)", a.Asset)
		}
		asset, err := s.Asset(ctx, a.Asset)
		if err != nil {
			return wrap(op, Indexed("carries", i)+".account", err)
		}
		if c.Fraction.IsZero() {
			return invalid(op, Indexed("carries", i)+".fraction", "must not be zero")
		}
		if err := asset.checkDigits(op, "fraction", c.Fraction); err != nil {
			return under(Indexed("carries", i), err)
		}
		if err := asset.CheckAmount(op, "granule", c.Granule); err != nil {
			return under(Indexed("carries", i), err)
		}
		if len(c.Legs) == 0 || len(c.Legs) > maxCarryLegs {
			return invalid(op, Indexed("carries", i)+".legs", "needs 1 to %d legs", maxCarryLegs)
		}
		spec := carrySpec{account: a, source: src, fraction: c.Fraction, granule: c.Granule}
		for j, leg := range c.Legs {
			legField := func() string { return Indexed(Indexed("carries", i)+".legs", j) } // for an error only
			from, to, err := s.accountPair(ctx, op, leg.From, leg.To)
			if err != nil {
				return under(legField(), err)
			}
			if from.Asset != to.Asset || from.ID == to.ID {
				return invalid(op, legField(), "needs two accounts in one asset")
			}
			legAsset, err := s.Asset(ctx, from.Asset)
			if err != nil {
				return wrap(op, legField(), err)
			}
			if err := legAsset.CheckAmount(op, "per_granule", leg.PerGranule); err != nil {
				return under(legField(), err)
			}
			spec.legs = append(spec.legs, carryLegSpec{from: from, to: to, per: leg.PerGranule})
		}
		pd.carries = append(pd.carries, spec)
	}
	return nil
}

// carries renders the carries for the request fingerprint; like lots, its
// rendering must never change.
func (b *fpBuf) carries(carries []Carry) *fpBuf {
	for _, c := range carries {
		b.lit("carry=").q(c.Account).lit(",").q(c.Source).lit(",").dec(c.Fraction).lit(",").dec(c.Granule).lit(";")
		for _, l := range c.Legs {
			b.lit("leg=").q(l.From).lit(">").q(l.To).lit(",").dec(l.PerGranule).lit(";")
		}
	}
	return b
}
