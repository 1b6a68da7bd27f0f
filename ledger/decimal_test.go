package ledger

import (
	"math/big"
	"testing"

	"github.com/shopspring/decimal"
)

// AppendDecimal must render exactly as decimal.String, or fingerprints stored
// before it would stop matching their retries.
func FuzzAppendDecimal(f *testing.F) {
	for _, seed := range []struct {
		coef int64
		exp  int32
	}{
		{0, 0}, {0, -5}, {0, 7}, {5, 0}, {-5, 0}, {5, 3}, {-120, 2}, {500, -2}, {501, -2}, {-501, -2},
		{5, -1}, {5, -7}, {-5, -30}, {123456789012345678, -9}, {999999999999999999, -18},
		{1000000000000000000, -3}, {-9223372036854775808, -4}, {9223372036854775807, 0}, {10, -1}, {-100, -2},
	} {
		f.Add(seed.coef, seed.exp, uint8(0))
	}
	f.Fuzz(func(t *testing.T, coef int64, exp int32, scale uint8) {
		if exp > 400 || exp < -400 {
			t.Skip("a string of hundreds of zeros tells nothing more")
		}
		// scale > 0 multiplies the coefficient past int64 to cover the fallback.
		c := big.NewInt(coef)
		c.Mul(c, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale%24)), nil))
		d := decimal.NewFromBigInt(c, exp)
		want := d.String()
		if got := string(AppendDecimal([]byte("x"), d)); got != "x"+want {
			t.Fatalf("AppendDecimal(%s×10^%d) = %q, want %q", c, exp, got[1:], want)
		}
		if got := DecimalString(d); got != want {
			t.Fatalf("DecimalString(%s×10^%d) = %q, want %q", c, exp, got, want)
		}
	})
}
