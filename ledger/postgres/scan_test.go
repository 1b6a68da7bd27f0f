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

// The write path's scan destinations use pgx's binary decoders, not the
// sql.Scanner round trip through text that *decimal.Decimal and *uuid.UUID
// get (0.53 s of the commit lanes' 3.56 s in a gift-hot profile).
func TestScanDestinationsAreBinary(t *testing.T) {
	m := pgtype.NewMap()
	pgxdecimal.Register(m)
	var d decimal.Decimal
	var u uuid.UUID
	for _, c := range []struct {
		oid    uint32
		target any
		slow   bool
	}{
		{pgtype.NumericOID, &d, true}, {pgtype.UUIDOID, &u, true}, // why the helpers exist
		{pgtype.NumericOID, numeric(&d), false}, {pgtype.UUIDOID, uuidDest(&u), false},
	} {
		plan := fmt.Sprintf("%T", m.PlanScan(c.oid, pgtype.BinaryFormatCode, c.target))
		if slow := strings.Contains(plan, "SQLScanner"); slow != c.slow {
			t.Errorf("%T: plan %s", c.target, plan)
		}
	}
}
