package ledger

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// An amount arrives as text: ParseDecimal reads it, then CheckAmount holds it
// to its asset (what the API does with a Money).
func TestParseAmount(t *testing.T) {
	usd := Asset{Code: "USD", Scale: 2}
	coin := Asset{Code: "COIN", Scale: 0}
	tests := []struct {
		asset   Asset
		in      string
		want    string // "" when refused
		wantMsg string
	}{
		{usd, "19.99", "19.99", ""},
		{usd, "19.90", "19.9", ""},
		{usd, "0.01", "0.01", ""},
		{usd, "0", "", "must be positive"},
		{usd, "0.00", "", "must be positive"},
		{usd, "-1", "", "must be positive"},
		{usd, "1.001", "", "3 decimal places; USD allows 2"},
		{usd, "1e3", "", "decimal number such as"},
		{usd, "NaN", "", "decimal number such as"},
		{usd, "Infinity", "", "decimal number such as"},
		{usd, " 1", "", "decimal number such as"},
		{usd, "+1", "", "decimal number such as"},
		{usd, "--1", "", "decimal number such as"},
		{usd, "", "", "decimal number such as"},
		{usd, "1.", "", "decimal number such as"},
		{usd, ".5", "", "decimal number such as"},
		{usd, "1.5\n", "", "decimal number such as"},
		{usd, "1." + strings.Repeat("0", 19), "", "more than 18 decimal places"},
		{usd, "1." + strings.Repeat("0", 18), "1", ""},
		{usd, strings.Repeat("9", 36), strings.Repeat("9", 36), ""},
		{usd, strings.Repeat("9", 37), "", "37 integer digits; USD allows at most 36"},
		{coin, "1321", "1321", ""},
		{coin, "0.5", "", "1 decimal places; COIN allows 0"},
		{coin, strings.Repeat("1", 38), strings.Repeat("1", 38), ""},
		{coin, strings.Repeat("1", 39), "", "more than 38 digits"},
		{coin, "-" + strings.Repeat("1", 39), "", "more than 38 digits"},
		{coin, strings.Repeat("1", 30) + "." + strings.Repeat("0", 9), "", "more than 38 digits"},
	}
	for _, tt := range tests {
		got, err := ParseDecimal("op", "amount", tt.in)
		if err == nil {
			err = tt.asset.CheckAmount("op", "amount", got)
		}
		if tt.want == "" {
			if err == nil {
				t.Errorf("%s %q: accepted as %s, want refusal", tt.asset.Code, tt.in, got)
				continue
			}
			if KindOf(err) != Invalid || FieldOf(err) != "amount" || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("%s %q: got %v (kind %v, field %q), want Invalid on amount saying %q", tt.asset.Code, tt.in, err, KindOf(err), FieldOf(err), tt.wantMsg)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("%s %q: got %s, %v; want %s", tt.asset.Code, tt.in, got, err, tt.want)
		}
	}
}

// decimalGrammar is what ParseDecimal accepts, written independently of it.
var decimalGrammar = regexp.MustCompile(`^-?[0-9]{1,38}(\.[0-9]{1,18})?$`)

func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"19.99", "0", "-5", "1e9", "+1", "NaN", "0.001", "1.", ".5", "-",
		strings.Repeat("9", 38), strings.Repeat("9", 39), "1." + strings.Repeat("5", 19), "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDecimal("op", "amount", s)
		whole, frac, _ := strings.Cut(strings.TrimPrefix(s, "-"), ".")
		fits := decimalGrammar.MatchString(s) && len(whole)+len(frac) <= MaxPrecision
		if err != nil {
			if KindOf(err) != Invalid || FieldOf(err) != "amount" {
				t.Fatalf("%q: refusal %v is not Invalid on amount", s, err)
			}
			if fits {
				t.Fatalf("%q refused: %v", s, err)
			}
			return
		}
		if !fits {
			t.Fatalf("%q accepted as %s", s, d)
		}
		if want := decimal.RequireFromString(s); !d.Equal(want) {
			t.Fatalf("%q read as %s, want %s", s, d, want)
		}
		if back, err := ParseDecimal("op", "amount", d.String()); err != nil || !back.Equal(d) {
			t.Fatalf("%q: round trip %s -> %v, %v", s, d, back, err)
		}
	})
}

