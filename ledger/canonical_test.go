package ledger

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

func TestIsCanonicalJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{`{}`, true},
		{`{"a":1,"b":[true,false,null,"x",-0.5e+3,{}],"c":{"d":"e\"f\\g"}}`, true},
		{`{"coins":33,"creator":"star","diamonds":"16.5","sent_at":"2026-11-21T05:00:00Z","viewer":"v-1"}`, true},
		{`{"b":1,"a":2}`, false},            // keys out of order
		{`{"a":1,"a":2}`, false},            // duplicate key
		{`{"a": 1}`, false},                 // not compact
		{`{"a":"<b>"}`, false},              // encoding/json escapes <, > and &
		{`{"a":"\u0041"}`, false},           // an escape it would not write
		{`{"a":"\n"}`, false},               // kept conservative
		{`{"a":"é"}`, false},                // non-ASCII: slow path
		{`{"a":01}`, false},                 // not a JSON number
		{`{"a":1.}`, false},                 // not a JSON number
		{`{"a":-}`, false},                  // not a JSON number
		{`{"a":tru}`, false},                // not a literal
		{`{"a":1}x`, false},                 // trailing data
		{`{"a":1`, false},                   // truncated
		{`[1]`, false},                      // not an object
		{`{"a":[1,]}`, false},               // trailing comma
		{`{"a":{"b":{"c":{"d":1}}}}`, true}, // nested
	} {
		if got := isCanonicalJSON([]byte(c.in)); got != c.want {
			t.Errorf("isCanonicalJSON(%s) = %v, want %v", c.in, got, c.want)
		}
		if c.want {
			if out, ok := reencodeJSONObject([]byte(c.in)); !ok || string(out) != c.in {
				t.Errorf("%s: the slow path renders %s", c.in, out)
			}
		}
	}
}

// Whenever the fast path says an input is canonical, the slow path must
// accept it and render exactly the same bytes.
func FuzzCanonicalFastPath(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"b":"x"}`, `{"a":[1,{"b":null}],"c":-1.5E-7}`, `{"a":"\"\\"}`, `{"b":1,"a":2}`, `{"a":"<"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, m []byte) {
		if !isCanonicalJSON(m) {
			return
		}
		out, ok := reencodeJSONObject(m)
		if !ok || !bytes.Equal(out, m) {
			t.Fatalf("fast path accepted %q; slow path: ok=%v %q", m, ok, out)
		}
	})
}

