package api

import (
	"context"
	"strconv"

	"github.com/shopspring/decimal"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/coinledger/coinledger/ledger/economy"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

type catalog struct {
	pb.UnimplementedCatalogServiceServer
	s *Server
}

func (h catalog) AddCoinPack(ctx context.Context, r *pb.AddCoinPackRequest) (*pb.AddCoinPackResponse, error) {
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
	for i, p := range r.Prices {
		amount, currency, err := parseMoney("prices["+strconv.Itoa(i)+"]", p)
		if err != nil {
			return nil, err
		}
		prices[currency] = amount
	}
	got, err := h.s.catalog.AddCoinPack(ctx, economy.CoinPack{ID: r.PackId, Channel: ch, EffectiveAt: at, Coins: r.Coins, Prices: prices, FeeRate: rate})
	if err != nil {
		return nil, err
	}
	return &pb.AddCoinPackResponse{EffectiveAt: timestamppb.New(got.EffectiveAt)}, nil
}

func (h catalog) AddGift(ctx context.Context, r *pb.AddGiftRequest) (*pb.AddGiftResponse, error) {
	at, err := timeOf("effective_at", r.EffectiveAt, false)
	if err != nil {
		return nil, err
	}
	got, err := h.s.catalog.AddGift(ctx, economy.Gift{ID: r.GiftId, EffectiveAt: at, Coins: r.Coins})
	if err != nil {
		return nil, err
	}
	return &pb.AddGiftResponse{EffectiveAt: timestamppb.New(got.EffectiveAt)}, nil
}

func (h catalog) AddShareRule(ctx context.Context, r *pb.AddShareRuleRequest) (*pb.AddShareRuleResponse, error) {
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
		AgencyShare: agencyShare, HoldingPeriod: r.HoldingPeriod.AsDuration(), DiamondValue: value, DiamondCurrency: currency})
	if err != nil {
		return nil, err
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
