package economy

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func TestGranule(t *testing.T) {
	for _, c := range []struct {
		value string
		scale int32
		want  int64
	}{
		{"0.005", 2, 2}, {"0.01", 2, 1}, {"0.5", 0, 2}, {"0.0037", 2, 100}, {"0.125", 2, 2}, {"3", 0, 1}, {"0.3333", 2, 100}, {"0.00001", 2, 1000},
		{"0", 2, 1}, {"0.10", 2, 1}, {"0.0000000000000000001", 2, 100_000_000_000_000_000},
		{"1234567890.123456789", 2, 10_000_000}, // more digits than int64 holds: the big.Int path
	} {
		if got := Granule(decimal.RequireFromString(c.value), c.scale); !got.Equal(decimal.NewFromInt(c.want)) {
			t.Errorf("Granule(%s, %d) = %s, want %d", c.value, c.scale, got, c.want)
		}
	}
}

// FuzzGranule: g diamonds are worth a whole number of minor units, and no
// fewer diamonds are.
func FuzzGranule(f *testing.F) {
	f.Add(int64(5), int32(3), int32(2))
	f.Add(int64(37), int32(4), int32(2))
	f.Add(int64(1), int32(6), int32(0))
	f.Fuzz(func(t *testing.T, coef int64, exp int32, scale int32) {
		if coef <= 0 || coef > 1_000_000 || exp < 0 || exp > 6 || scale < 0 || scale > 4 {
			return
		}
		v := decimal.New(coef, -exp)
		g := Granule(v, scale)
		whole := func(n decimal.Decimal) bool {
			m := n.Mul(v).Shift(scale)
			return m.Equal(m.Truncate(0))
		}
		if !g.IsPositive() || !whole(g) {
			t.Fatalf("Granule(%s, %d) = %s: not a whole minor unit", v, scale, g)
		}
		if g.IntPart() <= 10_000 {
			for n := int64(1); n < g.IntPart(); n++ {
				if whole(decimal.NewFromInt(n)) {
					t.Fatalf("Granule(%s, %d) = %s, but %d diamonds already make a whole minor unit", v, scale, g, n)
				}
			}
		}
	})
}

// A gift's carries from the decimals it was priced with equal those from its
// terms as stored, which a reversal reads back: the two never drift apart.
func TestPricedTermsMatchStored(t *testing.T) {
	req := GiftRequest{Viewer: "v1", Creator: "c1", StreamID: "s1", SentAt: time.Date(2026, 12, 7, 1, 2, 3, 0, time.UTC)}
	rule := func(share, value, currency, agency, agencyShare string) ShareRule {
		r := ShareRule{CreatorShare: decimal.RequireFromString(share), DiamondValue: decimal.RequireFromString(value),
			DiamondCurrency: currency, Agency: agency, HoldingPeriod: 7 * 24 * time.Hour}
		if agencyShare != "" {
			r.AgencyShare = decimal.RequireFromString(agencyShare)
		}
		return r
	}
	for _, c := range []struct {
		name  string
		rule  ShareRule
		coins int64
	}{
		{"half of 5 coins at half a cent", rule("0.5", "0.005", "USD", "", ""), 5},
		{"an agency's rounded tenth of 333 coins", rule("0.53", "0.005", "USD", "agency1", "0.1"), 333},
		{"one coin in yen", rule("0.5", "1", "JPY", "", ""), 1},
		{"a share with trailing zeros", rule("0.50", "0.0050", "EUR", "a2", "0.250"), 1000},
	} {
		priced := newGiftTerms(req, c.rule, c.coins)
		raw, err := json.Marshal(priced)
		if err != nil {
			t.Fatal(err)
		}
		var stored GiftTerms
		if err := json.Unmarshal(raw, &stored); err != nil || stored.priced != nil {
			t.Fatalf("%s: read back %+v, %v", c.name, stored, err)
		}
		for _, takeBack := range []bool{false, true} {
			got, want := earningsCarries(priced), earningsCarries(&stored)
			if takeBack {
				got, want = takeBackCarries(priced, nil), takeBackCarries(&stored, nil)
			}
			if len(got) != len(want) {
				t.Fatalf("%s: %d carries priced, %d stored", c.name, len(got), len(want))
			}
			for i := range got {
				g, w := got[i], want[i]
				same := g.Account == w.Account && g.Source == w.Source && g.Fraction.Equal(w.Fraction) && g.Granule.Equal(w.Granule) &&
					len(g.Legs) == len(w.Legs)
				for j := 0; same && j < len(g.Legs); j++ {
					same = g.Legs[j].From == w.Legs[j].From && g.Legs[j].To == w.Legs[j].To && g.Legs[j].PerGranule.Equal(w.Legs[j].PerGranule)
				}
				if !same {
					t.Errorf("%s (take back %v), carry %d: priced %+v, stored %+v", c.name, takeBack, i, g, w)
				}
			}
		}
	}
}
