package ledger

import (
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
