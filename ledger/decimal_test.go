package ledger

import (
	"bytes"
	"encoding/binary"
	"math/big"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

// fuzzDecimals seeds f with coefficients and exponents around the edges of
// the int64 fast paths and runs check on coef×10^scale × 10^exp: scale > 0
// multiplies the coefficient past int64 to cover the fallbacks.
func fuzzDecimals(f *testing.F, check func(t *testing.T, d decimal.Decimal)) {
	for _, seed := range []struct {
		coef int64
		exp  int32
	}{
		{0, 0}, {0, -5}, {0, 7}, {5, 0}, {-5, 0}, {5, 3}, {-120, 2}, {500, -2}, {501, -2}, {-501, -2},
		{5, -1}, {5, -7}, {5, -19}, {-5, -30}, {100, -20}, {1, 18}, {123456789012345678, -9},
		{999999999999999999, -18}, {999999999999999999, -17}, {1000000000000000000, -3},
		{-9223372036854775808, -4}, {9223372036854775807, 0}, {10, -1}, {-100, -2},
	} {
		f.Add(seed.coef, seed.exp, uint8(0))
	}
	f.Fuzz(func(t *testing.T, coef int64, exp int32, scale uint8) {
		if exp > 400 || exp < -400 {
			t.Skip("a string of hundreds of zeros tells nothing more")
		}
		c := big.NewInt(coef)
		c.Mul(c, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale%24)), nil))
		check(t, decimal.NewFromBigInt(c, exp))
	})
}

// AppendDecimal must render exactly as decimal.String, or fingerprints stored
// before it would stop matching their retries.
func FuzzAppendDecimal(f *testing.F) {
	fuzzDecimals(f, func(t *testing.T, d decimal.Decimal) {
		want := d.String()
		if got := string(AppendDecimal([]byte("x"), d)); got != "x"+want {
			t.Fatalf("AppendDecimal(%s×10^%d) = %q, want %q", d.Coefficient(), d.Exponent(), got[1:], want)
		}
		if got := DecimalString(d); got != want {
			t.Fatalf("DecimalString(%s×10^%d) = %q, want %q", d.Coefficient(), d.Exponent(), got, want)
		}
	})
}

// digitCounts must count what the amount's text shows, for the int64 fast
// path and the fallback alike.
func FuzzDigitCounts(f *testing.F) {
	fuzzDecimals(f, func(t *testing.T, d decimal.Decimal) {
		wantPlaces, wantInt := textDigitCounts(d.Abs().String())
		if places, intDigits := digitCounts(d); places != wantPlaces || intDigits != wantInt {
			t.Fatalf("digitCounts(%s×10^%d) = %d places, %d integer digits; its text %q has %d, %d",
				d.Coefficient(), d.Exponent(), places, intDigits, d.String(), wantPlaces, wantInt)
		}
	})
}

// textDigitCounts counts the significant fractional digits and the integer
// digits of a plain non-negative decimal text such as "0012.50".
func textDigitCounts(s string) (places int32, intDigits int) {
	whole, frac, _ := strings.Cut(s, ".")
	places = int32(len(strings.TrimRight(frac, "0")))
	intDigits = len(strings.TrimLeft(whole, "0"))
	return places, intDigits
}

// sum must total exactly what decimal.Decimal's Add and Sub give, with the
// same exponent, on its int64 path and past it. Each 10 bytes of the input
// are one addend: a coefficient, an exponent, and whether to subtract it
// and to push it past int64.
func FuzzSum(f *testing.F) {
	addend := func(coef int64, exp int8, flags byte) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(coef))
		return append(b, byte(exp), flags)
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	f.Add(join(addend(5, 0, 0), addend(25, -1, 1), addend(-3, -6, 0)))
	f.Add(join(addend(5, 2, 0), addend(1, -2, 0)))
	f.Add(join(addend(999999999999999999, 0, 0), addend(999999999999999999, 0, 0), addend(999999999999999999, 0, 0), addend(1, -3, 1)))
	f.Add(bytes.Repeat(addend(999999999999999999, 0, 0), 10)) // past int64
	f.Add(bytes.Repeat(addend(-999999999999999999, 0, 1), 10))
	f.Add(join(addend(1, 18, 0), addend(1, -18, 0)))
	f.Add(join(addend(-9223372036854775808, 0, 0), addend(7, -1, 1)))
	f.Add(join(addend(123, -4, 2), addend(5, -4, 1), addend(5, -4, 0)))
	f.Fuzz(func(t *testing.T, in []byte) {
		var s sum
		var want decimal.Decimal
		for ; len(in) >= 10; in = in[10:] {
			c := new(big.Int).SetInt64(int64(binary.LittleEndian.Uint64(in)))
			exp, flags := int32(int8(in[8]))%40, in[9]
			if flags&2 != 0 {
				c.Lsh(c, 70)
			}
			d := decimal.NewFromBigInt(c, exp)
			negate := flags&1 != 0
			s.add(d, negate)
			if negate {
				want = want.Sub(d)
			} else {
				want = want.Add(d)
			}
			got := s.decimal()
			if !got.Equal(want) || got.Exponent() != want.Exponent() || s.sign() != want.Sign() {
				t.Fatalf("after %s (negate %v): sum %s×10^%d sign %d, decimal %s×10^%d",
					d, negate, got.Coefficient(), got.Exponent(), s.sign(), want.Coefficient(), want.Exponent())
			}
		}
	})
}