func TestValidateAccountName(t *testing.T) {
	for name, ok := range map[string]bool{
		"creator:42:diamonds:available":      true,
		"Receivable:AppStore:apple":          true,
		"COIN:issued":                        true,
		"a":                                  true,
		"":                                   false,
		"a::b":                               false,
		":a":                                 false,
		"a b":                                false,
		"a:b:":                               false,
		"naïve":                              false,
		strings.Repeat("a", MaxNameLength):   true,
		strings.Repeat("a", MaxNameLength+1): false,
	} {
		err := ValidateAccountName("op", "name", name)
		if (err == nil) != ok {
			t.Errorf("%q: err %v, want ok=%v", name, err, ok)
		}
		if err != nil && (KindOf(err) != Invalid || FieldOf(err) != "name") {
			t.Errorf("%q: %v is not Invalid on name", name, err)
		}
	}
}

// The grammars the validators implement by hand, as regular expressions.
var (
	accountNameGrammar = regexp.MustCompile(`^[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*$`)
	nameSegmentGrammar = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)
)

func FuzzValidateAccountName(f *testing.F) {
	for _, s := range []string{"creator:42:diamonds:available", "a::b", ":a", "a:", ":", "", "a", "é", "a b", "A-Z_0.9", "a:\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateAccountName("op", "name", name)
		if want := len(name) <= MaxNameLength && accountNameGrammar.MatchString(name); (err == nil) != want {
			t.Fatalf("ValidateAccountName(%q): %v, want ok=%v", name, err, want)
		}
		if got, want := IsNameSegment(name), nameSegmentGrammar.MatchString(name); got != want {
			t.Fatalf("IsNameSegment(%q) = %v, want %v", name, got, want)
		}
	})
}

func TestPostRequestValidate(t *testing.T) {
	one := decimal.NewFromInt(1)
	ok := func() PostRequest {
		return PostRequest{IdempotencyKey: "k", Kind: "transfer", Postings: []PostingRequest{
			{Account: "a", Side: Debit, Amount: one}, {Account: "b", Side: Credit, Amount: one}}}
	}
	tests := []struct {
		name  string
		edit  func(*PostRequest)
		field string
	}{
		{"valid", func(*PostRequest) {}, ""},
		{"no key", func(r *PostRequest) { r.IdempotencyKey = "" }, "idempotency_key"},
		{"long key", func(r *PostRequest) { r.IdempotencyKey = strings.Repeat("k", 201) }, "idempotency_key"},
		{"key with space", func(r *PostRequest) { r.IdempotencyKey = "a b" }, "idempotency_key"},
		{"bad kind", func(r *PostRequest) { r.Kind = "Transfer!" }, "kind"},
		{"metadata not object", func(r *PostRequest) { r.Metadata = []byte(`[1]`) }, "metadata"},
		{"metadata with trailing data", func(r *PostRequest) { r.Metadata = []byte(`{"a":1} {"b":2}`) }, "metadata"},
		{"metadata null", func(r *PostRequest) { r.Metadata = []byte(`null`) }, "metadata"},
		{"metadata with NUL", func(r *PostRequest) { r.Metadata = []byte(`{"a":"x\u0000y"}`) }, "metadata"},
		{"metadata too large", func(r *PostRequest) { r.Metadata = []byte(`{"a":"` + strings.Repeat("x", MaxMetadataBytes) + `"}`) }, "metadata"},
		{"one posting", func(r *PostRequest) { r.Postings = r.Postings[:1] }, "postings"},
		{"too many postings", func(r *PostRequest) {
			for len(r.Postings) <= MaxPostings {
				r.Postings = append(r.Postings, r.Postings[0])
			}
		}, "postings"},
		{"bad account", func(r *PostRequest) { r.Postings[1].Account = "a b" }, "postings[1].account"},
		{"bad side", func(r *PostRequest) { r.Postings[0].Side = 0 }, "postings[0].side"},
		{"zero amount", func(r *PostRequest) { r.Postings[1].Amount = decimal.Zero }, "postings[1].amount"},
		{"negative amount", func(r *PostRequest) { r.Postings[0].Amount = one.Neg() }, "postings[0].amount"},
	}
	for _, tt := range tests {
		r := ok()
		tt.edit(&r)
		err := r.validate("op")
		if tt.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if KindOf(err) != Invalid || FieldOf(err) != tt.field {
			t.Errorf("%s: got %v (field %q), want Invalid on %s", tt.name, err, FieldOf(err), tt.field)
		}
	}
}

