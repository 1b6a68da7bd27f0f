package api

import (
	"context"
	"slices"
	"time"

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
		return nil, protoFields(err, "currency", "amount_paid.asset")
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
		return nil, protoFields(err, "key", "idempotency_key")
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
		return nil, protoFields(err, "key", "idempotency_key", "gift_tx", "gift_transaction_id")
	}
	return &pb.ReverseGiftResponse{Transaction: transactionOf(tx)}, nil
}

func (h gifts) GetWallet(ctx context.Context, r *pb.GetWalletRequest) (*pb.GetWalletResponse, error) {
	if err := economy.CheckUserID("api.GetWallet", "user", r.User); err != nil {
		return nil, err
	}
	names := []string{economy.CoinWallet(r.User), economy.PromoWallet(r.User), economy.CoinDebt(r.User)}
	_, held, err := h.s.ledger.BalancesOf(ctx, time.Time{}, func() ([]*ledger.Account, error) {
		return h.s.accountsNamed(ctx, names)
	})
	if err != nil {
		return nil, err
	}
	coins := func(name string) *pb.Money { return money(held[name], economy.Coin) }
	return &pb.GetWalletResponse{Paid: coins(names[0]), Promo: coins(names[1]), Owed: coins(names[2])}, nil
}

type earnings struct {
	pb.UnimplementedEarningsServiceServer
	s *Server
}

func (h earnings) GetCreatorEarnings(ctx context.Context, r *pb.GetCreatorEarningsRequest) (*pb.GetCreatorEarningsResponse, error) {
	if err := economy.CheckEarner("api.GetCreatorEarnings", "earner", r.Earner); err != nil {
		return nil, err
	}
	asOf, err := timeOf("as_of", r.AsOf, false)
	if err != nil {
		return nil, err
	}
	isPending := func(a *ledger.Account) bool {
		earner, _, ok := economy.ParsePending(a.Name)
		return ok && earner == r.Earner
	}
	// By name, not prefix: creator "agency"'s prefix also starts every
	// agency's payables ("agency:{id}").
	isPayable := func(a *ledger.Account) bool { return a.Name == economy.CreatorPayable(r.Earner, a.Asset) }
	accounts, held, err := h.s.ledger.BalancesOf(ctx, asOf, func() ([]*ledger.Account, error) {
		pending, err := h.s.accountsUnder(ctx, economy.PendingDiamondsPrefix(r.Earner), isPending)
		if err != nil {
			return nil, err
		}
		payable, err := h.s.accountsUnder(ctx, economy.CreatorPayable(r.Earner, ""), isPayable)
		if err != nil {
			return nil, err
		}
		available, err := h.s.accountsNamed(ctx, []string{economy.AvailableDiamonds(r.Earner)})
		return slices.Concat(pending, payable, available), err
	})
	if err != nil {
		return nil, err
	}
	out := &pb.GetCreatorEarningsResponse{Available: money(held[economy.AvailableDiamonds(r.Earner)], economy.Diamond)}
	for _, a := range accounts {
		b := held[a.Name]
		switch {
		case isPending(a) && !b.IsZero():
			_, day, _ := economy.ParsePending(a.Name)
			out.Pending = append(out.Pending, &pb.PendingEarnings{ReleaseDay: day.Format(time.DateOnly), Diamonds: money(b, a.Asset)})
		// A payable opened after the instant is left out, so that the same
		// statement asked again later is identical; by what it holds, not
		// only by when it was opened, which is the server's clock and not
		// the database's that records entries.
		case isPayable(a) && (!b.IsZero() || asOf.IsZero() || !a.CreatedAt.After(asOf)):
			out.Payable = append(out.Payable, money(b, a.Asset))
		}
	}
	return out, nil
}

// accountsUnder lists the accounts under prefix that keep accepts.
func (s *Server) accountsUnder(ctx context.Context, prefix string, keep func(*ledger.Account) bool) ([]*ledger.Account, error) {
	var out []*ledger.Account
	after := ""
	for {
		page, err := s.ledger.Accounts(ctx, prefix, after, ledger.MaxPage)
		if err != nil {
			return nil, err
		}
		for _, a := range page {
			if keep(a) {
				out = append(out, a)
			}
		}
		if len(page) < ledger.MaxPage {
			return out, nil
		}
		after = page[len(page)-1].Name
	}
}

// accountsNamed returns those of the named accounts that exist.
func (s *Server) accountsNamed(ctx context.Context, names []string) ([]*ledger.Account, error) {
	found, err := s.ledger.AccountsByName(ctx, names)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(found, func(a *ledger.Account) bool { return a == nil }), nil
}
