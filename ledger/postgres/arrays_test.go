package postgres

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// encodeBoth encodes fast (one of the store's array types) on a map with the
// store's types and plain (the same values as the underlying slice type) on
// pgx's own map, each as a binary parameter of oid behind a prefix, as the
// query builder appends them.
func encodeBoth(t testing.TB, oid uint32, fast, plain any) (got, want []byte) {
	t.Helper()
	store, pgx := pgtype.NewMap(), pgtype.NewMap()
	registerTypes(store)
	prefix := []byte("prefix")
	got, err := store.Encode(oid, pgtype.BinaryFormatCode, fast, append([]byte(nil), prefix...))
	if err != nil {
		t.Fatalf("store encode %T: %v", fast, err)
	}
	want, err = pgx.Encode(oid, pgtype.BinaryFormatCode, plain, append([]byte(nil), prefix...))
	if err != nil {
		t.Fatalf("pgx encode %T: %v", plain, err)
	}
	return got, want
}

func TestArrayParametersEncodeAsPgxDoes(t *testing.T) {
	tests := []struct {
		name        string
		oid         uint32
		fast, plain any
	}{
		{"uuids", pgtype.UUIDArrayOID, uuidArray{{1, 2, 3}, {0xff}}, [][16]byte{{1, 2, 3}, {0xff}}},
		{"no uuids", pgtype.UUIDArrayOID, uuidArray{}, [][16]byte{}},
		{"nil uuids are NULL", pgtype.UUIDArrayOID, uuidArray(nil), [][16]byte(nil)},
		{"texts", pgtype.TextArrayOID, textArray{"gift:k1", "", "12.50", "ü"}, []string{"gift:k1", "", "12.50", "ü"}},
		{"no texts", pgtype.TextArrayOID, textArray{}, []string{}},
		{"nil texts are NULL", pgtype.TextArrayOID, textArray(nil), []string(nil)},
		{"int4s", pgtype.Int4ArrayOID, int4Array{0, 1, -1, 1 << 30, -1 << 31}, []int32{0, 1, -1, 1 << 30, -1 << 31}},
		{"no int4s", pgtype.Int4ArrayOID, int4Array{}, []int32{}},
		{"nil int4s are NULL", pgtype.Int4ArrayOID, int4Array(nil), []int32(nil)},
	}
	for _, tt := range tests {
		got, want := encodeBoth(t, tt.oid, tt.fast, tt.plain)
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %x\nwant %x", tt.name, got, want)
		}
	}
	// Each plan is taken only for its own array type.
	store := pgtype.NewMap()
	registerTypes(store)
	if _, ok := store.PlanEncode(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, textArray{}).(textArrayPlan); ok {
		t.Error("text array plan used for a uuid[] parameter")
	}
	if _, ok := store.PlanEncode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, textArray{}).(textArrayPlan); !ok {
		t.Error("text[] parameter does not use the text array plan")
	}
}

// FuzzArrayEncoding holds the store's array plans to pgx's own: the same
// bytes for any elements.
func FuzzArrayEncoding(f *testing.F) {
	f.Add([]byte("gift:run-g-1-1\x00credit\x005\x00"), uint8(3))
	f.Add([]byte{}, uint8(0))
	f.Add(bytes.Repeat([]byte{0xff}, 40), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, cut uint8) {
		texts := textArray{}
		for _, s := range bytes.Split(b, []byte{0}) {
			texts = append(texts, string(s))
		}
		switch cut % 4 {
		case 0:
			texts = texts[:0]
		case 1:
			texts = nil
		}
		var ids uuidArray
		var ints int4Array
		for i := 0; i+16 <= len(b); i += 16 {
			ids = append(ids, [16]byte(b[i:i+16]))
		}
		for i := 0; i+4 <= len(b); i += 4 {
			ints = append(ints, int32(binary.BigEndian.Uint32(b[i:])))
		}
		for _, c := range []struct {
			oid         uint32
			fast, plain any
		}{
			{pgtype.TextArrayOID, texts, []string(texts)},
			{pgtype.UUIDArrayOID, ids, [][16]byte(ids)},
			{pgtype.Int4ArrayOID, ints, []int32(ints)},
		} {
			got, want := encodeBoth(t, c.oid, c.fast, c.plain)
			if !bytes.Equal(got, want) {
				t.Fatalf("%T %v:\n got %x\nwant %x", c.fast, c.fast, got, want)
			}
		}
	})
}
