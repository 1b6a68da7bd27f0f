package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
)

// A read of balances now lists its accounts again afterwards: a transaction
// that committed between the listing and the read, on an account created
// after the listing, is then read in full, not half. Accounts that keep
// appearing end in Aborted.
func TestBalancesOfSeesAccountsCreatedMeanwhile(t *testing.T) {
	e := newEnv(t, dbtest.Postgres(), ledger.Options{})
	ctx := context.Background()
	e.account("mint", "USD", true, 1)
	e.account("listed", "USD", false, 1)
	named := func(names ...string) ([]*ledger.Account, error) {
		found, err := e.svc.AccountsByName(ctx, names)
		var out []*ledger.Account
		for _, a := range found {
			if a != nil {
				out = append(out, a)
			}
		}
		return out, err
	}
	calls := 0
	accounts, held, err := e.svc.BalancesOf(ctx, zeroTime, func() ([]*ledger.Account, error) {
		calls++
		found, err := named("listed", "new")
		if calls == 1 { // after this listing: a new account, and a transaction on both
			e.account("new", "USD", false, 1)
			e.post(ledger.PostRequest{IdempotencyKey: "both", Kind: "transfer", Postings: []ledger.PostingRequest{
				{Account: "mint", Side: ledger.Debit, Amount: decimal.NewFromInt(2)},
				{Account: "listed", Side: ledger.Credit, Amount: decimal.NewFromInt(1)},
				{Account: "new", Side: ledger.Credit, Amount: decimal.NewFromInt(1)},
			}})
		}
		return found, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(accounts) != 2 || !held["listed"].Equal(decimal.NewFromInt(1)) || !held["new"].Equal(decimal.NewFromInt(1)) {
		t.Errorf("read %d accounts, balances %v: want the transaction on both", len(accounts), held)
	}

	var grown []string
	_, _, err = e.svc.BalancesOf(ctx, zeroTime, func() ([]*ledger.Account, error) {
		grown = append(grown, fmt.Sprintf("grow-%d", len(grown)))
		e.account(grown[len(grown)-1], "USD", false, 1)
		return named(grown...)
	})
	if ledger.KindOf(err) != ledger.Aborted {
		t.Errorf("accounts appearing at every listing: %v, want Aborted", err)
	}
}
