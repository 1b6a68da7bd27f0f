package api

import (
	"context"
	"maps"
	"slices"

	"github.com/shopspring/decimal"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

type catalog struct {
	pb.UnimplementedCatalogServiceServer
	s *Server
}

func (h catalog) AddCoinPack(ctx context.Context, r *pb.AddCoinPackRequest) (*pb.AddCoinPackResponse, error) {
	if err := checkString("idempotency_key", r.IdempotencyKey, true); err != nil {
		return nil, err
	}
	ch, err := channelOf(r.Channel)
	if err != nil {
		return nil, err
	}
	at, err := timeOf("effective_at", r.EffectiveAt, false)
	if err != nil {
		return nil, err
	}
	rate, err := parseDecimal("fee_rate", r.FeeRate)
	if err != nil {
		return nil, err
	}
	if len(r.Prices) == 0 || len(r.Prices) > 32 {
		return nil, badRequest("prices", "prices must hold 1-32 currencies")
	}
	prices := map[string]decimal.Decimal{}
	var renames []string // the domain names a price by its currency, the request by its place
	for i, p := range r.Prices {
		field := ledger.Indexed("prices", i)
		amount, currency, err := parseMoney(field, p)
		if err != nil {
			return nil, err
		}
		if _, twice := prices[currency]; twice {
			return nil, badRequest(field+".asset", field+".asset: "+currency+" is priced twice")
		}
		prices[currency] = amount
		renames = append(renames, "prices["+currency+"]", field+".amount")
	}
	got, err := h.s.catalog.AddCoinPack(ctx, economy.CoinPack{ID: r.PackId, Channel: ch, EffectiveAt: at, Coins: r.Coins, Prices: prices, FeeRate: rate,
		Key: r.IdempotencyKey})
	if err != nil {
		return nil, protoFields(err, renames...)
	}
	return &pb.AddCoinPackResponse{EffectiveAt: timestamppb.New(got.EffectiveAt)}, nil
}

func (h catalog) AddGift(ctx context.Context, r *pb.AddGiftRequest) (*pb.AddGiftResponse, error) {
	if err := checkString("idempotency_key", r.IdempotencyKey, true); err != nil {
		return nil, err
	}
	at, err := timeOf("effective_at", r.EffectiveAt, false)
	if err != nil {
		return nil, err
	}
	got, err := h.s.catalog.AddGift(ctx, economy.Gift{ID: r.GiftId, EffectiveAt: at, Coins: r.Coins, Key: r.IdempotencyKey})
	if err != nil {
		return nil, err
	}
	return &pb.AddGiftResponse{EffectiveAt: timestamppb.New(got.EffectiveAt)}, nil
}

func (h catalog) AddShareRule(ctx context.Context, r *pb.AddShareRuleRequest) (*pb.AddShareRuleResponse, error) {
	if err := checkString("idempotency_key", r.IdempotencyKey, true); err != nil {
		return nil, err
	}
	at, err := timeOf("effective_at", r.EffectiveAt, false)
	if err != nil {
		return nil, err
	}
	share, err := parseDecimal("creator_share", r.CreatorShare)
	if err != nil {
		return nil, err
	}
	agencyShare := decimal.Zero
	if r.AgencyShare != "" {
		if agencyShare, err = parseDecimal("agency_share", r.AgencyShare); err != nil {
			return nil, err
		}
	}
	if r.HoldingPeriod == nil || r.HoldingPeriod.CheckValid() != nil {
		return nil, badRequest("holding_period", "holding_period is required")
	}
	value, currency, err := parseMoney("diamond_value", r.DiamondValue)
	if err != nil {
		return nil, err
	}
	got, err := h.s.catalog.AddShareRule(ctx, economy.ShareRule{Creator: r.Creator, EffectiveAt: at, CreatorShare: share, Agency: r.Agency,
		AgencyShare: agencyShare, HoldingPeriod: r.HoldingPeriod.AsDuration(), DiamondValue: value, DiamondCurrency: currency,
		Key: r.IdempotencyKey})
	if err != nil {
		return nil, protoFields(err, "diamond_currency", "diamond_value.asset")
	}
	return &pb.AddShareRuleResponse{EffectiveAt: timestamppb.New(got.EffectiveAt)}, nil
}

func (h catalog) RegisterCreator(ctx context.Context, r *pb.RegisterCreatorRequest) (*pb.RegisterCreatorResponse, error) {
	if err := h.s.catalog.RegisterCreator(ctx, r.Creator); err != nil {
		return nil, err
	}
	return &pb.RegisterCreatorResponse{}, nil
}

func (h catalog) AddLiveSession(ctx context.Context, r *pb.AddLiveSessionRequest) (*pb.AddLiveSessionResponse, error) {
	rate, err := parseDecimal("platform_rate", r.PlatformRate)
	if err != nil {
		return nil, err
	}
	share := decimal.Zero
	if r.PartnerShare != "" {
		if share, err = parseDecimal("partner_share", r.PartnerShare); err != nil {
			return nil, err
		}
	}
	if _, err := h.s.catalog.AddLiveSession(ctx, economy.LiveSession{ID: r.SessionId, Seller: r.Seller, Partner: r.Partner,
		PlatformRate: rate, PartnerShare: share}); err != nil {
		return nil, err
	}
	return &pb.AddLiveSessionResponse{}, nil
}

func (h catalog) GetCoinPack(ctx context.Context, r *pb.GetCoinPackRequest) (*pb.GetCoinPackResponse, error) {
	ch, err := channelOf(r.Channel)
	if err != nil {
		return nil, err
	}
	at, err := timeOf("at", r.At, false)
	if err != nil {
		return nil, err
	}
	p, err := h.s.catalog.CoinPack(ctx, r.PackId, ch, at)
	if err != nil {
		return nil, err
	}
	out := &pb.CoinPack{PackId: p.ID, Channel: r.Channel, EffectiveAt: timestamppb.New(p.EffectiveAt), Coins: p.Coins,
		FeeRate: ledger.DecimalString(p.FeeRate), RecordedAt: timestamppb.New(p.RecordedAt)}
	for _, currency := range slices.Sorted(maps.Keys(p.Prices)) {
		out.Prices = append(out.Prices, money(p.Prices[currency], currency))
	}
	return &pb.GetCoinPackResponse{Pack: out}, nil
}

func (h catalog) GetGift(ctx context.Context, r *pb.GetGiftRequest) (*pb.GetGiftResponse, error) {
	at, err := timeOf("at", r.At, false)
	if err != nil {
		return nil, err
	}
	g, err := h.s.catalog.Gift(ctx, r.GiftId, at)
	if err != nil {
		return nil, err
	}
	return &pb.GetGiftResponse{Gift: &pb.Gift{GiftId: g.ID, EffectiveAt: timestamppb.New(g.EffectiveAt), Coins: g.Coins,
		RecordedAt: timestamppb.New(g.RecordedAt)}}, nil
}

func (h catalog) GetShareRule(ctx context.Context, r *pb.GetShareRuleRequest) (*pb.GetShareRuleResponse, error) {
	at, err := timeOf("at", r.At, false)
	if err != nil {
		return nil, err
	}
	rule, err := h.s.catalog.ShareRule(ctx, r.Creator, at)
	if err != nil {
		return nil, err
	}
	out := &pb.ShareRule{Creator: rule.Creator, EffectiveAt: timestamppb.New(rule.EffectiveAt),
		CreatorShare: ledger.DecimalString(rule.CreatorShare), Agency: rule.Agency, HoldingPeriod: durationpb.New(rule.HoldingPeriod),
		DiamondValue: money(rule.DiamondValue, rule.DiamondCurrency), RecordedAt: timestamppb.New(rule.RecordedAt)}
	if rule.Agency != "" {
		out.AgencyShare = ledger.DecimalString(rule.AgencyShare)
	}
	return &pb.GetShareRuleResponse{Rule: out}, nil
}
