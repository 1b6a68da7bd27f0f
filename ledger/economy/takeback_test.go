package economy

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// FuzzSplitTakeBack checks splitTakeBack against the ledger's rule for taking
// back from a carry (the carry first, then ceil(rest / granule) granules
// out of the leg's pending account): the parts add up to the take-back,
// each account returns no more than it holds beyond what was taken before,
// the carry ends where splitTakeBack says and stays under a granule, the
// release day's account lends alone when it holds enough, and a refusal
// means the accounts together hold too few whole granules. Amounts are in
// quarters of a diamond.
func FuzzSplitTakeBack(f *testing.F) {
	f.Add(uint16(666), uint16(0), uint8(8), uint16(664), uint16(8), uint16(0), uint16(0), uint8(0), uint16(0))    // 166.5 back: 83 granules own, 1 next day
	f.Add(uint16(2), uint16(0), uint8(8), uint16(0), uint16(8), uint16(0), uint16(0), uint8(0), uint16(0))        // a rose's half: the next day lends
	f.Add(uint16(12), uint16(2), uint8(8), uint16(0), uint16(0), uint16(8), uint16(8), uint8(1), uint16(8))       // two later days, one already taken from
	f.Add(uint16(5), uint16(6), uint8(8), uint16(0), uint16(0), uint16(0), uint16(0), uint8(0), uint16(0))        // the carry covers it
	f.Add(uint16(100), uint16(0), uint8(8), uint16(16), uint16(16), uint16(16), uint16(16), uint8(3), uint16(16)) // too few in all
	f.Fuzz(func(t *testing.T, d, c uint16, g uint8, h0, h1, h2, h3 uint16, takenFrom uint8, takenQ uint16) {
		q := func(n int64) decimal.Decimal { return decimal.New(n, 0).Div(decimal.NewFromInt(4)) }
		if g == 0 || d == 0 {
			return
		}
		granule := q(int64(g))
		carry := q(int64(c) % int64(g))
		diamonds := q(int64(d))
		day0 := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
		var pending []pendingBalance
		held := map[string]decimal.Decimal{}
		for i, h := range []uint16{h0, h1, h2, h3} {
			name := PendingDiamonds("c1", day0.Add(time.Duration(i)*24*time.Hour))
			pending = append(pending, pendingBalance{name, day0.Add(time.Duration(i) * 24 * time.Hour), q(int64(h))})
			held[name] = q(int64(h))
		}
		own := pending[0].account
		taken := map[string]decimal.Decimal{}
		if a := pending[int(takenFrom)%len(pending)]; q(int64(takenQ)).LessThanOrEqual(a.held) {
			taken[a.account] = q(int64(takenQ))
		}
		before := map[string]decimal.Decimal{}
		for k, v := range taken {
			before[k] = v
		}
		parts, left, ok := splitTakeBack(diamonds, carry, granule, own, pending, taken)

		needed := decimal.Zero // granules the ledger returns for the whole take-back
		if short := diamonds.Sub(carry); short.Sign() > 0 {
			needed = short.Div(granule).Ceil()
		}
		spare := decimal.Zero
		for _, p := range pending {
			spare = spare.Add(p.held.Sub(before[p.account]).Div(granule).Floor())
		}
		if !ok {
			if spare.GreaterThanOrEqual(needed) {
				t.Fatalf("refused with %s spare granules for %s", spare, needed)
			}
			for k, v := range taken {
				if !v.Equal(before[k]) {
					t.Fatalf("a refusal changed taken[%s]", k)
				}
			}
			return
		}
		sum, cs := decimal.Zero, carry
		borrowed := map[string]decimal.Decimal{}
		for _, p := range parts {
			if p.diamonds.Sign() <= 0 {
				t.Fatalf("part of %s", p.diamonds)
			}
			sum = sum.Add(p.diamonds)
			take := decimal.Min(cs, p.diamonds)
			cs = cs.Sub(take)
			if rest := p.diamonds.Sub(take); rest.Sign() > 0 {
				n := rest.Div(granule).Ceil()
				cs = cs.Add(n.Mul(granule)).Sub(rest)
				borrowed[p.pending] = borrowed[p.pending].Add(n.Mul(granule))
			}
		}
		if !sum.Equal(diamonds) {
			t.Fatalf("parts add up to %s, not %s", sum, diamonds)
		}
		if !cs.Equal(left) || cs.Sign() < 0 || !cs.LessThan(granule) {
			t.Fatalf("carry ends at %s, splitTakeBack says %s (granule %s)", cs, left, granule)
		}
		for name, b := range borrowed {
			if b.Add(before[name]).GreaterThan(held[name]) {
				t.Fatalf("%s returns %s beyond %s taken, holding %s", name, b, before[name], held[name])
			}
			if !taken[name].Equal(before[name].Add(b)) {
				t.Fatalf("taken[%s] = %s, want %s", name, taken[name], before[name].Add(b))
			}
		}
		if held[own].Sub(before[own]).GreaterThanOrEqual(needed.Mul(granule)) && len(borrowed) > 0 && borrowed[own].IsZero() {
			t.Fatalf("own day holds enough, yet %v lent", borrowed)
		}
	})
}
