package loadgen

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

// ackOnly makes a call decode, of a write's answer, only what the load
// generator keeps: the transaction's id and idempotency key. The generator
// shares the machine with the server it measures, and decoding every posting
// of every gift's answer was about 4% of the process's CPU
// (docs/benchmarks.md, "Fifth pass"). Requests are encoded as usual; answers
// of other types are decoded in full.
var ackOnly = grpc.ForceCodecV2(ackCodec{full: encoding.GetCodecV2(proto.Name)})

type ackCodec struct{ full encoding.CodecV2 }

func (c ackCodec) Name() string                           { return c.full.Name() }
func (c ackCodec) Marshal(v any) (mem.BufferSlice, error) { return c.full.Marshal(v) }

func (c ackCodec) Unmarshal(data mem.BufferSlice, v any) error {
	var tx **pb.Transaction
	switch r := v.(type) {
	case *pb.SendGiftResponse:
		tx = &r.Transaction
	case *pb.TransferResponse:
		tx = &r.Transaction
	default:
		return c.full.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	t, err := decodeAck(buf.ReadOnlyData())
	if err != nil {
		return err
	}
	*tx = t
	return nil
}

// Field numbers in coinledger.v1: the answers' transaction, and its id and
// idempotency key.
const (
	answerTransactionField = 1
	transactionIDField     = 1
	transactionKeyField    = 2
)

// decodeAck reads an answer whose field 1 is a Transaction, keeping only the
// transaction's id and idempotency key. It refuses what is not well-formed
// protobuf or not valid UTF-8, as the full decoder would.
func decodeAck(b []byte) (*pb.Transaction, error) {
	var tx *pb.Transaction
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != answerTransactionField || typ != protowire.BytesType {
			return nil
		}
		if tx == nil {
			tx = &pb.Transaction{}
		}
		return eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if typ != protowire.BytesType || (num != transactionIDField && num != transactionKeyField) {
				return nil
			}
			if !utf8.Valid(v) {
				return fmt.Errorf("answer: transaction field %d is not valid UTF-8", num)
			}
			if num == transactionIDField {
				tx.Id = string(v)
			} else {
				tx.IdempotencyKey = string(v)
			}
			return nil
		})
	})
	return tx, err
}

// eachField calls f with each field of a message; v is a length-delimited
// field's contents and nil for other wire types.
func eachField(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("answer: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("answer: field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := f(num, typ, v); err != nil {
			return err
		}
	}
	return nil
}
