package postgres

import (
	"encoding/binary"
	"slices"

	"github.com/jackc/pgx/v5/pgtype"
)

// The write path's array parameters, encoded in PostgreSQL's binary array
// format in one pass. pgx's generic array plan goes element by element
// through interface values, boxing every uuid: 6.4% of the CPU samples of a
// gift storm's coinledger process (server and load generator), all of it
// inside the commit lanes (docs/benchmarks.md, "Fifth pass"). The bytes are exactly those of pgx's own plans
// (FuzzArrayEncoding); a nil slice is NULL, as with pgx.
type (
	uuidArray [][16]byte
	textArray []string
	int4Array []int32
)

// fastArrays is pgx's codec for uuid[], text[] and int4[] with the encode
// plans above for binary parameters; everything else is pgx's.
type fastArrays struct{ *pgtype.ArrayCodec }

func registerFastArrays(m *pgtype.Map) {
	for _, oid := range []uint32{pgtype.UUIDArrayOID, pgtype.TextArrayOID, pgtype.Int4ArrayOID} {
		t, ok := m.TypeForOID(oid)
		if !ok {
			continue
		}
		if ac, ok := t.Codec.(*pgtype.ArrayCodec); ok {
			m.RegisterType(&pgtype.Type{Name: t.Name, OID: oid, Codec: fastArrays{ac}})
		}
	}
}

func (c fastArrays) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if format == pgtype.BinaryFormatCode {
		switch value.(type) {
		case uuidArray:
			if oid == pgtype.UUIDArrayOID {
				return uuidArrayPlan{}
			}
		case textArray:
			if oid == pgtype.TextArrayOID {
				return textArrayPlan{}
			}
		case int4Array:
			if oid == pgtype.Int4ArrayOID {
				return int4ArrayPlan{}
			}
		}
	}
	return c.ArrayCodec.PlanEncode(m, oid, format, value)
}

type (
	uuidArrayPlan struct{}
	textArrayPlan struct{}
	int4ArrayPlan struct{}
)

func (uuidArrayPlan) Encode(value any, buf []byte) ([]byte, error) {
	return encodeArray(buf, value.(uuidArray), pgtype.UUIDOID,
		func([16]byte) int { return 16 },
		func(b []byte, id [16]byte) []byte { return append(b, id[:]...) })
}

func (textArrayPlan) Encode(value any, buf []byte) ([]byte, error) {
	return encodeArray(buf, value.(textArray), pgtype.TextOID,
		func(s string) int { return len(s) },
		func(b []byte, s string) []byte { return append(b, s...) })
}

func (int4ArrayPlan) Encode(value any, buf []byte) ([]byte, error) {
	return encodeArray(buf, value.(int4Array), pgtype.Int4OID,
		func(int32) int { return 4 },
		func(b []byte, v int32) []byte { return binary.BigEndian.AppendUint32(b, uint32(v)) })
}

// encodeArray appends a one-dimensional array without NULL elements (lower
// bound 1); a nil slice is NULL.
func encodeArray[T any](buf []byte, a []T, elementOID uint32, size func(T) int, put func([]byte, T) []byte) ([]byte, error) {
	if a == nil {
		return nil, nil
	}
	const headerBytes = 5 * 4
	n := headerBytes
	for _, v := range a {
		n += 4 + size(v)
	}
	buf = slices.Grow(buf, n)
	buf = binary.BigEndian.AppendUint32(buf, 1) // dimensions
	buf = binary.BigEndian.AppendUint32(buf, 0) // no NULLs
	buf = binary.BigEndian.AppendUint32(buf, elementOID)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(a)))
	buf = binary.BigEndian.AppendUint32(buf, 1) // lower bound
	for _, v := range a {
		buf = binary.BigEndian.AppendUint32(buf, uint32(size(v)))
		buf = put(buf, v)
	}
	return buf, nil
}
