package postgres

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "40P01"}, true},
		{fmt.Errorf("commit: %w", &pgconn.PgError{Code: "40001"}), true},
		{retryableConflict{&pgconn.PgError{Code: "23505"}}, true},
		{&pgconn.PgError{Code: "23505"}, false}, // only the batch path knows a duplicate key is a race
		{&pgconn.PgError{Code: "42501"}, false},
		{errors.New("connection reset"), false},
	}
	for _, tt := range tests {
		if got := retryable(tt.err); got != tt.want {
			t.Errorf("retryable(%v) = %v", tt.err, got)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, c := range []struct {
		prefix, want string
		ok           bool
	}{
		{"DIAMOND:pending:c1:", "DIAMOND:pending:c1;", true},
		{"COIN", "COIO", true},
		{"a\x7f", "b", true},
		{"\x7f", "", false},
		{"", "", false},
	} {
		got, ok := prefixEnd(c.prefix)
		if got != c.want || ok != c.ok {
			t.Errorf("prefixEnd(%q) = %q, %v; want %q, %v", c.prefix, got, ok, c.want, c.ok)
		}
	}
}
