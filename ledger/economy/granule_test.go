package economy

import (
	"testing"

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