func TestCheckBalanced(t *testing.T) {
	p := func(asset string, side Side, amt string) Posting {
		return Posting{Asset: asset, Side: side, Amount: decimal.RequireFromString(amt)}
	}
	if err := checkBalanced("op", []Posting{p("USD", Debit, "1.5"), p("USD", Credit, "1.50"), p("COIN", Debit, "3"), p("COIN", Credit, "3")}); err != nil {
		t.Fatal(err)
	}
	// Balanced in total but not per asset.
	err := checkBalanced("op", []Posting{p("USD", Debit, "1"), p("COIN", Credit, "1")})
	if KindOf(err) != Invalid || !strings.Contains(err.Error(), "USD differ by 1") {
		t.Fatalf("got %v", err)
	}
}

func TestFingerprint(t *testing.T) {
	one := decimal.NewFromInt(1)
	ps := []PostingRequest{{Account: "a", Side: Debit, Amount: one}, {Account: "b", Side: Credit, Amount: one}}
	canon := func(m string) json.RawMessage {
		c, err := canonicalMetadata("test", "metadata", json.RawMessage(m))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	base := fingerprint("transfer", time.Time{}, canon(`{"a":1,"b":2}`), nil, ps, nil)
	if string(base) != string(fingerprint("transfer", time.Time{}, canon(`{ "b":2, "a":1 }`), nil, ps, nil)) {
		t.Error("metadata key order changed the fingerprint")
	}
	ps2 := []PostingRequest{{Account: "a", Side: Debit, Amount: decimal.RequireFromString("1.0")}, {Account: "b", Side: Credit, Amount: one}}
	if string(base) != string(fingerprint("transfer", time.Time{}, []byte(`{"a":1,"b":2}`), nil, ps2, nil)) {
		t.Error("1.0 and 1 fingerprint differently")
	}
	id := uuid.New()
	for name, other := range map[string][]byte{
		"kind":     fingerprint("gift", time.Time{}, []byte(`{"a":1,"b":2}`), nil, ps, nil),
		"time":     fingerprint("transfer", time.Unix(1, 0), []byte(`{"a":1,"b":2}`), nil, ps, nil),
		"metadata": fingerprint("transfer", time.Time{}, []byte(`{"a":1}`), nil, ps, nil),
		"reverses": fingerprint("transfer", time.Time{}, []byte(`{"a":1,"b":2}`), &id, ps, nil),
		"amount":   fingerprint("transfer", time.Time{}, []byte(`{"a":1,"b":2}`), nil, []PostingRequest{ps[0], {Account: "b", Side: Credit, Amount: decimal.NewFromInt(2)}}, nil),
		"lots":     fingerprint("transfer", time.Time{}, []byte(`{"a":1,"b":2}`), nil, ps, []byte("open=0,1;")),
	} {
		if string(other) == string(base) {
			t.Errorf("changing %s kept the fingerprint", name)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	c := Cursor{RecordedAt: time.UnixMicro(1_700_000_000_123_456).UTC(), BatchSeq: 7, TxID: uuid.New(), Index: 3}
	got, err := ParseCursor("op", "page_token", c.String())
	if err != nil || got != c {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, c)
	}
	if c, err := ParseCursor("op", "page_token", ""); err != nil || !c.IsZero() {
		t.Fatalf("empty token: %+v %v", c, err)
	}
	if _, err := ParseCursor("op", "page_token", "garbage"); KindOf(err) != Invalid || FieldOf(err) != "page_token" {
		t.Fatalf("garbage token: %v", err)
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add(Cursor{RecordedAt: time.Unix(1, 0), TxID: uuid.New()}.String())
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor("op", "page_token", s)
		if err != nil {
			if KindOf(err) != Invalid {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		if !c.IsZero() && c.String() != s {
			t.Fatalf("%q parsed to %+v, renders %q", s, c, c.String())
		}
	})
}

func TestKindOf(t *testing.T) {
	err := wrap("op", "postings[0].account", ErrAccountFrozen)
	if KindOf(err) != FailedPrecondition || !errors.Is(err, ErrAccountFrozen) || FieldOf(err) != "postings[0].account" {
		t.Fatalf("kind %v field %q is %v", KindOf(err), FieldOf(err), errors.Is(err, ErrAccountFrozen))
	}
	if KindOf(errors.New("boom")) != Internal {
		t.Fatal("a foreign error must be Internal")
	}
	if got := err.Error(); got != "op: postings[0].account: account is frozen" {
		t.Fatalf("message %q", got)
	}
}

// A reversal refused for refunded lots keeps ErrLotRefunded's kind and
// identity, and names every lot in its message.
func TestLotRefundedError(t *testing.T) {
	a, b := uuid.MustParse("01a25200-0000-7000-8000-000000000001"), uuid.MustParse("01a25200-0000-7000-8000-000000000002")
	for _, tt := range []struct {
		lots []uuid.UUID
		want string
	}{
		{[]uuid.UUID{a}, "op: transaction_id: lot " + a.String() + ": a lot the transaction drew on was refunded since"},
		{[]uuid.UUID{a, b}, "op: transaction_id: lots " + a.String() + ", " + b.String() + ": a lot the transaction drew on was refunded since"},
	} {
		err := error(wrap("op", "transaction_id", &LotRefundedError{Lots: tt.lots}))
		var refused *LotRefundedError
		if !errors.Is(err, ErrLotRefunded) || KindOf(err) != FailedPrecondition || !errors.As(err, &refused) || len(refused.Lots) != len(tt.lots) {
			t.Errorf("%v: kind %v, is ErrLotRefunded %t", err, KindOf(err), errors.Is(err, ErrLotRefunded))
		}
		if got := err.Error(); got != tt.want {
			t.Errorf("message %q, want %q", got, tt.want)
		}
	}
}

// Fingerprints are stored with every transaction and compared with retries
// after upgrades too, so their bytes may never change: the layout spelled out.
func TestTransactionFingerprintLayout(t *testing.T) {
	id := uuid.MustParse("0192f0c4-5d7e-7c1a-9e2b-1f3a5c7e9b0d")
	ps := []PostingRequest{
		{Account: "COIN:promo:v1", Side: Debit, Amount: decimal.RequireFromString("5.50"), SpillTo: "COIN:wallet:v1"},
		{Account: "COIN:issued", Side: Credit, Amount: decimal.RequireFromString("5.5")},
	}
	got := fingerprint("gift", time.UnixMicro(1763726400123456), json.RawMessage(`{"coins":5}`), &id, ps, []byte("open=0,1;"))
	want := sha256.Sum256([]byte("k4:gift" + "e16:1763726400123456" + "m11:{\"coins\":5}" +
		"r36:0192f0c4-5d7e-7c1a-9e2b-1f3a5c7e9b0d" +
		"a13:COIN:promo:v1" + "s5:debit" + "n3:5.5" + "p14:COIN:wallet:v1" +
		"a11:COIN:issued" + "s6:credit" + "n3:5.5" +
		"l9:open=0,1;"))
	if string(got) != string(want[:]) {
		t.Fatalf("fingerprint %x, want %x", got, want)
	}
}
