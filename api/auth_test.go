package api

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/coinledger/coinledger/ledger"
)

// A tokens file's errors name the line and what is wrong with it, never a
// token: not even one written where a scope or the name belongs.
func TestParseTokens(t *testing.T) {
	const secret = "s3cr3t-t0ken-0123456789"
	tests := []struct {
		name, file, wantErr string
	}{
		{"two callers, comments and blank lines", "# callers\n\niap iap " + secret + "\nfin finance,admin other-token-0123456789\n", ""},
		{"a field missing", "iap " + secret + "\n", "line 1: want"},
		{"a scope misspelt", "# c\nfin finanse " + secret + "\n", `line 2: unknown scope "finanse"`},
		{"the token where the scopes belong", "iap " + secret + " iap\n", "line 1: unknown scope in the second field"},
		{"a short token", "iap iap short\n", "line 1: token shorter than 16 characters"},
		{"one token for two callers", "a iap " + secret + "\nb gifting " + secret + "\n", "line 2: token already given"},
		{"no callers", "# nobody\n", "no callers"},
	}
	for _, tt := range tests {
		toks, err := ParseTokens(strings.NewReader(tt.file))
		switch {
		case tt.wantErr == "" && (err != nil || len(toks.byDigest) != 2):
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: %v, want %q", tt.name, err, tt.wantErr)
		case err != nil && strings.Contains(err.Error(), secret):
			t.Errorf("%s: the error shows the token: %v", tt.name, err)
		}
	}
}

// Whatever the file, ParseTokens does not panic and its error shows no field
// long enough to be a token.
func FuzzParseTokens(f *testing.F) {
	f.Add("iap iap s3cr3t-t0ken-0123456789\n")
	f.Add("iap s3cr3t-t0ken-0123456789 iap\n")
	f.Add("fin finance,s3cr3t-t0ken-0123456789 x\n# c\n\n")
	f.Fuzz(func(t *testing.T, file string) {
		_, err := ParseTokens(strings.NewReader(file))
		if err == nil {
			return
		}
		// The fields as ParseTokens splits them, and the scopes within them.
		for _, field := range strings.FieldsFunc(file, func(r rune) bool { return unicode.IsSpace(r) || r == ',' }) {
			if len(field) >= minTokenLen && strings.Contains(err.Error(), field) {
				t.Fatalf("error %q shows %q, which could be a token", err, field)
			}
		}
	})
}

// Every request's log line names its caller, also one refused for its
// scopes; it used to name none, the log being written outside the context
// that authentication adds the caller to.
func TestRequestLogNamesCaller(t *testing.T) {
	toks, err := ParseTokens(strings.NewReader("gifting-svc gifting tok-gift-0123456789\nportal creator-portal tok-portal-0123456789\n"))
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	s := &Server{cfg: Config{Tokens: toks}, log: slog.New(slog.NewTextHandler(&logged, nil)),
		Metrics: newMetrics(func() ledger.CommitStats { return ledger.CommitStats{} })}
	info := &grpc.UnaryServerInfo{FullMethod: "/coinledger.v1.GiftService/SendGift"}
	call := func(token string) {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
		s.observe(ctx, nil, info, func(ctx context.Context, req any) (any, error) {
			return s.authorize(ctx, req, info, func(context.Context, any) (any, error) { return nil, nil })
		})
	}
	for _, c := range []struct{ token, want string }{
		{"tok-gift-0123456789", "caller=gifting-svc"},
		{"tok-portal-0123456789", "caller=portal"},
	} {
		logged.Reset()
		call(c.token)
		if !strings.Contains(logged.String(), c.want) {
			t.Errorf("log %q lacks %q", logged.String(), c.want)
		}
	}
}
