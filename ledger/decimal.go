package ledger

import (
	"strconv"

	"github.com/shopspring/decimal"
)

// AppendDecimal appends d as decimal.Decimal.String renders it (no exponent,
// no trailing zeros in the fraction), byte for byte: fingerprints are built
// from it and must keep matching their retries (FuzzAppendDecimal). It
// renders coefficients of up to 18 digits, every amount a ledger posts,
// without math/big, whose String was 3-5% of the gRPC server's CPU.
func AppendDecimal(dst []byte, d decimal.Decimal) []byte {
	if d.NumDigits() > 18 {
		return append(dst, d.String()...)
	}
	c := d.CoefficientInt64()
	if c == 0 {
		return append(dst, '0')
	}
	if c < 0 {
		dst = append(dst, '-')
		c = -c
	}
	var buf [20]byte
	digits := strconv.AppendInt(buf[:0], c, 10)
	exp := int(d.Exponent())
	if exp >= 0 {
		dst = append(dst, digits...)
		for ; exp > 0; exp-- {
			dst = append(dst, '0')
		}
		return dst
	}
	point := len(digits) + exp // digits before the decimal point
	frac := digits[max(point, 0):]
	for len(frac) > 0 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	if point > 0 {
		dst = append(dst, digits[:point]...)
	} else {
		dst = append(dst, '0')
	}
	if len(frac) == 0 {
		return dst
	}
	dst = append(dst, '.')
	for ; point < 0; point++ {
		dst = append(dst, '0')
	}
	return append(dst, frac...)
}

// DecimalString is AppendDecimal as a string: d.String(), faster.
func DecimalString(d decimal.Decimal) string {
	var buf [40]byte
	return string(AppendDecimal(buf[:0], d))
}
