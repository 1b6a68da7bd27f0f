package api_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

// everyScope may call every RPC, so that a refusal is the request's fault.
const everyScope = "tok-all-0123456789"

// rpcMethod is one RPC of the protocol and a request it accepts.
type rpcMethod struct {
	path  string // "/coinledger.v1.GiftService/SendGift"
	valid proto.Message
	reply protoreflect.MessageType
	write bool // sent again, it must answer as the first time
}

// protocolMethods lists every RPC of coinledger.v1, in a stable order, with a
// valid request for each from validRequests; it fails if an RPC has none, so
// a new RPC cannot go unfuzzed.
func protocolMethods(tb testing.TB, valid map[string]proto.Message) []rpcMethod {
	tb.Helper()
	var out []rpcMethod
	protoregistry.GlobalFiles.RangeFilesByPackage("coinledger.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				path := "/" + string(sd.FullName()) + "/" + string(md.Name())
				req, ok := valid[string(md.Name())]
				if !ok {
					tb.Fatalf("%s has no valid request in validRequests", path)
				}
				reply, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
				if err != nil {
					tb.Fatal(err)
				}
				out = append(out, rpcMethod{path: path, valid: req, reply: reply, write: isWrite(string(md.Name()))})
			}
		}
		return true
	})
	slices.SortFunc(out, func(a, b rpcMethod) int { return strings.Compare(a.path, b.path) })
	if len(out) != len(valid) {
		tb.Fatalf("validRequests has %d requests for %d RPCs", len(valid), len(out))
	}
	return out
}

// isWrite tells the RPCs whose retry must answer as the first call did:
// all but the reads, and the release job, which releases what has come due
// since its last run.
func isWrite(method string) bool {
	for _, read := range []string{"Get", "List", "BatchGet"} {
		if strings.HasPrefix(method, read) {
			return false
		}
	}
	return method != "Verify" && method != "ReleaseEarnings"
}

