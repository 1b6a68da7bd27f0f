package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/postgres"
)

// A read of balances now lists its accounts again afterwards: a transaction
// that committed between the listing and the read, on an account created
// after the listing, is then read in full, not half.
func TestReadBalancesSeesAccountsCreatedMeanwhile(t *testing.T) {
	db, _ := dbtest.Postgres().Open(t, postgres.Config{})
	svc := ledger.NewService(db, ledger.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(svc.Close)
	ctx := context.Background()
	if _, err := svc.CreateAsset(ctx, ledger.Asset{Code: "USD", Scale: 2}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []ledger.Account{
		{Name: "mint", Asset: "USD", Normal: ledger.Debit, AllowNegative: true},
		{Name: "listed", Asset: "USD", Normal: ledger.Credit},
	} {
		if _, err := svc.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{ledger: svc}
	calls := 0
	list := func() ([]*ledger.Account, error) {
		calls++
		found, err := s.accountsNamed(ctx, []string{"listed", "new"})
		if calls == 1 { // after this listing: a new account, and a transaction on both
			if _, err := svc.CreateAccount(ctx, ledger.Account{Name: "new", Asset: "USD", Normal: ledger.Credit}); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Post(ctx, ledger.PostRequest{IdempotencyKey: "both", Kind: "transfer", Postings: []ledger.PostingRequest{
				{Account: "mint", Side: ledger.Debit, Amount: decimal.NewFromInt(2)},
				{Account: "listed", Side: ledger.Credit, Amount: decimal.NewFromInt(1)},
				{Account: "new", Side: ledger.Credit, Amount: decimal.NewFromInt(1)},
			}}); err != nil {
				t.Fatal(err)
			}
		}
		return found, err
	}
	accounts, held, err := s.readBalances(ctx, time.Time{}, list)
	if err != nil {
		t.Fatal(err)
	}
	if len(accounts) != 2 || !held["listed"].Equal(decimal.NewFromInt(1)) || !held["new"].Equal(decimal.NewFromInt(1)) {
		t.Errorf("read %d accounts, balances %v: want the transaction on both", len(accounts), held)
	}

	// Accounts that keep appearing: Aborted, for the caller to retry.
	var grown []string
	_, _, err = s.readBalances(ctx, time.Time{}, func() ([]*ledger.Account, error) {
		grown = append(grown, fmt.Sprintf("grow-%d", len(grown)))
		if _, err := svc.CreateAccount(ctx, ledger.Account{Name: grown[len(grown)-1], Asset: "USD", Normal: ledger.Credit}); err != nil {
			t.Fatal(err)
		}
		return s.accountsNamed(ctx, grown)
	})
	if ledger.KindOf(err) != ledger.Aborted {
		t.Errorf("accounts appearing at every listing: %v, want Aborted", err)
	}
}
