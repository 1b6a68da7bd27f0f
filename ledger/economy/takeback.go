package economy

import (
	"context"
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
)

// Taking diamonds back from an earner's carry (a gift reversal, a refund's
// clawback) draws on the carry first and then returns whole granules out of
// a pending account, each carry leg naming one. The granules a gift's
// fraction went into may have been minted by a later gift into a later
// day's account, so the release day's account may not hold them; the
// take-back is then split into parts whose granules other pending accounts
// lend.

// takeBackPart is the part of a take-back whose granules come out of one
// pending account.
type takeBackPart struct {
	diamonds decimal.Decimal
	pending  string
}

// pendingBalance is one of an earner's pending accounts and what it holds.
type pendingBalance struct {
	account string
	day     time.Time
	held    decimal.Decimal
}

// maxLenders bounds the pending accounts one take-back borrows from, so that
// a transaction's carries stay within ledger.MaxCarries.
const maxLenders = ledger.MaxCarries / 4

// splitTakeBack splits taking diamonds back from a carry that holds carry
// into parts, in the order the ledger applies them, so that each part's
// granules come out of one pending account: own's, while it holds them,
// then the latest days'. taken is what earlier take-backs of the same
// transaction return from each account; the parts' granules are added to it.
// It returns the carry the parts leave, and ok false (taken unchanged) when
// the accounts together hold too few whole granules.
func splitTakeBack(diamonds, carry, granule decimal.Decimal, own string, pending []pendingBalance, taken map[string]decimal.Decimal) (parts []takeBackPart, left decimal.Decimal, ok bool) {
	left = carry.Sub(diamonds)
	if left.Sign() >= 0 {
		return []takeBackPart{{diamonds, own}}, left, true
	}
	granules := left.Neg().Div(granule).Ceil()
	need := granules
	lenders := slices.Clone(pending)
	slices.SortStableFunc(lenders, func(a, b pendingBalance) int {
		if (a.account == own) != (b.account == own) {
			if a.account == own {
				return -1
			}
			return 1
		}
		return b.day.Compare(a.day)
	})
	type loan struct {
		account  string
		granules decimal.Decimal
	}
	var loans []loan
	for _, l := range lenders {
		if need.IsZero() || len(loans) == maxLenders {
			break
		}
		spare := l.held.Sub(taken[l.account]).Div(granule).Floor()
		if k := decimal.Min(spare, need); k.Sign() > 0 {
			loans = append(loans, loan{l.account, k})
			need = need.Sub(k)
		}
	}
	if need.Sign() > 0 {
		return nil, carry, false
	}
	// Every part but the last takes exactly its granules: what it draws
	// from the carry comes back with them, so the ledger returns them from
	// its account. The last takes the rest, within its granules.
	rest := diamonds
	for i, l := range loans {
		lent := l.granules.Mul(granule)
		part := lent
		if i == len(loans)-1 {
			part = rest
		}
		parts = append(parts, takeBackPart{part, l.account})
		rest = rest.Sub(part)
		taken[l.account] = taken[l.account].Add(lent)
	}
	return parts, left.Add(granules.Mul(granule)), true
}

// pendingBalances reads what each of earner's pending accounts holds.
func (e *Economy) pendingBalances(ctx context.Context, earner string) ([]pendingBalance, error) {
	var out []pendingBalance
	for after := ""; ; {
		page, err := e.ledger.Accounts(ctx, PendingDiamondsPrefix(earner), after, ledger.MaxPage)
		if err != nil || len(page) == 0 {
			return out, err
		}
		held, err := e.ledger.Balances(ctx, page, time.Time{})
		if err != nil {
			return nil, err
		}
		for i, a := range page {
			if of, day, ok := ParsePending(a.Name); ok && of == earner {
				out = append(out, pendingBalance{a.Name, day, held[i]})
			}
		}
		if len(page) < ledger.MaxPage {
			return out, nil
		}
		after = page[len(page)-1].Name
	}
}

// takeBacks plans the take-backs of one transaction, keeping for each
// earner the carry that the earlier ones leave and what they borrow.
type takeBacks struct {
	e       *Economy
	carry   map[string]decimal.Decimal
	pending map[string][]pendingBalance
	taken   map[string]decimal.Decimal
}

func (e *Economy) takeBacks() *takeBacks {
	return &takeBacks{e: e, carry: map[string]decimal.Decimal{}, pending: map[string][]pendingBalance{}, taken: map[string]decimal.Decimal{}}
}

// split splits taking diamonds back from earner's carry, whose release day's
// pending account is own; ok false: the earner's pending accounts together
// hold too few granules (released, or taken back).
func (tb *takeBacks) split(ctx context.Context, earner, own string, diamonds, granule decimal.Decimal) ([]takeBackPart, bool, error) {
	carry, ok := tb.carry[earner]
	if !ok {
		held, err := tb.e.ledger.Balance(ctx, DiamondCarry(earner), time.Time{})
		if err != nil {
			return nil, false, err
		}
		carry = held
	}
	if carry.Sub(diamonds).Sign() < 0 {
		if _, read := tb.pending[earner]; !read {
			held, err := tb.e.pendingBalances(ctx, earner)
			if err != nil {
				return nil, false, err
			}
			tb.pending[earner] = held
		}
	}
	parts, left, ok := splitTakeBack(diamonds, carry, granule, own, tb.pending[earner], tb.taken)
	if ok {
		tb.carry[earner] = left
	}
	return parts, ok, nil
}
