package api

import (
	"time"

	"github.com/shopspring/decimal"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

// maxString bounds every free-form string field; ids are checked tighter by
// the domain.
const maxString = 256

// parseDecimal reads an amount or rate string; the domain checks what the
// value is for (an amount's sign and scale, a share's range).
func parseDecimal(field, s string) (decimal.Decimal, error) {
	return ledger.ParseDecimal("", field, s)
}

// parseMoney reads a Money, requiring its asset.
func parseMoney(field string, m *pb.Money) (decimal.Decimal, string, error) {
	if m == nil {
		return decimal.Decimal{}, "", badRequest(field, field+" is required")
	}
	if m.Asset == "" || len(m.Asset) > 16 {
		return decimal.Decimal{}, "", badRequest(field+".asset", field+".asset must be an asset code")
	}
	d, err := parseDecimal(field+".amount", m.Amount)
	return d, m.Asset, err
}

// checkString bounds a string field.
func checkString(field, s string, required bool) error {
	if required && s == "" {
		return badRequest(field, field+" is required")
	}
	if len(s) > maxString {
		return badRequest(field, field+" is longer than 256 bytes")
	}
	return nil
}

// timeOf reads an optional timestamp; required ones say so.
func timeOf(field string, ts *timestamppb.Timestamp, required bool) (time.Time, error) {
	if ts == nil {
		if required {
			return time.Time{}, badRequest(field, field+" is required")
		}
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, badRequest(field, field+" is not a valid timestamp")
	}
	return ts.AsTime(), nil
}

var channels = map[pb.Channel]economy.Channel{
	pb.Channel_CHANNEL_APPLE:  economy.Apple,
	pb.Channel_CHANNEL_GOOGLE: economy.Google,
	pb.Channel_CHANNEL_WEB:    economy.Web,
}

func channelOf(c pb.Channel) (economy.Channel, error) {
	ch, ok := channels[c]
	if !ok {
		return "", badRequest("channel", "channel must be CHANNEL_APPLE, CHANNEL_GOOGLE or CHANNEL_WEB")
	}
	return ch, nil
}

func sideOf(s ledger.Side) pb.Side {
	if s == ledger.Debit {
		return pb.Side_SIDE_DEBIT
	}
	return pb.Side_SIDE_CREDIT
}

func money(amount decimal.Decimal, asset string) *pb.Money {
	return &pb.Money{Amount: ledger.DecimalString(amount), Asset: asset}
}

func transactionOf(tx *ledger.Transaction) *pb.Transaction {
	out := basicTransactionOf(tx)
	out.MetadataJson = string(tx.Metadata)
	for _, p := range tx.Postings {
		out.Postings = append(out.Postings, &pb.Posting{Account: p.Account, Side: sideOf(p.Side), Amount: money(p.Amount, p.Asset)})
	}
	return out
}

// basicTransactionOf is TRANSACTION_VIEW_BASIC: no postings, no metadata.
func basicTransactionOf(tx *ledger.Transaction) *pb.Transaction {
	out := &pb.Transaction{
		Id:             tx.ID.String(),
		IdempotencyKey: tx.IdempotencyKey,
		Kind:           tx.Kind,
		EffectiveAt:    timestamppb.New(tx.EffectiveAt),
		RecordedAt:     timestamppb.New(tx.RecordedAt),
		Replayed:       tx.Replayed,
	}
	if tx.Reverses != nil {
		out.Reverses = tx.Reverses.String()
	}
	return out
}
