package ledger

import (
	"context"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Sweep moves the whole balance of From to To, as it stands when the batch
// decides the transaction, under its locks. Releasing pending diamonds is
// one: a balance read first and posted after could meanwhile be lowered by a
// take-back, and the post then refused. A sweep transaction posts nothing
// else; From's balance being zero refuses it (ErrNothingToSweep).
type Sweep struct {
	From, To string
}

// ErrNothingToSweep refuses a sweep of an account whose balance is zero.
var ErrNothingToSweep = &Error{Kind: FailedPrecondition, Message: "the account to sweep holds nothing"}

// sweepSpec is a Sweep resolved against its accounts at submit time.
type sweepSpec struct {
	from, to *Account
}

// prepareSweep resolves a request's sweep. From's whole balance is read
// under lock and may not go negative, so that what it holds is what moves.
func (s *Service) prepareSweep(ctx context.Context, op string, req PostRequest, pd *Pending) error {
	sw := req.Sweep
	if sw == nil {
		return nil
	}
	if len(req.Postings) > 0 || req.OpenLot != nil || req.Relieve != nil || req.RefundLot != nil || len(req.Carries) > 0 || len(req.Expect) > 0 {
		return invalid(op, "sweep", "a sweep moves one balance and nothing else: no postings, lots, carries or expectations beside it")
	}
	from, err := s.account(ctx, sw.From)
	if err != nil {
		return wrap(op, "sweep.from", err)
	}
	to, err := s.account(ctx, sw.To)
	if err != nil {
		return wrap(op, "sweep.to", err)
	}
	if from.PerShard || from.AllowNegative {
		return invalid(op, "sweep.from", "%s must keep one total that may not go negative", from.Name)
	}
	if to.ID == from.ID || to.Asset != from.Asset || to.PerShard {
		return invalid(op, "sweep.to", "must be another account in %s, not a per-shard one", from.Asset)
	}
	pd.sweep = &sweepSpec{from: from, to: to}
	return nil
}

// resolveSweep appends the postings that move the sweep's balance, on a copy
// of the postings asked for (none), and tells whether there was any.
func (pd *Pending) resolveSweep(balance map[uuid.UUID]decimal.Decimal) bool {
	sw := pd.sweep
	held := balance[sw.from.ID]
	if held.Sign() <= 0 {
		return false
	}
	off, on := Debit, Credit // what lowers From, and its counterpart on To
	if sw.from.Normal == Debit {
		off, on = Credit, Debit
	}
	n := len(pd.Tx.Postings)
	pd.Tx.Postings = append(pd.Tx.Postings[:n:n],
		Posting{Account: sw.from.Name, AccountID: sw.from.ID, Asset: sw.from.Asset, Side: off, Amount: held},
		Posting{Account: sw.to.Name, AccountID: sw.to.ID, Asset: sw.to.Asset, Side: on, Amount: held})
	pd.Accounts = append(pd.Accounts[:n:n], sw.from, sw.to)
	return true
}

func (b *fpBuf) sweep(sw *Sweep) *fpBuf {
	if sw != nil {
		b.lit("sweep=").q(sw.From).lit(">").q(sw.To).lit(";")
	}
	return b
}
