package postgres_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
)

// refundLot builds a refund of units of a USD lot, planned when before of
// its units had been refunded: unspent coins go back to issuance with their
// deferred value, the spent part's value is a loss.
func refundLot(key string, lot uuid.UUID, before, units, unspent int64, unspentValue, gross string) ledger.PostRequest {
	u := decimal.NewFromInt(unspent)
	v := decimal.RequireFromString(unspentValue)
	g := decimal.RequireFromString(gross)
	req := ledger.PostRequest{IdempotencyKey: key, Kind: "refund",
		RefundLot: &ledger.LotRefund{Lot: lot, Holder: "wallet", ValueAccount: "deferred:USD",
			Units: decimal.NewFromInt(units), Unspent: u, UnspentValue: v, RefundedBefore: decimal.NewFromInt(before)},
		Postings: []ledger.PostingRequest{{Account: "cash:USD", Side: ledger.Credit, Amount: g}}}
	if u.Sign() > 0 {
		req.Postings = append(req.Postings,
			ledger.PostingRequest{Account: "wallet", Side: ledger.Debit, Amount: u},
			ledger.PostingRequest{Account: "issued", Side: ledger.Credit, Amount: u})
	}
	if v.Sign() > 0 {
		req.Postings = append(req.Postings, ledger.PostingRequest{Account: "deferred:USD", Side: ledger.Debit, Amount: v})
	}
	if loss := g.Sub(v); loss.Sign() > 0 {
		req.Postings = append(req.Postings, ledger.PostingRequest{Account: "loss", Side: ledger.Debit, Amount: loss})
	}
	return req
}

func TestLotRefundAndRestore(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := lotEnv(t, b)
		e.account("loss", "USD", true, 1)
		ctx := context.Background()
		lot := e.post(buyLot("buy", 10, "USD", "5.00")).ID
		spent := e.post(spend("spend-4", 4))

		// The lot has 6 unspent coins worth 3.00. A refund planned on other
		// figures is refused as stale, and posts nothing.
		if _, err := e.svc.Post(ctx, refundLot("stale", lot, 0, 6, 5, "2.50", "3.00")); !errors.Is(err, ledger.ErrLotChanged) || ledger.KindOf(err) != ledger.Aborted {
			t.Errorf("stale refund: %v", err)
		}
		if _, err := e.svc.Post(ctx, refundLot("lies", lot, 0, 6, 6, "3.00", "3.00")); err != nil {
			t.Fatalf("refund 6 unspent: %v", err)
		}
		e.wantBalance("wallet", "0")
		e.wantBalance("deferred:USD", "0.00")
		// A refund planned before that one is stale too: its shares of the
		// store's amounts follow from the units refunded before it.
		if _, err := e.svc.Post(ctx, refundLot("planned-before", lot, 0, 1, 0, "0", "0.50")); !errors.Is(err, ledger.ErrLotChanged) {
			t.Errorf("refund planned before another: %v", err)
		}
		// 4 spent coins are left to refund; 5 is more than was bought.
		if _, err := e.svc.Post(ctx, refundLot("beyond", lot, 6, 5, 0, "0", "2.50")); ledger.KindOf(err) != ledger.FailedPrecondition {
			t.Errorf("refund beyond what was bought: %v", err)
		}
		// Reversing the spend puts 4 coins back into the lot: allowed, 4 are
		// not refunded.
		undo, err := e.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: "undo-spend", TransactionID: spent.ID})
		if err != nil {
			t.Fatalf("reverse spend: %v", err)
		}
		e.wantBalance("wallet", "4")
		e.wantBalance("deferred:USD", "2.00")
		// Refund the rest (unspent again), then reverse that refund.
		last := e.post(refundLot("rest", lot, 6, 4, 4, "2.00", "2.00"))
		e.wantBalance("wallet", "0")
		if _, err := e.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: "undo-rest", TransactionID: last.ID}); err != nil {
			t.Fatalf("reverse refund: %v", err)
		}
		e.wantBalance("wallet", "4")
		e.wantBalance("deferred:USD", "2.00")
		// Spend 4 again, refund all 4 as spent (a loss), and the spend can no
		// longer be reversed: its coins' purchase was refunded.
		again := e.post(spend("spend-again", 4))
		e.post(refundLot("spent", lot, 6, 4, 0, "0", "2.00"))
		e.wantBalance("loss", "-2.00") // credit-normal in this env
		_, err = e.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: "undo-again", TransactionID: again.ID})
		var refused *ledger.LotRefundedError
		if !errors.Is(err, ledger.ErrLotRefunded) || !errors.As(err, &refused) || !slices.Equal(refused.Lots, []uuid.UUID{lot}) || ledger.KindOf(err) != ledger.FailedPrecondition {
			t.Errorf("reversing a spend of refunded coins: %v, want lot %s named", err, lot)
		}
		// Reversing the first reversal would re-take 4 coins from the wallet
		// and the lot's restored units, which were spent and refunded since.
		if _, err := e.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: "undo-undo", TransactionID: undo.ID}); !errors.Is(err, ledger.ErrInsufficientFunds) {
			t.Errorf("reversing a reversal: %v", err)
		}
		var units, left, refunded decimal.Decimal
		if err := e.owner().QueryRow(ctx, `SELECT units, units_left, refunded FROM lots WHERE id = $1`, lot).Scan(&units, &left, &refunded); err != nil {
			t.Fatal(err)
		}
		if !units.Equal(decimal.NewFromInt(10)) || !left.IsZero() || !refunded.Equal(decimal.NewFromInt(10)) {
			t.Errorf("lot: units %s left %s refunded %s, want 10 0 10", units, left, refunded)
		}
		e.verifyClean()
	})
}
