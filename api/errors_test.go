package api

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/coinledger/coinledger/ledger"
)

// What a caller sees of a database out of reach or of a fault of ours: the
// code and a generic message; the cause, which names the database's socket
// and user, goes to the log only.
func TestToStatusKeepsCausesInTheLog(t *testing.T) {
	cause := errors.New("failed to connect to `user=coinledger database=coinledger`: /tmp/coinledger-pg-1/.s.PGSQL.5432")
	for _, tc := range []struct {
		kind ledger.Kind
		code codes.Code
	}{
		{ledger.Unavailable, codes.Unavailable},
		{ledger.Internal, codes.Internal},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			var logged bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logged, nil))
			err := toStatus(context.Background(), log, "/coinledger.v1.GiftService/SendGift",
				&ledger.Error{Op: "postgres.CommitBatch", Kind: tc.kind, Err: cause})
			st, _ := status.FromError(err)
			if st.Code() != tc.code || strings.Contains(st.Message(), "coinledger-pg") || strings.Contains(st.Message(), "user=") {
				t.Errorf("caller sees %v %q", st.Code(), st.Message())
			}
			if !strings.Contains(logged.String(), "coinledger-pg-1") {
				t.Errorf("the cause is not logged: %s", logged.String())
			}
		})
	}
}

// A refusal's message is the caller's field, then what the domain said,
// without the domain's operations or its own names for fields.
func TestCallerMessage(t *testing.T) {
	post := func(field string, err error) error { return &ledger.Error{Op: "ledger.Post", Field: field, Err: err} }
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"a reversal's target, renamed for the request",
			protoFields(&ledger.Error{Op: "economy.ReverseGift", Field: "gift_tx", Err: post("transaction_id", ledger.ErrAlreadyReversed)}, "gift_tx", "gift_transaction_id"),
			"gift_transaction_id: transaction has already been reversed"},
		{"an overdraft, each layer's words",
			&ledger.Error{Op: "economy.SendGift", Field: "coins", Message: "viewer v has fewer than 9 coins",
				Err: &ledger.Error{Op: "ledger.Post", Field: "postings[0].account", Message: "COIN:wallet:v would be -4 COIN", Err: ledger.ErrInsufficientFunds}},
			"coins: viewer v has fewer than 9 coins: COIN:wallet:v would be -4 COIN: balance may not go negative"},
		{"bad input", &ledger.Error{Op: "ledger.Entries", Kind: ledger.Invalid, Field: "limit", Message: "must be between 1 and 1000"},
			"limit: must be between 1 and 1000"},
		{"a cause from outside the domain", &ledger.Error{Op: "economy.Purchase", Field: "amount_paid", Err: errors.New("plain cause")},
			"amount_paid: plain cause"},
		{"only a kind", &ledger.Error{Op: "x", Kind: ledger.NotFound, Field: "id"}, "id: not found"},
		{"no field", ledger.ErrRetriesExhausted, ledger.ErrRetriesExhausted.Message},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := callerMessage(tc.err); got != tc.want {
				t.Errorf("callerMessage = %q, want %q", got, tc.want)
			}
		})
	}
}