// validRequests are requests each RPC accepts against a seeded env with one
// purchase, gift and refund in it. Their times are the fuzzing's start: a
// gift under a new key is refused as late once economy.MaxGiftDelay (an
// hour) has passed, so fuzz in runs shorter than that.
func validRequests(e *env, tb testing.TB) map[string]proto.Message {
	tb.Helper()
	ctx := context.Background()
	e.buy(tb, "v1", "tx-fuzz")
	gift, err := e.gifts(tb).SendGift(ctx, &pb.SendGiftRequest{IdempotencyKey: "g-fuzz", Viewer: "v1", Creator: "star", GiftId: "rose",
		StreamId: "s1", SentAt: timestamppb.Now()})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := e.purchases(tb).Refund(ctx, &pb.RefundRequest{Channel: pb.Channel_CHANNEL_APPLE, StoreTransactionId: "tx-fuzz",
		RefundId: "rf-fuzz", RefundedAt: timestamppb.Now(), Policy: pb.RefundPolicy_REFUND_POLICY_CLAWBACK}); err != nil {
		tb.Fatal(err)
	}
	now := timestamppb.Now()
	return map[string]proto.Message{
		"BlockViewer":        &pb.BlockViewerRequest{User: "v2", IdempotencyKey: "b"},
		"UnblockViewer":      &pb.UnblockViewerRequest{User: "v2", IdempotencyKey: "u"},
		"ReleaseEarnings":    &pb.ReleaseEarningsRequest{AsOf: now},
		"AddCoinPack":        &pb.AddCoinPackRequest{PackId: "p5", Channel: pb.Channel_CHANNEL_WEB, Coins: 5, Prices: []*pb.Money{usd("0.05")}, FeeRate: "0.03", IdempotencyKey: "k"},
		"AddGift":            &pb.AddGiftRequest{GiftId: "lily", Coins: 7, IdempotencyKey: "k"},
		"AddShareRule":       &pb.AddShareRuleRequest{Creator: "star", CreatorShare: "0.6", HoldingPeriod: durationpb.New(time.Hour), DiamondValue: usd("0.005"), IdempotencyKey: "k"},
		"GetCoinPack":        &pb.GetCoinPackRequest{PackId: "p100", Channel: pb.Channel_CHANNEL_APPLE},
		"GetGift":            &pb.GetGiftRequest{GiftId: "rose"},
		"GetShareRule":       &pb.GetShareRuleRequest{Creator: "star"},
		"RegisterCreator":    &pb.RegisterCreatorRequest{Creator: "nova"},
		"AddLiveSession":     &pb.AddLiveSessionRequest{SessionId: "live-2", Seller: "shop2", Partner: "host2", PlatformRate: "0.05", PartnerShare: "0.1"},
		"GetCreatorEarnings": &pb.GetCreatorEarningsRequest{Earner: "star"},
		"SendGift":           &pb.SendGiftRequest{IdempotencyKey: "g", Viewer: "v1", Creator: "star", GiftId: "rose", StreamId: "s1", SentAt: now},
		"ReverseGift":        &pb.ReverseGiftRequest{IdempotencyKey: "r", GiftTransactionId: gift.Transaction.Id, Reason: "fraud"},
		"GetWallet":          &pb.GetWalletRequest{User: "v1"},
		"ListAccounts":       &pb.ListAccountsRequest{Prefix: "COIN:", PageSize: 10},
		"GetBalance":         &pb.GetBalanceRequest{Account: "COIN:issued"},
		"BatchGetBalances":   &pb.BatchGetBalancesRequest{Accounts: []string{"COIN:issued", "Treasury:ops"}},
		"ListEntries":        &pb.ListEntriesRequest{Account: "COIN:issued", PageSize: 10},
		"GetTransaction":     &pb.GetTransactionRequest{Id: gift.Transaction.Id},
		"Verify":             &pb.VerifyRequest{},
		"RecordSale":         &pb.RecordSaleRequest{OrderId: "o1", SessionId: "live-1", Amount: usd("20"), SoldAt: now},
		"Purchase":           &pb.PurchaseRequest{Channel: pb.Channel_CHANNEL_APPLE, StoreTransactionId: "tx-f2", User: "v2", PackId: "p100", AmountPaid: usd("0.99"), PurchasedAt: now},
		"GrantPromo":         &pb.GrantPromoRequest{IdempotencyKey: "p", User: "v2", Coins: 10, Reason: "welcome"},
		"Refund":             &pb.RefundRequest{Channel: pb.Channel_CHANNEL_APPLE, StoreTransactionId: "tx-f2", RefundId: "rf2", RefundedAt: now, Policy: pb.RefundPolicy_REFUND_POLICY_DEBT},
		"ReverseRefund":      &pb.ReverseRefundRequest{Channel: pb.Channel_CHANNEL_APPLE, RefundId: "rf-fuzz"},
		"CreateAccount":      &pb.CreateAccountRequest{Name: "Treasury:fuzz", Asset: "EUR", NormalSide: pb.Side_SIDE_CREDIT, Shards: 2},
		"Transfer":           &pb.TransferRequest{IdempotencyKey: "t", From: "Treasury:float", To: "Treasury:ops", Amount: usd("1"), Memo: "m"},
	}
}

// edit sets one field of m, chosen by which, from the fuzzer's values: a
// string field to s, a number to n, an enum to n, a bool to n's low bit, a
// Money to {s, asset}, a timestamp or duration to {n seconds, nanos} (any
// message to unset when s and n are empty), a repeated field to s's
// comma-separated parts.
func edit(m protoreflect.Message, which uint8, s, asset string, n int64, nanos int32) {
	fields := m.Descriptor().Fields()
	if fields.Len() == 0 {
		return
	}
	fd := fields.Get(int(which) % fields.Len())
	if fd.IsList() {
		list := m.NewField(fd).List()
		for _, part := range strings.Split(s, ",") {
			switch {
			case fd.Kind() == protoreflect.StringKind:
				list.Append(protoreflect.ValueOfString(part))
			case fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() == "coinledger.v1.Money":
				list.Append(protoreflect.ValueOfMessage((&pb.Money{Amount: part, Asset: asset}).ProtoReflect()))
			default:
				panic("edit: no value for a list of " + string(fd.FullName()))
			}
		}
		m.Set(fd, protoreflect.ValueOfList(list))
		return
	}
	var v protoreflect.Value
	switch fd.Kind() {
	case protoreflect.StringKind:
		v = protoreflect.ValueOfString(s)
	case protoreflect.Int64Kind:
		v = protoreflect.ValueOfInt64(n)
	case protoreflect.Int32Kind:
		v = protoreflect.ValueOfInt32(int32(n))
	case protoreflect.BoolKind:
		v = protoreflect.ValueOfBool(n&1 == 1)
	case protoreflect.EnumKind:
		v = protoreflect.ValueOfEnum(protoreflect.EnumNumber(n))
	case protoreflect.MessageKind:
		if s == "" && n == 0 {
			m.Clear(fd) // unset: a required message left out
			return
		}
		switch fd.Message().FullName() {
		case "coinledger.v1.Money":
			v = protoreflect.ValueOfMessage((&pb.Money{Amount: s, Asset: asset}).ProtoReflect())
		case "google.protobuf.Timestamp":
			v = protoreflect.ValueOfMessage((&timestamppb.Timestamp{Seconds: n, Nanos: nanos}).ProtoReflect())
		case "google.protobuf.Duration":
			v = protoreflect.ValueOfMessage((&durationpb.Duration{Seconds: n, Nanos: nanos}).ProtoReflect())
		default:
			panic("edit: no value for a " + string(fd.Message().FullName()))
		}
	default:
		panic("edit: no value for a field of kind " + fd.Kind().String())
	}
	m.Set(fd, v)
}

