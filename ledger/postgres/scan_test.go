package postgres

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	pgxdecimal "github.com/jackc/pgx-shopspring-decimal"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/shopspring/decimal"
)

// The store's connections decode numerics and uuids with pgx's binary
// decoders, not the sql.Scanner round trip through text that
// *decimal.Decimal and *uuid.UUID get otherwise (0.53 s of the commit lanes'
// 3.56 s in a gift-hot profile).
func TestScanDestinationsAreBinary(t *testing.T) {
	plain := pgtype.NewMap()
	pgxdecimal.Register(plain)
	ours := pgtype.NewMap()
	registerTypes(ours)
	var d decimal.Decimal
	var u uuid.UUID
	for _, c := range []struct {
		m      *pgtype.Map
		oid    uint32
		target any
		slow   bool
	}{
		{plain, pgtype.NumericOID, &d, true}, {plain, pgtype.UUIDOID, &u, true}, // why registerTypes exists
		{ours, pgtype.NumericOID, &d, false}, {ours, pgtype.UUIDOID, &u, false},
	} {
		plan := fmt.Sprintf("%T", c.m.PlanScan(c.oid, pgtype.BinaryFormatCode, c.target))
		if slow := strings.Contains(plan, "SQLScanner"); slow != c.slow {
			t.Errorf("%T: plan %s", c.target, plan)
		}
	}
}
