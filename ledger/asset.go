package ledger

import (
	"regexp"
	"strings"

	"github.com/shopspring/decimal"
)

// MaxPrecision is the number of significant digits an amount or balance may
// carry: what NUMERIC(38, scale) holds.
const MaxPrecision = 38

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
	if a.Scale < 0 || a.Scale > 18 {
		return invalid(op, "asset.scale", "must be between 0 and 18")
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
	places := decimalPlaces(d)
	if places > a.Scale {
		return invalid(op, field, "has %d decimal places; %s allows %d", places, a.Code, a.Scale)
	}
	intDigits := integerDigits(d)
	if intDigits > MaxPrecision-int(a.Scale) {
		return invalid(op, field, "has %d integer digits; %s allows at most %d", intDigits, a.Code, MaxPrecision-int(a.Scale))
	}
	return nil
}

// ParseAmount reads a decimal string such as "19.99" for asset a. Only plain
// decimal notation is accepted: no exponent, sign, NaN, infinity or spaces.
func (a Asset) ParseAmount(op, field, s string) (decimal.Decimal, error) {
	if !plainDecimalRE.MatchString(s) {
		return decimal.Decimal{}, invalid(op, field, "must be a positive decimal number such as \"19.99\"")
	}
	if len(s) > MaxPrecision+2 {
		return decimal.Decimal{}, invalid(op, field, "has more than %d digits", MaxPrecision)
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, invalid(op, field, "must be a decimal number: %v", err)
	}
	return d, a.CheckAmount(op, field, d)
}

// The length cap is applied separately so the message can say what is wrong.
var plainDecimalRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// decimalPlaces counts significant fractional digits: "1.50" has 1.
func decimalPlaces(d decimal.Decimal) int32 {
	s := DecimalString(d) // without trailing zeros in the fraction
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return int32(len(s) - i - 1)
	}
	return 0
}

func integerDigits(d decimal.Decimal) int {
	s := d.Abs().Truncate(0).String()
	if s == "0" {
		return 0
	}
	return len(s)
}
