package loadgen

import (
	"testing"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

// fullGiftAnswer is a gift's answer as the server sends it, postings and all.
func fullGiftAnswer() *pb.SendGiftResponse {
	tx := &pb.Transaction{Id: "0192f0c4-5d7e-7c1a-9e2b-1f3a5c7e9b0d", IdempotencyKey: "gift:run-g-3-17", Kind: "gift",
		EffectiveAt: timestamppb.Now(), RecordedAt: timestamppb.Now(), MetadataJson: `{"coins":5,"creator":"star"}`}
	for i := 0; i < 10; i++ {
		tx.Postings = append(tx.Postings, &pb.Posting{Account: "User:v1:Coins", Side: pb.Side_SIDE_DEBIT,
			Amount: &pb.Money{Amount: "5", Asset: "COIN"}})
	}
	return &pb.SendGiftResponse{Transaction: tx}
}

func TestAckCodecKeepsIDAndKey(t *testing.T) {
	full := fullGiftAnswer()
	codec := ackCodec{full: encoding.GetCodecV2(grpcproto.Name)}
	data, err := codec.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	var got pb.SendGiftResponse
	if err := codec.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Transaction.GetId() != full.Transaction.Id || got.Transaction.GetIdempotencyKey() != full.Transaction.IdempotencyKey {
		t.Errorf("ack = %q %q, want %q %q", got.Transaction.GetId(), got.Transaction.GetIdempotencyKey(),
			full.Transaction.Id, full.Transaction.IdempotencyKey)
	}
	if len(got.Transaction.Postings) != 0 {
		t.Errorf("decoded %d postings; the ack keeps none", len(got.Transaction.Postings))
	}

	// Any other answer is decoded in full.
	wallet := &pb.GetWalletResponse{Paid: &pb.Money{Amount: "12", Asset: "COIN"}}
	data, err = codec.Marshal(wallet)
	if err != nil {
		t.Fatal(err)
	}
	var gotWallet pb.GetWalletResponse
	if err := codec.Unmarshal(data, &gotWallet); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&gotWallet, wallet) {
		t.Errorf("wallet = %v, want %v", &gotWallet, wallet)
	}
}

func TestDecodeAckRefusesMalformed(t *testing.T) {
	good, err := proto.Marshal(fullGiftAnswer())
	if err != nil {
		t.Fatal(err)
	}
	badUTF8, err := proto.Marshal(&pb.Transaction{Id: "x"})
	if err != nil {
		t.Fatal(err)
	}
	badUTF8[len(badUTF8)-1] = 0xff
	for name, b := range map[string][]byte{
		"truncated":         good[:len(good)-3],
		"tag only":          {0x0a},
		"length past end":   {0x0a, 0x05, 0x0a},
		"id not UTF-8":      append([]byte{0x0a, byte(len(badUTF8))}, badUTF8...),
		"field number zero": {0x02, 0x00},
	} {
		if _, err := decodeAck(b); err == nil {
			t.Errorf("%s: decodeAck accepted %x", name, b)
		}
	}
}

// FuzzDecodeAck holds decodeAck to the full decoder: whatever proto.Unmarshal
// accepts, decodeAck accepts with the same id and key.
func FuzzDecodeAck(f *testing.F) {
	good, err := proto.Marshal(fullGiftAnswer())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{})
	f.Add(append(append([]byte{}, good...), good...)) // a repeated message field merges
	f.Fuzz(func(t *testing.T, b []byte) {
		var full pb.SendGiftResponse
		if proto.Unmarshal(b, &full) != nil {
			return
		}
		tx, err := decodeAck(b)
		if err != nil {
			t.Fatalf("decodeAck refused what proto.Unmarshal accepts: %v", err)
		}
		if (tx == nil) != (full.Transaction == nil) || tx.GetId() != full.Transaction.GetId() ||
			tx.GetIdempotencyKey() != full.Transaction.GetIdempotencyKey() {
			t.Fatalf("decodeAck = %v, full = %v", tx, full.Transaction)
		}
	})
}
