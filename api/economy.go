package api

import (
	"context"
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

type purchases struct {
	pb.UnimplementedPurchaseServiceServer
	s *Server
}

func (h purchases) Purchase(ctx context.Context, r *pb.PurchaseRequest) (*pb.PurchaseResponse, error) {
	ch, err := channelOf(r.Channel)
	if err != nil {
		return nil, err
	}
	paid, currency, err := parseMoney("amount_paid", r.AmountPaid)
	if err != nil {
		return nil, err
	}
	at, err := timeOf("purchased_at", r.PurchasedAt, true)
	if err != nil {
		return nil, err
	}
	tx, err := h.s.eco.Purchase(ctx, economy.PurchaseRequest{Channel: ch, StoreTransactionID: r.StoreTransactionId, User: r.User,
		PackID: r.PackId, AmountPaid: paid, Currency: currency, PurchasedAt: at})
	if err != nil {
		return nil, err
	}
	return &pb.PurchaseResponse{Transaction: transactionOf(tx)}, nil
}

func (h purchases) GrantPromo(ctx context.Context, r *pb.GrantPromoRequest) (*pb.GrantPromoResponse, error) {
	if err := checkString("idempotency_key", r.IdempotencyKey, true); err != nil {
		return nil, err
	}
	tx, err := h.s.eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: r.IdempotencyKey, User: r.User, Coins: r.Coins, Reason: r.Reason})
	if err != nil {
		return nil, err
	}
	return &pb.GrantPromoResponse{Transaction: transactionOf(tx)}, nil
}

var policies = map[pb.RefundPolicy]economy.RefundPolicy{
	pb.RefundPolicy_REFUND_POLICY_CLAWBACK: economy.ClawbackThenLoss,
	pb.RefundPolicy_REFUND_POLICY_LOSS:     economy.AbsorbLoss,
	pb.RefundPolicy_REFUND_POLICY_DEBT:     economy.OweCoins,
}

func (h purchases) Refund(ctx context.Context, r *pb.RefundRequest) (*pb.RefundResponse, error) {
	ch, err := channelOf(r.Channel)
	if err != nil {
		return nil, err
	}
	policy, ok := policies[r.Policy]
	if !ok {
		return nil, badRequest("policy", "policy must be REFUND_POLICY_CLAWBACK, REFUND_POLICY_LOSS or REFUND_POLICY_DEBT")
	}
	at, err := timeOf("refunded_at", r.RefundedAt, true)
	if err != nil {
		return nil, err
	}
	tx, err := h.s.eco.Refund(ctx, economy.RefundRequest{Channel: ch, StoreTransactionID: r.StoreTransactionId, RefundID: r.RefundId,
		Coins: r.Coins, RefundedAt: at}, policy)
	if err != nil {
		return nil, err
	}
	return &pb.RefundResponse{Transaction: transactionOf(tx)}, nil
}

func (h purchases) ReverseRefund(ctx context.Context, r *pb.ReverseRefundRequest) (*pb.ReverseRefundResponse, error) {
	ch, err := channelOf(r.Channel)
	if err != nil {
		return nil, err
	}
	tx, err := h.s.eco.ReverseRefund(ctx, economy.ReverseRefundRequest{Channel: ch, RefundID: r.RefundId})
	if err != nil {
		return nil, err
	}
	return &pb.ReverseRefundResponse{Transaction: transactionOf(tx)}, nil
}

type gifts struct {
	pb.UnimplementedGiftServiceServer
	s *Server
}

func (h gifts) SendGift(ctx context.Context, r *pb.SendGiftRequest) (*pb.SendGiftResponse, error) {
	if err := checkString("idempotency_key", r.IdempotencyKey, true); err != nil {
		return nil, err
	}
	at, err := timeOf("sent_at", r.SentAt, true)
	if err != nil {
		return nil, err
	}
	if _, ok := pb.TransactionView_name[int32(r.View)]; !ok {
		return nil, badRequest("view", "view must be TRANSACTION_VIEW_BASIC or TRANSACTION_VIEW_FULL")
	}
	tx, err := h.s.eco.SendGift(ctx, economy.GiftRequest{Key: r.IdempotencyKey, Viewer: r.Viewer, Creator: r.Creator, GiftID: r.GiftId,
		Coins: r.Coins, StreamID: r.StreamId, SentAt: at})
	if err != nil {
		return nil, err
	}
	if r.View == pb.TransactionView_TRANSACTION_VIEW_BASIC {
		// Rendering, marshalling and sending a gift's ten postings and its
		// terms were about 4% of the Go CPU a gift in a storm.
		return &pb.SendGiftResponse{Transaction: basicTransactionOf(tx)}, nil
	}
	return &pb.SendGiftResponse{Transaction: transactionOf(tx)}, nil
}

