package postgres

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/google/uuid"
	pgxdecimal "github.com/jackc/pgx-shopspring-decimal"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"
)

// registerTypes makes pgx decode numeric and uuid columns straight into
// decimal.Decimal and uuid.UUID. Both types have a sql.Scanner, which pgx
// prefers to the codecs registered for the column, and that path renders
// every value as text and parses it again: about a seventh of a commit
// lane's CPU under gift storms.
func registerTypes(m *pgtype.Map) {
	pgxdecimal.Register(m)
	m.RegisterType(&pgtype.Type{Name: "numeric", OID: pgtype.NumericOID, Codec: decimalCodec{}})
	m.RegisterType(&pgtype.Type{Name: "uuid", OID: pgtype.UUIDOID, Codec: uuidCodec{}})
	registerFastArrays(m)
}

type decimalCodec struct{ pgxdecimal.NumericCodec }

func (c decimalCodec) PlanScan(m *pgtype.Map, oid uint32, format int16, target any) pgtype.ScanPlan {
	if _, ok := target.(*decimal.Decimal); ok {
		if next := c.NumericCodec.PlanScan(m, oid, format, (*pgxdecimal.Decimal)(nil)); next != nil {
			return decimalScan{next: next, binary: format == pgtype.BinaryFormatCode}
		}
	}
	return c.NumericCodec.PlanScan(m, oid, format, target)
}

type decimalScan struct {
	next   pgtype.ScanPlan
	binary bool
}

func (p decimalScan) Scan(src []byte, dst any) error {
	if p.binary {
		if d, ok := smallNumeric(src); ok {
			*dst.(*decimal.Decimal) = d
			return nil
		}
	}
	return p.next.Scan(src, (*pgxdecimal.Decimal)(dst.(*decimal.Decimal)))
}

// smallNumeric decodes a binary numeric of up to four base-10000 digits
// (16 decimal digits: the balances and amounts of a gift storm) in int64,
// giving exactly the coefficient and exponent pgx's decoder gives
// (FuzzSmallNumeric). pgx builds every value with math/big, several
// allocations a value and 1.4% of a gift storm's Go CPU, on the lanes' path.
// Anything else (NaN, infinities, longer values, malformed input) is left
// to pgx.
func smallNumeric(src []byte) (decimal.Decimal, bool) {
	const header, numericNegative = 8, 0x4000
	if len(src) < header {
		return decimal.Decimal{}, false
	}
	ndigits := int(binary.BigEndian.Uint16(src))
	weight := int(int16(binary.BigEndian.Uint16(src[2:])))
	sign := binary.BigEndian.Uint16(src[4:])
	dscale := int(int16(binary.BigEndian.Uint16(src[6:])))
	if ndigits > 4 || len(src) != header+2*ndigits || (sign != 0 && sign != numericNegative) {
		return decimal.Decimal{}, false
	}
	if ndigits == 0 {
		return decimal.New(0, 0), true
	}
	var c int64
	for i := range ndigits {
		c = c*10000 + int64(binary.BigEndian.Uint16(src[header+2*i:]))
	}
	exp := (weight - ndigits + 1) * 4
	if dscale > 0 {
		// pgx rescales to exactly dscale fractional digits.
		frac := (ndigits - weight - 1) * 4
		for ; dscale > frac; frac++ {
			if c > math.MaxInt64/10 {
				return decimal.Decimal{}, false
			}
			c, exp = c*10, exp-1
		}
		for ; dscale < frac; frac-- {
			c, exp = c/10, exp+1
		}
	}
	if exp >= 0 && c != 0 {
		for c%10 == 0 {
			c, exp = c/10, exp+1
		}
	}
	if sign != 0 {
		c = -c
	}
	return decimal.New(c, int32(exp)), true
}

type uuidCodec struct{ pgtype.UUIDCodec }

func (c uuidCodec) PlanScan(m *pgtype.Map, oid uint32, format int16, target any) pgtype.ScanPlan {
	if _, ok := target.(*uuid.UUID); ok {
		if next := c.UUIDCodec.PlanScan(m, oid, format, (*pgtype.UUID)(nil)); next != nil {
			return uuidScan{next: next, binary: format == pgtype.BinaryFormatCode}
		}
	}
	return c.UUIDCodec.PlanScan(m, oid, format, target)
}

type uuidScan struct {
	next   pgtype.ScanPlan
	binary bool
}

func (p uuidScan) Scan(src []byte, dst any) error {
	if p.binary && len(src) == 16 {
		// A binary uuid is its 16 bytes. Through pgx's plan the value it
		// scans into escapes: an allocation for every uuid a batch reads.
		copy(dst.(*uuid.UUID)[:], src)
		return nil
	}
	var u pgtype.UUID
	if err := p.next.Scan(src, &u); err != nil {
		return err
	}
	if !u.Valid {
		return errors.New("cannot scan NULL into *uuid.UUID")
	}
	*dst.(*uuid.UUID) = u.Bytes
	return nil
}
