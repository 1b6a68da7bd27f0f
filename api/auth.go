package api

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Scopes a caller may hold.
const (
	ScopeIAP           = "iap"            // purchases, promo grants, refunds
	ScopeGifting       = "gifting"        // gifts and their reversal, wallets
	ScopeCreatorPortal = "creator-portal" // creator earnings
	ScopeFinance       = "finance"        // every read
	ScopeAdmin         = "admin"          // reference data, viewer blocking, the release job
	ScopeCommerce      = "commerce"       // live-shopping sales
	ScopeTreasury      = "treasury"       // treasury accounts and transfers between them
)

var knownScopes = map[string]bool{ScopeIAP: true, ScopeGifting: true, ScopeCreatorPortal: true, ScopeFinance: true, ScopeAdmin: true,
	ScopeCommerce: true, ScopeTreasury: true}

// scopesFor names, per service or per method, the scopes that may call it;
// a method's own entry wins over its service's. Reflection is open to any
// authenticated caller; health needs no credentials at all.
var scopesFor = map[string][]string{
	"/coinledger.v1.PurchaseService/":            {ScopeIAP},
	"/coinledger.v1.GiftService/":                {ScopeGifting},
	"/coinledger.v1.GiftService/GetWallet":       {ScopeGifting, ScopeIAP, ScopeFinance},
	"/coinledger.v1.EarningsService/":            {ScopeCreatorPortal, ScopeFinance},
	"/coinledger.v1.LedgerService/":              {ScopeFinance},
	"/coinledger.v1.CatalogService/":             {ScopeAdmin},
	"/coinledger.v1.CatalogService/GetCoinPack":  {ScopeAdmin, ScopeFinance},
	"/coinledger.v1.CatalogService/GetGift":      {ScopeAdmin, ScopeFinance},
	"/coinledger.v1.CatalogService/GetShareRule": {ScopeAdmin, ScopeFinance},
	"/coinledger.v1.AdminService/":               {ScopeAdmin},
	"/coinledger.v1.LiveShoppingService/":        {ScopeCommerce},
	"/coinledger.v1.TreasuryService/":            {ScopeTreasury},
	"/grpc.reflection.v1.ServerReflection/":      nil,
	"/grpc.reflection.v1alpha.ServerReflection/": nil,
}

func isHealth(method string) bool { return strings.HasPrefix(method, "/grpc.health.v1.Health/") }

// allowed reports whether a caller with scopes may call method, and whether
// the method is known at all.
func allowed(method string, scopes map[string]bool) (ok, known bool) {
	need, known := scopesFor[method]
	if !known {
		service := method[:strings.LastIndexByte(method, '/')+1]
		need, known = scopesFor[service]
	}
	if !known {
		return false, false
	}
	if need == nil {
		return true, true
	}
	for _, s := range need {
		if scopes[s] {
			return true, true
		}
	}
	return false, true
}

// Caller is an authenticated client.
type Caller struct {
	Name   string
	Scopes map[string]bool
}

// Tokens maps bearer tokens, by their SHA-256, to callers; the tokens
// themselves are not kept.
type Tokens struct {
	byDigest map[[32]byte]*Caller
}

// Callers counts the tokens.
func (t *Tokens) Callers() int { return len(t.byDigest) }

// minTokenLen is the shortest token accepted.
const minTokenLen = 16

// ParseTokens reads one caller per line: "name scope[,scope...] token".
// Blank lines and lines starting with # are skipped. Errors name the line,
// never the token.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{byDigest: map[[32]byte]*Caller{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("tokens line %d: want \"name scope[,scope...] token\"", n)
		}
		c := &Caller{Name: f[0], Scopes: map[string]bool{}}
		for _, s := range strings.Split(f[1], ",") {
			if !knownScopes[s] {
				if len(s) >= minTokenLen { // perhaps the token, in the wrong field
					return nil, fmt.Errorf("tokens line %d: unknown scope in the second field", n)
				}
				return nil, fmt.Errorf("tokens line %d: unknown scope %q", n, s)
			}
			c.Scopes[s] = true
		}
		if len(f[2]) < minTokenLen {
			return nil, fmt.Errorf("tokens line %d: token shorter than %d characters", n, minTokenLen)
		}
		d := sha256.Sum256([]byte(f[2]))
		if _, dup := t.byDigest[d]; dup {
			return nil, fmt.Errorf("tokens line %d: token already given to another caller", n)
		}
		t.byDigest[d] = c
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t.byDigest) == 0 {
		return nil, fmt.Errorf("tokens: no callers")
	}
	return t, nil
}

// callerSlot lets the outermost interceptor, which logs every request, learn
// the caller that authentication finds further in: a context passes values
// inward only.
type callerSlot struct{ caller *Caller }

type callerSlotKey struct{}

// authenticate checks the bearer token and the caller's scope for method.
func (t *Tokens) authenticate(ctx context.Context, method string) error {
	if isHealth(method) {
		return nil
	}
	// Only this header: FromIncomingContext would copy all of the metadata.
	values := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(values) != 1 || !strings.HasPrefix(values[0], "Bearer ") {
		return status.Error(codes.Unauthenticated, "a bearer token is required")
	}
	c, ok := t.byDigest[sha256.Sum256([]byte(strings.TrimPrefix(values[0], "Bearer ")))]
	if !ok {
		return status.Error(codes.Unauthenticated, "unknown bearer token")
	}
	if who, ok := ctx.Value(callerSlotKey{}).(*callerSlot); ok {
		who.caller = c // logged even when refused for its scopes
	}
	ok, known := allowed(method, c.Scopes)
	if !known {
		return status.Error(codes.Unimplemented, "unknown method "+method)
	}
	if !ok {
		return status.Errorf(codes.PermissionDenied, "caller %s may not call %s", c.Name, method)
	}
	return nil
}

// Bearer is a client's per-RPC credentials: it sends Token with every call.
// Plaintext allows that without TLS (loopback, tests); an empty Token sends
// nothing.
type Bearer struct {
	Token     string
	Plaintext bool
}

func (b Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if b.Token == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + b.Token}, nil
}

func (b Bearer) RequireTransportSecurity() bool { return !b.Plaintext }