func (h gifts) ReverseGift(ctx context.Context, r *pb.ReverseGiftRequest) (*pb.ReverseGiftResponse, error) {
	if err := checkString("idempotency_key", r.IdempotencyKey, true); err != nil {
		return nil, err
	}
	if err := checkString("reason", r.Reason, false); err != nil {
		return nil, err
	}
	tx, err := h.s.eco.ReverseGift(ctx, economy.ReverseGiftRequest{Key: r.IdempotencyKey, GiftTx: r.GiftTransactionId, Reason: r.Reason})
	if err != nil {
		return nil, err
	}
	return &pb.ReverseGiftResponse{Transaction: transactionOf(tx)}, nil
}

func (h gifts) GetWallet(ctx context.Context, r *pb.GetWalletRequest) (*pb.GetWalletResponse, error) {
	if err := checkString("user", r.User, true); err != nil {
		return nil, err
	}
	out := &pb.GetWalletResponse{}
	for _, b := range []struct {
		account string
		into    **pb.Money
	}{
		{economy.CoinWallet(r.User), &out.Paid},
		{economy.PromoWallet(r.User), &out.Promo},
		{economy.CoinDebt(r.User), &out.Owed},
	} {
		m, err := h.s.balance(ctx, b.account, economy.Coin, time.Time{})
		if err != nil {
			return nil, err
		}
		*b.into = m
	}
	return out, nil
}

// balance is an account's balance now, zero when it was never opened.
func (s *Server) balance(ctx context.Context, account, asset string, asOf time.Time) (*pb.Money, error) {
	b, err := s.ledger.Balance(ctx, account, asOf)
	if err != nil && ledger.KindOf(err) != ledger.NotFound {
		return nil, err
	}
	return money(b, asset), nil
}

type earnings struct {
	pb.UnimplementedEarningsServiceServer
	s *Server
}

func (h earnings) GetCreatorEarnings(ctx context.Context, r *pb.GetCreatorEarningsRequest) (*pb.GetCreatorEarningsResponse, error) {
	if err := checkString("earner", r.Earner, true); err != nil {
		return nil, err
	}
	asOf, err := timeOf("as_of", r.AsOf, false)
	if err != nil {
		return nil, err
	}
	out := &pb.GetCreatorEarningsResponse{}
	err = h.s.eachAccount(ctx, economy.PendingDiamondsPrefix(r.Earner), asOf, func(a *ledger.Account, b decimal.Decimal) {
		if earner, day, ok := economy.ParsePending(a.Name); ok && earner == r.Earner && !b.IsZero() {
			out.Pending = append(out.Pending, &pb.PendingEarnings{ReleaseDay: day.Format(time.DateOnly), Diamonds: money(b, a.Asset)})
		}
	})
	if err != nil {
		return nil, err
	}
	if out.Available, err = h.s.balance(ctx, economy.AvailableDiamonds(r.Earner), economy.Diamond, asOf); err != nil {
		return nil, err
	}
	// By name, not prefix: creator "agency"'s prefix also starts every
	// agency's payables ("agency:{id}").
	err = h.s.eachAccount(ctx, economy.CreatorPayable(r.Earner, ""), asOf, func(a *ledger.Account, b decimal.Decimal) {
		if a.Name == economy.CreatorPayable(r.Earner, a.Asset) {
			out.Payable = append(out.Payable, money(b, a.Asset))
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachAccount calls fn with every account under prefix and its balance,
// now (asOf zero) or as of an instant, leaving out accounts opened after it.
func (s *Server) eachAccount(ctx context.Context, prefix string, asOf time.Time, fn func(*ledger.Account, decimal.Decimal)) error {
	after := ""
	for {
		page, err := s.ledger.Accounts(ctx, prefix, after, ledger.MaxPage)
		if err != nil {
			return err
		}
		existed := page
		if !asOf.IsZero() {
			existed = slices.DeleteFunc(slices.Clone(page), func(a *ledger.Account) bool { return a.CreatedAt.After(asOf) })
		}
		balances, err := s.ledger.Balances(ctx, existed, asOf)
		if err != nil {
			return err
		}
		for i, a := range existed {
			fn(a, balances[i])
		}
		if len(page) < ledger.MaxPage {
			return nil
		}
		after = page[len(page)-1].Name
	}
}
