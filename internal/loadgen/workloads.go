package loadgen

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/coinledger/coinledger/internal/par"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

func usd(amount string) *pb.Money { return &pb.Money{Amount: amount, Asset: "USD"} }

// transfers moves cents between treasury accounts: between random pairs
// (spread), or from random accounts into one account that every request
// credits (hot). Each account starts with a million dollars from a mint
// that may go negative.
type transfers struct {
	hot      bool
	accounts []string
	sink     string
}

func (t *transfers) setup(ctx context.Context, g *gen) error {
	prefix := "Treasury:" + g.run + ":"
	mint, hot := prefix+"mint", prefix+"hot"
	if _, err := g.rpc.treasury.CreateAccount(ctx, &pb.CreateAccountRequest{Name: mint, Asset: "USD",
		NormalSide: pb.Side_SIDE_DEBIT, AllowNegative: true, Shards: 8}); err != nil {
		return err
	}
	if t.hot {
		if _, err := g.rpc.treasury.CreateAccount(ctx, &pb.CreateAccountRequest{Name: hot, Asset: "USD",
			NormalSide: pb.Side_SIDE_CREDIT, Shards: 8}); err != nil {
			return err
		}
		t.sink = hot
	}
	t.accounts = make([]string, g.cfg.Accounts)
	for i := range t.accounts {
		t.accounts[i] = fmt.Sprintf("%sa%d", prefix, i)
	}
	return g.each(ctx, "accounts", len(t.accounts), func(ctx context.Context, i int) error {
		if _, err := g.rpc.treasury.CreateAccount(ctx, &pb.CreateAccountRequest{Name: t.accounts[i], Asset: "USD",
			NormalSide: pb.Side_SIDE_CREDIT}); err != nil {
			return err
		}
		_, err := g.rpc.treasury.Transfer(ctx, &pb.TransferRequest{IdempotencyKey: fmt.Sprintf("%s-fund-%d", g.run, i),
			From: mint, To: t.accounts[i], Amount: usd("1000000")})
		return err
	})
}

func (t *transfers) do(ctx context.Context, w *worker) (ack, error) {
	from := w.rng.IntN(len(t.accounts))
	to := t.sink
	if !t.hot {
		j := w.rng.IntN(len(t.accounts) - 1)
		if j >= from {
			j++
		}
		to = t.accounts[j]
	}
	g := w.gen
	w.op = "transfer"
	key := w.key(g, "t")
	r, err := g.rpc.treasury.Transfer(ctx, &pb.TransferRequest{IdempotencyKey: key, From: t.accounts[from], To: to,
		Amount: usd(fmt.Sprintf("0.%02d", 1+w.rng.IntN(99)))}, ackOnly)
	if err != nil {
		return ack{}, err
	}
	return ack{r.Transaction.Id, r.Transaction.IdempotencyKey}, nil
}

func (t *transfers) expected(codes.Code) bool { return false }

// gifting is the gift storm: viewers, each holding a 100,000-coin purchase
// and 30 promo coins, send 5-coin gifts to one creator (2.5 diamonds each,
// through the creator's carry). Mixed adds purchases (10%), refunds of
// those purchases (3%) and reads of wallets and earnings (30%).
type gifting struct {
	mixed   bool
	viewers []string
	creator string
	pack    string
}

const (
	packCoins = 100_000
	packPrice = "999.99"
	giftCoins = 5
)

