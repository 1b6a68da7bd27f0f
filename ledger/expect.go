package ledger

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// Expectation makes a transaction conditional on an account's balance: it is
// refused with ErrUnexpectedBalance unless, when the batch decides it (after
// every transaction committed before it), Account's balance on its normal
// side is exactly Balance. A caller that plans from a balance it read (a debt
// to repay) uses it to learn that the balance moved and plan again; a zero
// expectation is a guard (no gift while a wallet owes coins).
type Expectation struct {
	Account string
	Balance decimal.Decimal
}

// MaxExpectations bounds the expectations of one transaction.
const MaxExpectations = 8

// ErrUnexpectedBalance is returned when an expectation does not hold.
var ErrUnexpectedBalance = &Error{Kind: Aborted, Message: "an account's balance is not the one the transaction expects"}

// expectSpec is an Expectation resolved against its account at submit time.
type expectSpec struct {
	account *Account
	balance decimal.Decimal
}

// prepareExpectations resolves the accounts of req's expectations. Their full
// balance is read under lock, so sharded-per-row (PerShard) accounts, whose
// rows are never summed under one lock, are refused.
func (s *Service) prepareExpectations(ctx context.Context, op string, expect []Expectation, pd *Pending) error {
	if len(expect) > MaxExpectations {
		return invalid(op, "expect", "has more than %d expectations", MaxExpectations)
	}
	for i, e := range expect {
		a, err := s.account(ctx, e.Account)
		if err != nil {
			return wrap(op, Indexed("expect", i)+".account", err)
		}
		if a.PerShard {
			return invalid(op, Indexed("expect", i)+".account", "%s keeps per-shard balances; its total cannot be expected", a.Name)
		}
		pd.expects = append(pd.expects, expectSpec{account: a, balance: e.Balance})
	}
	return nil
}

// checkExpectations compares the running balances with what pd expects.
func (pd *Pending) checkExpectations(op string, balance map[uuid.UUID]decimal.Decimal) error {
	for i, e := range pd.expects {
		if got := balance[e.account.ID]; !got.Equal(e.balance) {
			return &Error{Op: op, Field: Indexed("expect", i), Err: ErrUnexpectedBalance,
				Message: fmt.Sprintf("%s holds %s, not %s", e.account.Name, got, e.balance)}
		}
	}
	return nil
}

func (b *fpBuf) expectations(expect []Expectation) *fpBuf {
	for _, e := range expect {
		b.lit("expect=").q(e.Account).lit(",").dec(e.Balance).lit(";")
	}
	return b
}
