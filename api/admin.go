package api

import (
	"context"
	"time"

	"github.com/coinledger/coinledger/ledger/economy"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

type admin struct {
	pb.UnimplementedAdminServiceServer
	s *Server
}

func (h admin) BlockViewer(ctx context.Context, r *pb.BlockViewerRequest) (*pb.BlockViewerResponse, error) {
	if err := checkString("idempotency_key", r.IdempotencyKey, true); err != nil {
		return nil, err
	}
	if err := h.s.eco.BlockViewer(ctx, r.IdempotencyKey, r.User); err != nil {
		return nil, err
	}
	return &pb.BlockViewerResponse{}, nil
}

func (h admin) UnblockViewer(ctx context.Context, r *pb.UnblockViewerRequest) (*pb.UnblockViewerResponse, error) {
	if err := checkString("idempotency_key", r.IdempotencyKey, true); err != nil {
		return nil, err
	}
	if err := h.s.eco.UnblockViewer(ctx, r.IdempotencyKey, r.User); err != nil {
		return nil, err
	}
	return &pb.UnblockViewerResponse{}, nil
}

func (h admin) ReleaseEarnings(ctx context.Context, r *pb.ReleaseEarningsRequest) (*pb.ReleaseEarningsResponse, error) {
	asOf, err := timeOf("as_of", r.AsOf, false)
	if err != nil {
		return nil, err
	}
	if asOf.IsZero() {
		asOf = time.Now()
	}
	rep, err := h.s.eco.ReleaseEarnings(ctx, asOf, nil)
	if err != nil {
		return nil, err
	}
	return &pb.ReleaseEarningsResponse{Scanned: int64(rep.Scanned), Released: int64(rep.Released),
		Diamonds: money(rep.Diamonds, economy.Diamond)}, nil
}
