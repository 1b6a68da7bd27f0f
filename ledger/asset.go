package ledger

import (
	"regexp"
	"strings"

	"github.com/shopspring/decimal"
)

// MaxPrecision is the number of significant digits an amount or balance may
// carry: what NUMERIC(38, scale) holds.
const MaxPrecision = 38

// MaxScale is the most decimal places an asset may have, and so an amount.
const MaxScale = 18

// Asset is a unit of account: a fiat currency at its ISO 4217 minor-unit scale
// or a virtual unit such as COIN or DIAMOND at scale 0.
type Asset struct {
	Code  string
	Scale int32
}

var assetCodeRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,15}$`)

// Validate checks the code's shape and the scale's range.
func (a Asset) Validate(op string) error {
	if !assetCodeRE.MatchString(a.Code) {
		return invalid(op, "asset.code", "must be 1-16 characters of A-Z, 0-9 and _, starting with a letter")
	}
	if a.Scale < 0 || a.Scale > MaxScale {
		return invalid(op, "asset.scale", "must be between 0 and %d", MaxScale)
	}
	return nil
}

// CheckAmount refuses a posting amount that is not positive, has more decimal
// places than the asset allows, or has more digits than NUMERIC(38, scale) holds.
func (a Asset) CheckAmount(op, field string, d decimal.Decimal) error {
	if d.Sign() <= 0 {
		return invalid(op, field, "must be positive")
	}
	return a.checkDigits(op, field, d)
}

func (a Asset) checkDigits(op, field string, d decimal.Decimal) error {
	places, intDigits := digitCounts(d)
	if places > a.Scale {
		return invalid(op, field, "has %d decimal places; %s allows %d", places, a.Code, a.Scale)
	}
	if intDigits > MaxPrecision-int(a.Scale) {
		return invalid(op, field, "has %d integer digits; %s allows at most %d", intDigits, a.Code, MaxPrecision-int(a.Scale))
	}
	return nil
}

// ParseDecimal reads a decimal string such as "19.99" or "-5". Only plain
// notation is accepted (no exponent, plus sign, NaN, infinity or spaces), of
// at most MaxPrecision digits, MaxScale of them after the point. Whether the
// value suits its use (a positive amount at its asset's scale, a share
// between 0 and 1) is for the check that knows the use: CheckAmount for
// amounts.
func ParseDecimal(op, field, s string) (decimal.Decimal, error) {
	if !plainDecimalRE.MatchString(s) {
		return decimal.Decimal{}, invalid(op, field, "must be a decimal number such as \"19.99\"")
	}
	digits := strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(digits, ".")
	if len(whole)+len(frac) > MaxPrecision {
		return decimal.Decimal{}, invalid(op, field, "has more than %d digits", MaxPrecision)
	}
	if len(frac) > MaxScale {
		return decimal.Decimal{}, invalid(op, field, "has more than %d decimal places", MaxScale)
	}
	return decimal.RequireFromString(s), nil
}

// The length caps are applied separately so the message can say what is wrong.
var plainDecimalRE = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// digitCounts returns d's significant fractional digits ("1.50" has 1) and
// its integer digits ("0.5" has 0). Every amount is checked this way, and
// rendering it through math/big was 2% of a gift storm's Go CPU, so
// coefficients of up to 18 digits are counted in int64; longer ones go
// through the text, which defines the counts (FuzzDigitCounts).
func digitCounts(d decimal.Decimal) (places int32, intDigits int) {
	if d.NumDigits() > 18 {
		return digitCountsOfText(d)
	}
	c, exp := d.CoefficientInt64(), d.Exponent()
	if c < 0 {
		c = -c
	}
	if c == 0 {
		return 0, 0
	}
	for exp < 0 && c%10 == 0 {
		c, exp = c/10, exp+1
	}
	if exp >= 0 {
		return 0, decimalDigits(c) + int(exp)
	}
	places = -exp
	if places >= 19 {
		return places, 0 // c < 10^18: no integer part
	}
	if whole := c / pow10[places]; whole > 0 {
		intDigits = decimalDigits(whole)
	}
	return places, intDigits
}

func digitCountsOfText(d decimal.Decimal) (places int32, intDigits int) {
	s := DecimalString(d.Abs()) // without trailing zeros in the fraction
	whole := s
	if i := strings.IndexByte(s, '.'); i >= 0 {
		places, whole = int32(len(s)-i-1), s[:i]
	}
	if whole != "0" {
		intDigits = len(whole)
	}
	return places, intDigits
}

// pow10[i] is 10^i, up to the largest power an int64 holds.
var pow10 = func() (p [19]int64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

// decimalDigits counts the digits of c > 0.
func decimalDigits(c int64) int {
	n := 1
	for n < len(pow10) && c >= pow10[n] {
		n++
	}
	return n
}
