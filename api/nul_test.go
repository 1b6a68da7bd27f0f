package api

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

func TestNULField(t *testing.T) {
	mapped := func(key, value string) proto.Message {
		return &structpb.Struct{Fields: map[string]*structpb.Value{key: structpb.NewStringValue(value)}}
	}
	for _, tt := range []struct {
		name string
		req  proto.Message
		want string
	}{
		{"none", &pb.SendGiftRequest{IdempotencyKey: "k", Viewer: "v"}, ""},
		{"empty", &pb.VerifyRequest{}, ""},
		{"a field", &pb.SendGiftRequest{IdempotencyKey: "k", StreamId: "s\x00"}, "stream_id"},
		{"the first of two", &pb.SendGiftRequest{IdempotencyKey: "\x00", StreamId: "s\x00"}, "idempotency_key"},
		{"in a message", &pb.PurchaseRequest{AmountPaid: &pb.Money{Amount: "1", Asset: "\x00"}}, "amount_paid.asset"},
		{"in a list", &pb.BatchGetBalancesRequest{Accounts: []string{"a", "b\x00", "\x00"}}, "accounts[1]"},
		{"in a list of messages", &pb.AddCoinPackRequest{Prices: []*pb.Money{{Amount: "1"}, {Amount: "2\x00"}}}, "prices[1].amount"},
		{"a map's key", mapped("a\x00", "x"), `fields["a\x00"]`},
		{"a map's value", mapped("a", "x\x00"), `fields["a"].string_value`},
	} {
		if got := nulField(tt.req.ProtoReflect()); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// Every request is walked, a gift's on the hot path.
func BenchmarkNULField(b *testing.B) {
	req := &pb.SendGiftRequest{IdempotencyKey: "gift-123456-42", Viewer: "viewer-123", Creator: "creator-7", GiftId: "rose",
		Coins: 5, StreamId: "stream-99", SentAt: timestamppb.Now()}
	for b.Loop() {
		if nulField(req.ProtoReflect()) != "" {
			b.Fatal("found a NUL")
		}
	}
}