// The lot and carry renderings are hashed into stored fingerprints: a retry
// after an upgrade must hash alike, so they may never change. This pins them
// to the fmt-based rendering they were first written with.
func TestFingerprintRenderingIsStable(t *testing.T) {
	lot := uuid.MustParse("0b7e3c1a-5f0e-4a51-9c57-3f7b1d2e4a60")
	d := decimal.RequireFromString
	fmtLots := func(open *LotOpen, r *Relief, refund *LotRefund) string {
		var b strings.Builder
		if refund != nil {
			fmt.Fprintf(&b, "refund=%s,%q,%q,%s,%s,%s", refund.Lot, refund.Holder, refund.ValueAccount, refund.Units, refund.Unspent, refund.UnspentValue)
			if !refund.RefundedBefore.IsZero() { // added later: rendered only when set
				fmt.Fprintf(&b, ",%s", refund.RefundedBefore)
			}
			b.WriteString(";")
		}
		if open != nil {
			fmt.Fprintf(&b, "open=%d,%d;", open.UnitsPosting, open.ValuePosting)
		}
		if r != nil {
			fmt.Fprintf(&b, "relieve=%q,%s;", r.Account, r.Units)
			assets := make([]string, 0, len(r.Legs))
			for a := range r.Legs {
				assets = append(assets, a)
			}
			sort.Strings(assets)
			for _, a := range assets {
				fmt.Fprintf(&b, "%s=%q>%q;", a, r.Legs[a].From, r.Legs[a].To)
			}
		}
		return b.String()
	}
	fmtCarries := func(carries []Carry) string {
		var b strings.Builder
		for _, c := range carries {
			fmt.Fprintf(&b, "carry=%q,%q,%s,%s;", c.Account, c.Source, c.Fraction, c.Granule)
			for _, l := range c.Legs {
				fmt.Fprintf(&b, "leg=%q>%q,%s;", l.From, l.To, l.PerGranule)
			}
		}
		return b.String()
	}
	refund := &LotRefund{Lot: lot, Holder: `COIN:wallet:v"1`, ValueAccount: "Liability:Deferred:USD", Units: d("1321"), Unspent: d("496"), UnspentValue: d("7.51")}
	later := *refund
	later.RefundedBefore = d("825")
	open := &LotOpen{UnitsPosting: 0, ValuePosting: 3}
	relief := &Relief{Account: "COIN:wallet:vié\\w", Units: d("33"), Legs: map[string]ReliefLeg{
		"USD": {From: "Liability:Deferred:USD", To: "Revenue:Gifts:USD"}, "EUR": {From: "a\tb", To: "c"}}}
	carries := []Carry{{Account: "DIAMOND:carry:c", Source: "DIAMOND:frac", Fraction: d("16.5"), Granule: d("1"),
		Legs: []CarryLeg{{From: "DIAMOND:issued", To: "DIAMOND:pending:c", PerGranule: d("1")}, {From: "x", To: "y\u2028", PerGranule: d("0.005")}}}}
	for _, c := range []struct {
		open   *LotOpen
		relief *Relief
		refund *LotRefund
	}{{nil, nil, nil}, {open, nil, nil}, {nil, relief, nil}, {nil, nil, refund}, {nil, nil, &later}, {open, relief, refund}} {
		if got, want := string(*new(fpBuf).lots(c.open, c.relief, c.refund)), fmtLots(c.open, c.relief, c.refund); got != want {
			t.Errorf("lots:\n got %s\nwant %s", got, want)
		}
	}
	for _, cs := range [][]Carry{nil, carries} {
		if got, want := string(*new(fpBuf).carries(cs)), fmtCarries(cs); got != want {
			t.Errorf("carries:\n got %s\nwant %s", got, want)
		}
	}
	// Expectations as they were rendered before they shared the buffer.
	fmtExpectations := func(es []Expectation) string {
		var b strings.Builder
		for _, e := range es {
			b.WriteString("expect=" + strconv.Quote(e.Account) + "," + e.Balance.String() + ";")
		}
		return b.String()
	}
	expects := []Expectation{{Account: "COIN:debt:v", Balance: d("0")}, {Account: "a\"b\tc ", Balance: d("-12.50")}}
	for _, es := range [][]Expectation{nil, expects} {
		if got, want := string(*new(fpBuf).expectations(es)), fmtExpectations(es); got != want {
			t.Errorf("expectations:\n got %s\nwant %s", got, want)
		}
	}
	const pinned = `open=0,3;relieve="COIN:wallet:v",33;USD="Liability:Deferred:USD">"Revenue:Gifts:USD";`
	if got := string(*new(fpBuf).lots(open, &Relief{Account: "COIN:wallet:v", Units: d("33"), Legs: map[string]ReliefLeg{"USD": relief.Legs["USD"]}}, nil)); got != pinned {
		t.Errorf("lots = %s, pinned %s", got, pinned)
	}
}

// The fingerprint's quoting takes plain ASCII as it is; whatever the input,
// it must render exactly as strconv.Quote, or stored fingerprints would stop
// matching their retries.
func FuzzQuoteFastPath(f *testing.F) {
	for _, s := range []string{"", "COIN:wallet:ann", `a"b`, `a\b`, "tab\there", "é", "\x7f", "\x00", "~ !"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(appendQuote([]byte("x"), s)), "x"+strconv.Quote(s); got != want {
			t.Fatalf("appendQuote(%q) = %s, want %s", s, got, want)
		}
	})
}
