package ledger

import (
	"math"
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

// sum totals decimals exactly. While every addend and the running total fit
// an int64 coefficient, as every amount of a gift does, it leaves math/big
// alone: shopspring allocates a big.Int for each Add and Neg, and a batch's
// balance arithmetic made a third of a gift's decimal allocations. Past
// int64 it carries on in decimal.Decimal.
type sum struct {
	c     int64
	exp   int32
	big   decimal.Decimal
	isBig bool
}

// add adds d, or subtracts it when negate is set.
func (s *sum) add(d decimal.Decimal, negate bool) {
	if !s.isBig && d.NumDigits() <= 18 {
		a, b, exp := s.c, d.CoefficientInt64(), d.Exponent()
		if negate {
			b = -b // |b| < 10^18: cannot overflow
		}
		ok := true
		switch {
		case exp < s.exp:
			a, ok = scaleUp(a, s.exp-exp)
		case exp > s.exp:
			b, ok = scaleUp(b, exp-s.exp)
			exp = s.exp
		}
		if r := a + b; ok && (a^r)&(b^r) >= 0 { // no overflow
			s.c, s.exp = r, exp
			return
		}
	}
	if !s.isBig {
		s.big, s.isBig = decimal.New(s.c, s.exp), true
	}
	if negate {
		s.big = s.big.Sub(d)
	} else {
		s.big = s.big.Add(d)
	}
}

// decimal returns the total, with the exponent decimal.Decimal's own
// arithmetic would have given it (the smallest of the addends').
func (s *sum) decimal() decimal.Decimal {
	if s.isBig {
		return s.big
	}
	return decimal.New(s.c, s.exp)
}

// sign is the total's sign.
func (s *sum) sign() int {
	if s.isBig {
		return s.big.Sign()
	}
	switch {
	case s.c < 0:
		return -1
	case s.c > 0:
		return 1
	}
	return 0
}

// scaleUp returns c × 10^n, or false when that overflows int64.
func scaleUp(c int64, n int32) (int64, bool) {
	if c == 0 {
		return 0, true
	}
	if n >= int32(len(pow10)) {
		return 0, false
	}
	m := pow10[n]
	if c > math.MaxInt64/m || c < -math.MaxInt64/m {
		return 0, false
	}
	return c * m, true
}
