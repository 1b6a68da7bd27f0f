package api

import (
	"context"
	"encoding/base64"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/coinledger/coinledger/ledger"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

type ledgerReads struct {
	pb.UnimplementedLedgerServiceServer
	s *Server
}

const defaultPageSize = 100

func pageSize(n int32) (int, error) {
	switch {
	case n == 0:
		return defaultPageSize, nil
	case n < 0 || n > ledger.MaxPage:
		return 0, badRequest("page_size", "page_size must be between 1 and 1000")
	}
	return int(n), nil
}

func (h ledgerReads) ListAccounts(ctx context.Context, r *pb.ListAccountsRequest) (*pb.ListAccountsResponse, error) {
	n, err := pageSize(r.PageSize)
	if err != nil {
		return nil, err
	}
	if err := checkString("prefix", r.Prefix, false); err != nil {
		return nil, err
	}
	// A token this service issued is an account's name.
	after, err := base64.RawURLEncoding.DecodeString(r.PageToken)
	if err != nil || len(after) > 0 && ledger.ValidateAccountName("", "", string(after)) != nil {
		return nil, badRequest("page_token", "page_token is not one this service issued")
	}
	page, err := h.s.ledger.Accounts(ctx, r.Prefix, string(after), n)
	if err != nil {
		return nil, err
	}
	out := &pb.ListAccountsResponse{}
	for _, a := range page {
		out.Accounts = append(out.Accounts, accountOf(a))
	}
	if len(page) == n {
		out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(page[len(page)-1].Name))
	}
	return out, nil
}

func (h ledgerReads) GetBalance(ctx context.Context, r *pb.GetBalanceRequest) (*pb.GetBalanceResponse, error) {
	if err := checkString("account", r.Account, true); err != nil {
		return nil, err
	}
	asOf, err := timeOf("as_of", r.AsOf, false)
	if err != nil {
		return nil, err
	}
	a, err := h.s.ledger.Account(ctx, r.Account)
	if err != nil {
		return nil, &ledger.Error{Field: "account", Err: err}
	}
	b, err := h.s.ledger.Balance(ctx, r.Account, asOf)
	if err != nil {
		return nil, err
	}
	return &pb.GetBalanceResponse{Balance: money(b, a.Asset)}, nil
}

func (h ledgerReads) BatchGetBalances(ctx context.Context, r *pb.BatchGetBalancesRequest) (*pb.BatchGetBalancesResponse, error) {
	if len(r.Accounts) == 0 || len(r.Accounts) > ledger.MaxPage {
		return nil, badRequest("accounts", "accounts must name 1-1000 accounts")
	}
	asOf, err := timeOf("as_of", r.AsOf, false)
	if err != nil {
		return nil, err
	}
	for i, name := range r.Accounts {
		if err := checkString(ledger.Indexed("accounts", i), name, true); err != nil {
			return nil, err
		}
		if err := ledger.ValidateAccountName("api.BatchGetBalances", ledger.Indexed("accounts", i), name); err != nil {
			return nil, err
		}
	}
	accounts, err := h.s.ledger.AccountsByName(ctx, r.Accounts)
	if err != nil {
		return nil, err
	}
	for i, a := range accounts {
		if a == nil {
			return nil, &ledger.Error{Field: ledger.Indexed("accounts", i), Err: ledger.ErrAccountNotFound, Message: r.Accounts[i]}
		}
	}
	balances, err := h.s.ledger.Balances(ctx, accounts, asOf)
	if err != nil {
		return nil, err
	}
	out := &pb.BatchGetBalancesResponse{Balances: make([]*pb.Money, len(accounts))}
	for i, a := range accounts {
		out.Balances[i] = money(balances[i], a.Asset)
	}
	return out, nil
}

func (h ledgerReads) ListEntries(ctx context.Context, r *pb.ListEntriesRequest) (*pb.ListEntriesResponse, error) {
	if err := checkString("account", r.Account, true); err != nil {
		return nil, err
	}
	n, err := pageSize(r.PageSize)
	if err != nil {
		return nil, err
	}
	from, err := timeOf("recorded_after", r.RecordedAfter, false)
	if err != nil {
		return nil, err
	}
	until, err := timeOf("recorded_until", r.RecordedUntil, false)
	if err != nil {
		return nil, err
	}
	if !from.IsZero() && !until.IsZero() && until.Before(from) {
		return nil, badRequest("recorded_until", "recorded_until is before recorded_after")
	}
	after, err := ledger.ParseCursor("api.ListEntries", "page_token", r.PageToken)
	if err != nil {
		return nil, err
	}
	if after.IsZero() && !from.IsZero() {
		after = ledger.CursorAfter(from)
	}
	a, err := h.s.ledger.Account(ctx, r.Account)
	if err != nil {
		return nil, &ledger.Error{Field: "account", Err: err}
	}
	page, err := h.s.ledger.Entries(ctx, r.Account, after, until, n)
	if err != nil {
		return nil, err
	}
	out := &pb.ListEntriesResponse{}
	for _, e := range page {
		out.Entries = append(out.Entries, &pb.Entry{TransactionId: e.TxID.String(), Index: int32(e.Index), Kind: e.Kind, Side: sideOf(e.Side),
			Amount: money(e.Amount, a.Asset), EffectiveAt: timestamppb.New(e.EffectiveAt), RecordedAt: timestamppb.New(e.RecordedAt)})
	}
	if len(page) == n {
		out.NextPageToken = page[len(page)-1].After().String()
	}
	return out, nil
}

func (h ledgerReads) GetTransaction(ctx context.Context, r *pb.GetTransactionRequest) (*pb.GetTransactionResponse, error) {
	var (
		tx  *ledger.Transaction
		err error
	)
	switch {
	case (r.Id == "") == (r.IdempotencyKey == ""):
		return nil, badRequest("id", "exactly one of id and idempotency_key is required")
	case r.Id != "":
		id, perr := uuid.Parse(r.Id)
		if perr != nil {
			return nil, badRequest("id", "id must be a UUID")
		}
		tx, err = h.s.ledger.Transaction(ctx, id)
	default:
		if err := checkString("idempotency_key", r.IdempotencyKey, true); err != nil {
			return nil, err
		}
		tx, err = h.s.ledger.TransactionByKey(ctx, r.IdempotencyKey)
	}
	if err != nil {
		return nil, err
	}
	return &pb.GetTransactionResponse{Transaction: transactionOf(tx)}, nil
}

func accountOf(a *ledger.Account) *pb.Account {
	return &pb.Account{Id: a.ID.String(), Name: a.Name, Asset: a.Asset, NormalSide: sideOf(a.Normal),
		AllowNegative: a.AllowNegative, Status: string(a.Status)}
}

func (h ledgerReads) Verify(ctx context.Context, _ *pb.VerifyRequest) (*pb.VerifyResponse, error) {
	r, err := h.s.ledger.Verify(ctx)
	if err != nil {
		return nil, err
	}
	out := &pb.VerifyResponse{Assets: int32(r.Assets), Accounts: int32(r.Accounts), Transactions: r.Transactions, Entries: r.Entries,
		ViolationsOmitted: r.Omitted}
	economic, omitted, err := h.s.eco.Verify(ctx, nil)
	if err != nil {
		return nil, err
	}
	out.ViolationsOmitted += omitted
	for _, v := range append(r.Violations, economic...) {
		out.Violations = append(out.Violations, &pb.Violation{Check: v.Check, Subject: v.Subject, Detail: v.Detail})
	}
	return out, nil
}