// isFieldOf reports whether path ("amount.asset", "prices[1].amount") names
// a field of md, an element of a list by its place, so that a caller can
// tell which of its fields was refused.
func isFieldOf(md protoreflect.MessageDescriptor, path string) bool {
	for part := range strings.SplitSeq(path, ".") {
		name, index, indexed := strings.Cut(part, "[")
		if md == nil {
			return false
		}
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return false
		}
		if indexed {
			if _, err := strconv.Atoi(strings.TrimSuffix(index, "]")); err != nil || !strings.HasSuffix(index, "]") || !fd.IsList() {
				return false
			}
		}
		md = fd.Message()
	}
	return path != ""
}

// answerable are the codes a request alone can earn: anything else from a
// single caller on an idle server (Internal, Unknown, Aborted, a deadline) is
// a bug the fuzzer found.
var answerable = map[codes.Code]bool{codes.OK: true, codes.InvalidArgument: true, codes.NotFound: true,
	codes.AlreadyExists: true, codes.FailedPrecondition: true}

// FuzzRequests sends each RPC a valid request with up to two fields replaced
// by the fuzzer's values, and checks that the answer is one a caller can act
// on, that bad input names the field at fault, and that the ledger verifies
// clean afterwards.
func FuzzRequests(f *testing.F) {
	e := newEnv(f)
	e.seed(f)
	methods := protocolMethods(f, validRequests(e, f))
	conn := e.dial(f, everyScope)
	f.Cleanup(func() {
		r, err := pb.NewLedgerServiceClient(conn).Verify(context.Background(), &pb.VerifyRequest{})
		if err != nil {
			f.Fatal(err)
		}
		if len(r.Violations) > 0 {
			f.Errorf("the ledger does not verify after fuzzing: %v", r.Violations)
		}
	})

	const year1, year9999 = -62135596800, 253402300799
	for i := range methods {
		m := uint8(i)
		f.Add(m, uint8(0), "", "", int64(0), int32(0), uint8(0), "")
		for field := range uint8(8) {
			f.Add(m, field, "", "", int64(-1), int32(0), field, "")
			f.Add(m, field, "9999999999999999999999.99", "USD", int64(1<<62), int32(0), field+1, "x")
			f.Add(m, field, "0.000000000000000001", "COIN", int64(year1), int32(0), field, " ")
			f.Add(m, field, "-0", "USD", int64(year9999), int32(999999999), field+2, "Treasury:ops")
			f.Add(m, field, "Treasury:x,COIN:issued", "EUR", int64(-1<<63), int32(-1), field, strings.Repeat("é", 200))
		}
	}
	f.Fuzz(func(t *testing.T, method, field1 uint8, s1, asset string, n int64, nanos int32, field2 uint8, s2 string) {
		sent, err := checkRequest(conn, methods, fuzzInput{method, field1, s1, asset, n, nanos, field2, s2}, answerable)
		if err != nil {
			t.Fatal(err)
		}
		if !sent {
			t.Skip("not a request a client can send") // invalid UTF-8; TestUndecodableRequest covers it
		}
	})
}

// fuzzInput is one fuzzed request: which RPC, and two field edits.
type fuzzInput struct {
	method, field1 uint8
	s1, asset      string
	n              int64
	nanos          int32
	field2         uint8
	s2             string
}

