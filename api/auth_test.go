package api

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/coinledger/coinledger/ledger"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
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

// loggingServer is a server with the callers of tokens whose log is the
// returned buffer, for its interceptors alone.
func loggingServer(t *testing.T, tokens string) (*Server, *bytes.Buffer) {
	t.Helper()
	toks, err := ParseTokens(strings.NewReader(tokens))
	if err != nil {
		t.Fatal(err)
	}
	logged := &bytes.Buffer{}
	s := &Server{log: slog.New(slog.NewTextHandler(logged, nil)), Metrics: newMetrics(func() ledger.CommitStats { return ledger.CommitStats{} })}
	s.SetTokens(toks)
	return s, logged
}

// Every request's log line names its caller, also one refused for its
// scopes; it used to name none, the log being written outside the context
// that authentication adds the caller to.
func TestRequestLogNamesCaller(t *testing.T) {
	s, logged := loggingServer(t, "gifting-svc gifting tok-gift-0123456789\nportal creator-portal tok-portal-0123456789\n")
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

// fakeStream is a server stream that only has a context.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }

// A balancer's health probes that succeed are logged at debug only, not
// among the requests; one that fails is logged as any request.
func TestHealthProbesStayOutOfTheRequestLog(t *testing.T) {
	s, logged := loggingServer(t, "finance finance tok-fin-0123456789\n")
	info := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	for _, c := range []struct {
		err    error
		logged bool
	}{{nil, false}, {status.Error(codes.NotFound, "unknown service"), true}} {
		logged.Reset()
		s.observe(context.Background(), nil, info, func(context.Context, any) (any, error) { return nil, c.err })
		if got := strings.Contains(logged.String(), "msg=rpc"); got != c.logged {
			t.Errorf("health check ending %v: logged %v, want %v (%q)", status.Code(c.err), got, c.logged, logged.String())
		}
	}
}

// Streaming calls (reflection, health's Watch) go through the same logging,
// metrics, panic recovery and authentication as unary ones.
func TestStreamsAreObserved(t *testing.T) {
	s, logged := loggingServer(t, "finance finance tok-fin-0123456789\n")
	info := &grpc.StreamServerInfo{FullMethod: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"}
	call := func(token string, handler grpc.StreamHandler) error {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
		return s.observeStream(nil, fakeStream{ctx: ctx}, info, func(srv any, ss grpc.ServerStream) error {
			return s.recoverStream(srv, ss, info, func(srv any, ss grpc.ServerStream) error {
				return s.authorizeStream(srv, ss, info, handler)
			})
		})
	}
	for _, c := range []struct {
		name, token string
		handler     grpc.StreamHandler
		code        codes.Code
		log         []string
	}{
		{"served", "tok-fin-0123456789", func(any, grpc.ServerStream) error { return nil }, codes.OK,
			[]string{"msg=rpc", "code=OK", "caller=finance"}},
		{"a panic", "tok-fin-0123456789", func(any, grpc.ServerStream) error { panic("boom") }, codes.Internal,
			[]string{"msg=panic", "panic=boom", "code=Internal", "caller=finance"}},
		{"no token", "nope", func(any, grpc.ServerStream) error { return nil }, codes.Unauthenticated,
			[]string{"msg=rpc", "code=Unauthenticated"}},
	} {
		logged.Reset()
		if err := call(c.token, c.handler); status.Code(err) != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
		for _, want := range c.log {
			if !strings.Contains(logged.String(), want) {
				t.Errorf("%s: log %q lacks %q", c.name, logged.String(), want)
			}
		}
	}
	var page bytes.Buffer
	s.Metrics.render(&page)
	for _, code := range []string{"OK", "Internal", "Unauthenticated"} {
		want := `coinledger_rpc_requests_total{method="` + info.FullMethod + `",code="` + code + `"} 1`
		if !strings.Contains(page.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, page.String())
		}
	}
}

// A write's log line names what it is idempotent on, so that a caller's
// question about a request can be answered from the log; a read's names
// none, and an oversized key is cut.
func TestRequestLogNamesKey(t *testing.T) {
	s, logged := loggingServer(t, "everything iap,gifting,finance tok-all-0123456789\n")
	for _, c := range []struct {
		method string
		req    any
		want   string
	}{
		{"/coinledger.v1.GiftService/SendGift", &pb.SendGiftRequest{IdempotencyKey: "gift-42"}, "key=gift-42"},
		{"/coinledger.v1.PurchaseService/Purchase", &pb.PurchaseRequest{StoreTransactionId: "apple-7"}, "key=apple-7"},
		{"/coinledger.v1.PurchaseService/Refund", &pb.RefundRequest{StoreTransactionId: "apple-7", RefundId: "refund-9"}, "key=refund-9"},
		{"/coinledger.v1.GiftService/GetWallet", &pb.GetWalletRequest{User: "v1"}, ""},
		{"/coinledger.v1.GiftService/SendGift", &pb.SendGiftRequest{IdempotencyKey: strings.Repeat("k", 10_000)}, "key=" + strings.Repeat("k", maxLoggedKey) + "..."},
	} {
		logged.Reset()
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer tok-all-0123456789"))
		info := &grpc.UnaryServerInfo{FullMethod: c.method}
		s.observe(ctx, c.req, info, func(ctx context.Context, req any) (any, error) {
			return s.authorize(ctx, req, info, func(context.Context, any) (any, error) { return nil, nil })
		})
		line := logged.String()
		switch {
		case c.want == "" && strings.Contains(line, "key="):
			t.Errorf("%s: a read's log line names a key: %s", c.method, line)
		case c.want != "" && !strings.Contains(line, c.want+"\n") && !strings.Contains(line, c.want+" "):
			t.Errorf("%s: log %q lacks %q", c.method, line, c.want)
		}
	}
}