func (s *gifting) setup(ctx context.Context, g *gen) error {
	s.creator, s.pack = g.run+"-star", g.run+"-pack"
	var effective []*timestamppb.Timestamp
	pack, err := g.rpc.catalog.AddCoinPack(ctx, &pb.AddCoinPackRequest{PackId: s.pack, Channel: pb.Channel_CHANNEL_WEB,
		Coins: packCoins, Prices: []*pb.Money{usd(packPrice)}, FeeRate: "0.029", IdempotencyKey: s.pack})
	if err != nil {
		return err
	}
	effective = append(effective, pack.EffectiveAt)
	rule, err := g.rpc.catalog.AddShareRule(ctx, &pb.AddShareRuleRequest{Creator: s.creator, CreatorShare: "0.5",
		HoldingPeriod: durationpb.New(7 * 24 * time.Hour), DiamondValue: usd("0.005"), IdempotencyKey: s.creator + "-share"})
	if err != nil {
		return err
	}
	effective = append(effective, rule.EffectiveAt)
	if _, err := g.rpc.catalog.RegisterCreator(ctx, &pb.RegisterCreatorRequest{Creator: s.creator}); err != nil {
		return err
	}
	// New versions take effect after the server's lead time.
	for _, at := range effective {
		if wait := time.Until(at.AsTime()); wait > 0 {
			select {
			case <-time.After(wait + 50*time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	s.viewers = make([]string, g.cfg.Viewers)
	for i := range s.viewers {
		s.viewers[i] = fmt.Sprintf("%s-v%d", g.run, i)
	}
	err = g.each(ctx, "viewers", len(s.viewers), func(ctx context.Context, i int) error {
		if _, err := s.buy(ctx, g, s.viewers[i], fmt.Sprintf("%s-buy-%d", g.run, i)); err != nil {
			return err
		}
		_, err := g.rpc.purchases.GrantPromo(ctx, &pb.GrantPromoRequest{IdempotencyKey: fmt.Sprintf("%s-promo-%d", g.run, i),
			User: s.viewers[i], Coins: 30, Reason: "bench"})
		return err
	})
	return err
}

func (s *gifting) buy(ctx context.Context, g *gen, viewer, storeID string) (*pb.PurchaseResponse, error) {
	return g.rpc.purchases.Purchase(ctx, &pb.PurchaseRequest{Channel: pb.Channel_CHANNEL_WEB, StoreTransactionId: storeID,
		User: viewer, PackId: s.pack, AmountPaid: usd(packPrice), PurchasedAt: timestamppb.Now()})
}

func (s *gifting) do(ctx context.Context, w *worker) (ack, error) {
	g := w.gen
	viewer := s.viewers[w.rng.IntN(len(s.viewers))]
	roll := 50 // gift-hot: gifts only
	if s.mixed {
		roll = w.rng.IntN(100)
	}
	var tx *pb.Transaction
	switch {
	case roll < 10:
		w.op = "purchase"
		storeID := w.key(g, "buy")
		r, err := s.buy(ctx, g, viewer, storeID)
		if err != nil {
			return ack{}, err
		}
		w.bought = append(w.bought, storeID)
		tx = r.Transaction
	case roll < 13 && len(w.bought) > 0:
		w.op = "refund"
		storeID := w.bought[len(w.bought)-1]
		w.bought = w.bought[:len(w.bought)-1]
		r, err := g.rpc.purchases.Refund(ctx, &pb.RefundRequest{Channel: pb.Channel_CHANNEL_WEB, StoreTransactionId: storeID,
			RefundId: storeID + "-rf", RefundedAt: timestamppb.Now(), Policy: pb.RefundPolicy_REFUND_POLICY_CLAWBACK})
		if err != nil {
			return ack{}, err
		}
		tx = r.Transaction
	case roll < 70:
		w.op = "gift"
		// As a gifting service would in a storm: the write's id, not its
		// postings.
		r, err := g.rpc.gifts.SendGift(ctx, &pb.SendGiftRequest{IdempotencyKey: w.key(g, "g"), Viewer: viewer,
			Creator: s.creator, Coins: giftCoins, StreamId: g.run, SentAt: timestamppb.Now(), View: pb.TransactionView_TRANSACTION_VIEW_BASIC}, ackOnly)
		if err != nil {
			return ack{}, err
		}
		tx = r.Transaction
	case roll < 85:
		w.op = "wallet"
		_, err := g.rpc.gifts.GetWallet(ctx, &pb.GetWalletRequest{User: viewer})
		return ack{}, err
	default:
		w.op = "earnings"
		_, err := g.rpc.earnings.GetCreatorEarnings(ctx, &pb.GetCreatorEarningsRequest{Earner: s.creator})
		return ack{}, err
	}
	return ack{tx.Id, tx.IdempotencyKey}, nil
}

// expected: in the mixed workload a refund can leave a viewer without the
// coins for the next gift.
func (s *gifting) expected(c codes.Code) bool { return s.mixed && c == codes.FailedPrecondition }

// each runs f over n items with the run's concurrency, showing progress.
func (g *gen) each(ctx context.Context, what string, n int, f func(ctx context.Context, i int) error) error {
	return par.Each(ctx, n, g.cfg.Concurrency, func(ctx context.Context, i int) error {
		rctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
		defer cancel()
		if err := f(rctx, i); err != nil {
			return err
		}
		if (i+1)%250 == 0 || i+1 == n {
			fmt.Fprintf(g.cfg.Progress, "%s: set up %s %d of %d\n", g.cfg.Workload, what, i+1, n)
		}
		return nil
	})
}
