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
