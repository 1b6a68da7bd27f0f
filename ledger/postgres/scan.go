package postgres

import (
	"errors"

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
			return decimalScan{next}
		}
	}
	return c.NumericCodec.PlanScan(m, oid, format, target)
}

type decimalScan struct{ next pgtype.ScanPlan }

func (p decimalScan) Scan(src []byte, dst any) error {
	return p.next.Scan(src, (*pgxdecimal.Decimal)(dst.(*decimal.Decimal)))
}

type uuidCodec struct{ pgtype.UUIDCodec }

func (c uuidCodec) PlanScan(m *pgtype.Map, oid uint32, format int16, target any) pgtype.ScanPlan {
	if _, ok := target.(*uuid.UUID); ok {
		if next := c.UUIDCodec.PlanScan(m, oid, format, (*pgtype.UUID)(nil)); next != nil {
			return uuidScan{next}
		}
	}
	return c.UUIDCodec.PlanScan(m, oid, format, target)
}

type uuidScan struct{ next pgtype.ScanPlan }

func (p uuidScan) Scan(src []byte, dst any) error {
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
