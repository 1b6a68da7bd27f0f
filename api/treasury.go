package api

import (
	"context"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

type treasury struct {
	pb.UnimplementedTreasuryServiceServer
	s *Server
}

func (h treasury) CreateAccount(ctx context.Context, r *pb.CreateAccountRequest) (*pb.CreateAccountResponse, error) {
	var normal ledger.Side
	switch r.NormalSide {
	case pb.Side_SIDE_DEBIT:
		normal = ledger.Debit
	case pb.Side_SIDE_CREDIT:
		normal = ledger.Credit
	default:
		return nil, badRequest("normal_side", "normal_side must be SIDE_DEBIT or SIDE_CREDIT")
	}
	if err := checkString("asset", r.Asset, true); err != nil {
		return nil, err
	}
	a, err := h.s.eco.CreateTreasuryAccount(ctx, economy.TreasuryAccount{Name: r.Name, Asset: r.Asset, Normal: normal,
		AllowNegative: r.AllowNegative, Shards: int(r.Shards)})
	if err != nil {
		return nil, err
	}
	return &pb.CreateAccountResponse{Account: accountOf(a)}, nil
}

func (h treasury) Transfer(ctx context.Context, r *pb.TransferRequest) (*pb.TransferResponse, error) {
	amount, asset, err := parseMoney("amount", r.Amount)
	if err != nil {
		return nil, err
	}
	if err := checkString("memo", r.Memo, false); err != nil {
		return nil, err
	}
	tx, err := h.s.eco.Transfer(ctx, economy.TransferRequest{Key: r.IdempotencyKey, From: r.From, To: r.To, Amount: amount, Asset: asset, Memo: r.Memo})
	if err != nil {
		return nil, err
	}
	return &pb.TransferResponse{Transaction: transactionOf(tx)}, nil
}

type liveShopping struct {
	pb.UnimplementedLiveShoppingServiceServer
	s *Server
}

func (h liveShopping) RecordSale(ctx context.Context, r *pb.RecordSaleRequest) (*pb.RecordSaleResponse, error) {
	amount, currency, err := parseMoney("amount", r.Amount)
	if err != nil {
		return nil, err
	}
	at, err := timeOf("sold_at", r.SoldAt, true)
	if err != nil {
		return nil, err
	}
	tx, err := h.s.eco.RecordLiveSale(ctx, economy.LiveSaleRequest{OrderID: r.OrderId, SessionID: r.SessionId, Amount: amount, Currency: currency, SoldAt: at})
	if err != nil {
		return nil, protoFields(err, "currency", "amount.asset")
	}
	return &pb.RecordSaleResponse{Transaction: transactionOf(tx)}, nil
}