// checkRequest sends the request in describes and checks its answer: a code
// in allowed, bad input naming a field of the request, and a write answered
// OK answering the same when sent again. It reports false for a request a
// client cannot send, and what it found wrong as an error.
func checkRequest(conn grpc.ClientConnInterface, methods []rpcMethod, in fuzzInput, allowed map[codes.Code]bool) (bool, error) {
	rpc := methods[int(in.method)%len(methods)]
	req := proto.Clone(rpc.valid)
	edit(req.ProtoReflect(), in.field1, in.s1, in.asset, in.n, in.nanos)
	edit(req.ProtoReflect(), in.field2, in.s2, in.asset, -in.n, in.nanos)
	if _, err := proto.Marshal(req); err != nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply := rpc.reply.New().Interface()
	err := conn.Invoke(ctx, rpc.path, req, reply)
	code := status.Code(err)
	switch {
	case !allowed[code]:
		return true, fmt.Errorf("%s %v: %v", rpc.path, req, err)
	case code == codes.InvalidArgument && !isFieldOf(req.ProtoReflect().Descriptor(), fieldOf(err)):
		return true, fmt.Errorf("%s %v: %v names no field of the request", rpc.path, req, err)
	case preconditionOf(err) != "" && !isFieldOf(req.ProtoReflect().Descriptor(), preconditionOf(err)):
		return true, fmt.Errorf("%s %v: %v names %q, no field of the request", rpc.path, req, err, preconditionOf(err))
	case domainOp(err) != "":
		return true, fmt.Errorf("%s %v: %v names the domain's operation %s", rpc.path, req, err, domainOp(err))
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return true, fmt.Errorf("%s %v took over 10 s", rpc.path, req)
	case code != codes.OK || !rpc.write:
		return true, nil
	}
	// The same write again, as a client retrying after a lost answer:
	// the original answer, marked replayed where it is a transaction.
	again := rpc.reply.New().Interface()
	if err := conn.Invoke(ctx, rpc.path, req, again); err != nil {
		return true, fmt.Errorf("%s %v: retried, %v", rpc.path, req, err)
	}
	want := proto.Clone(reply)
	if tx := transactionOf(want); tx != nil {
		tx.Replayed = true
	}
	if !proto.Equal(again, want) {
		return true, fmt.Errorf("%s %v: retried, answered %v, want %v", rpc.path, req, again, want)
	}
	// What a write answered with its postings is what finance reads back
	// (a read is no replay, whether the write was or not).
	tx := transactionOf(proto.Clone(reply))
	if len(tx.GetPostings()) == 0 {
		return true, nil // none, or the basic view
	}
	tx.Replayed = false
	read, err := pb.NewLedgerServiceClient(conn).GetTransaction(ctx, &pb.GetTransactionRequest{Id: tx.Id})
	if err != nil {
		return true, fmt.Errorf("%s %v: reading %s back: %v", rpc.path, req, tx.Id, err)
	}
	if !proto.Equal(read.Transaction, tx) {
		return true, fmt.Errorf("%s %v: answered %v, read back %v", rpc.path, req, tx, read.Transaction)
	}
	return true, nil
}

// transactionOf is the transaction a write answered with, if it has one.
func transactionOf(reply proto.Message) *pb.Transaction {
	field := reply.ProtoReflect().Descriptor().Fields().ByName("transaction")
	if field == nil || !reply.ProtoReflect().Has(field) {
		return nil
	}
	return reply.ProtoReflect().Get(field).Message().Interface().(*pb.Transaction)
}

// The fuzzer's checks with callers racing: 8 of them send requests drawn
// from the values the seeds use, for 3 s. A read may also be Aborted (new
// accounts kept appearing while it read), which a caller retries.
func TestConcurrentRequests(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	methods := protocolMethods(t, validRequests(e, t))
	conn := e.dial(t, everyScope)
	allowed := maps.Clone(answerable)
	allowed[codes.Aborted] = true
	strs := []string{"", "a b", "x", "-0", "0.001", "1", "7", "Treasury:ops", "COIN:issued", "v1", "star", "rose", "9999999999999999999999.99"}
	assets := []string{"USD", "COIN", "EUR", "XYZ"}
	nums := []int64{0, -1, 1, 5, 100, 1 << 40, time.Now().Unix()}
	deadline := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	var sent atomic.Int64
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			pick := func(list []string) string { return list[rng.IntN(len(list))] }
			for time.Now().Before(deadline) && !t.Failed() {
				in := fuzzInput{uint8(rng.IntN(256)), uint8(rng.IntN(16)), pick(strs), pick(assets), nums[rng.IntN(len(nums))], 0,
					uint8(rng.IntN(16)), pick(strs)}
				if _, err := checkRequest(conn, methods, in, allowed); err != nil {
					t.Error(err)
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d requests", sent.Load())
	r, err := pb.NewLedgerServiceClient(conn).Verify(context.Background(), &pb.VerifyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Violations) > 0 {
		t.Errorf("the ledger does not verify: %v", r.Violations)
	}
}
