package postgres

import (
	"fmt"
	"regexp"
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
	// A uuid reads as pgx reads it, binary or text; NULL is refused.
	id := uuid.MustParse("0193a5b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b")
	for _, c := range []struct {
		format int16
		src    []byte
	}{{pgtype.BinaryFormatCode, id[:]}, {pgtype.TextFormatCode, []byte(id.String())}} {
		var got uuid.UUID
		if err := ours.PlanScan(pgtype.UUIDOID, c.format, &got).Scan(c.src, &got); err != nil || got != id {
			t.Errorf("uuid in format %d: %s, %v; want %s", c.format, got, err, id)
		}
		if err := ours.PlanScan(pgtype.UUIDOID, c.format, &got).Scan(nil, &got); err == nil {
			t.Errorf("NULL uuid in format %d scanned", c.format)
		}
	}
	if p, ok := ours.PlanScan(pgtype.NumericOID, pgtype.BinaryFormatCode, &d).(decimalScan); !ok || !p.binary {
		t.Error("binary numerics do not take smallNumeric's path")
	}
	if p, ok := ours.PlanScan(pgtype.NumericOID, pgtype.TextFormatCode, &d).(decimalScan); ok && p.binary {
		t.Error("text numerics would be read as binary")
	}
}

// pgx encodes a parameter in binary when it can; a Go string bound to a
// numeric parameter cannot be, so pgx builds an error with fmt and then
// encodes the whole array again as text, on every batch. The write path
// therefore binds amounts as text[] and casts in SQL.
func TestWriteStatementsBindNoNumericArrays(t *testing.T) {
	m := pgtype.NewMap()
	registerTypes(m)
	amounts := []string{"1.5", "-2"}
	if _, err := m.Encode(pgtype.NumericArrayOID, pgtype.BinaryFormatCode, amounts, nil); err == nil {
		t.Fatal("pgx now encodes strings as binary numerics; the text[] casts may go")
	}
	if _, err := m.Encode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, amounts, nil); err != nil {
		t.Fatalf("text[]: %v", err)
	}
	numericParam := regexp.MustCompile(`\$\d+::numeric\[\]`)
	for name, sql := range map[string]string{
		"insertLots": insertLots, "updateLots": updateLots, "insertReliefs": insertReliefs,
		"insertTransactions": insertTransactions, "insertEntries": insertEntries, "updateBalances": updateBalances,
	} {
		if p := numericParam.FindString(sql); p != "" {
			t.Errorf("%s binds %s: pass text[] and cast", name, p)
		}
	}
}

// Id arrays encode without reflection (a slice of pgtype.UUID took about 2%
// of a gift storm's Go CPU in pgx's reflective slice encoder).
func TestIDArraysEncodeWithoutReflection(t *testing.T) {
	m := pgtype.NewMap()
	registerTypes(m)
	ids := pgUUIDs([]uuid.UUID{uuid.New(), uuid.New()})
	plan := fmt.Sprintf("%T", m.PlanEncode(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, ids))
	if strings.Contains(plan, "Reflect") {
		t.Errorf("id arrays encode with %s", plan)
	}
	if _, err := m.Encode(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, ids, nil); err != nil {
		t.Fatal(err)
	}
}

// smallNumeric must decode exactly what pgx's own decoder does, to the
// coefficient and exponent, and leave to pgx whatever it does not take.
func FuzzSmallNumeric(f *testing.F) {
	m := pgtype.NewMap()
	pgxdecimal.Register(m)
	for _, s := range []string{"0", "1", "-1", "0.5", "19.99", "-0.000001", "10000", "123456789012.3456",
		"9999999999999999", "99999999999999999", "0.00000000000000000001", "1e30", "-2.50", "100.000"} {
		src, err := m.Encode(pgtype.NumericOID, pgtype.BinaryFormatCode, decimal.RequireFromString(s), nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte{0, 1, 0, 0, 0xc0, 0, 0, 0, 0, 1}) // NaN
	f.Add([]byte{0, 1, 0, 0, 0, 0, 0, 3, 0, 5})    // 5 with a dscale of 3
	f.Add([]byte{0, 0, 0, 0, 0x40, 0, 0, 2})       // negative zero, dscale 2
	pgxPlan := m.PlanScan(pgtype.NumericOID, pgtype.BinaryFormatCode, (*pgxdecimal.Decimal)(nil))
	f.Fuzz(func(t *testing.T, src []byte) {
		got, ok := smallNumeric(src)
		var want pgxdecimal.Decimal
		err := pgxPlan.Scan(src, &want)
		if !ok {
			return
		}
		w := decimal.Decimal(want)
		if err != nil {
			t.Fatalf("% x: smallNumeric took %s×10^%d, pgx refused it: %v", src, got.Coefficient(), got.Exponent(), err)
		}
		if got.Coefficient().Cmp(w.Coefficient()) != 0 || got.Exponent() != w.Exponent() {
			t.Fatalf("% x: smallNumeric %s×10^%d, pgx %s×10^%d", src, got.Coefficient(), got.Exponent(), w.Coefficient(), w.Exponent())
		}
	})
}
