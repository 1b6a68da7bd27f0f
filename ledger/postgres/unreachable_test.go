package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger/postgres"
)

// What counts as the database being out of reach, and what is a fault of
// configuration or of the request.
func TestUnreachable(t *testing.T) {
	ctx := context.Background()
	_, refused := pgconn.Connect(ctx, "postgres://nobody@127.0.0.1:1/x?connect_timeout=5")
	u, err := url.Parse(dbtest.Postgres().NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/no_such_database"
	_, noDatabase := pgconn.Connect(ctx, u.String())
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"no such database", noDatabase, false},
		{"wrong password", &pgconn.PgError{Code: "28P01"}, false},
		{"administrator shut it down", &pgconn.PgError{Code: "57P01"}, true},
		{"crashed", &pgconn.PgError{Code: "57P02"}, true},
		{"starting up", &pgconn.PgError{Code: "57P03"}, true},
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"connection closed", fmt.Errorf("batch: %w", pgconn.ErrConnClosed), true},
		{"cut mid-read", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"serialization failure", &pgconn.PgError{Code: "40001"}, false},
		{"check constraint", &pgconn.PgError{Code: "23514"}, false},
		{"a bug of ours", errors.New("unexpected nil"), false},
	} {
		if tc.err == nil {
			t.Fatalf("%s: no error to classify", tc.name)
		}
		if got := postgres.Unreachable(tc.err); got != tc.want {
			t.Errorf("%s: unreachable = %v, want %v (%v)", tc.name, got, tc.want, tc.err)
		}
	}
}
