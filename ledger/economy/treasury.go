package economy

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
)

// TreasuryPrefix starts the name of every account treasury transfers may
// create or move. The economy's own accounts never start with it, so a plain
// transfer cannot mint coins or move value around the lots and carries that
// the economy's identities rest on.
const TreasuryPrefix = "Treasury:"

// TreasuryAccount is an account finance runs by hand (float, adjustments,
// settlement accounts of partners not modelled yet).
type TreasuryAccount struct {
	Name          string // starts with TreasuryPrefix
	Asset         string
	Normal        ledger.Side
	AllowNegative bool
	Shards        int // balance rows; 0 means 1. A hot account wants several.
}

// CreateTreasuryAccount creates the account, or returns it when one with the
// same attributes exists.
func (e *Economy) CreateTreasuryAccount(ctx context.Context, a TreasuryAccount) (*ledger.Account, error) {
	const op = "economy.CreateTreasuryAccount"
	if err := checkTreasuryName(op, "name", a.Name); err != nil {
		return nil, err
	}
	if a.Normal != ledger.Debit && a.Normal != ledger.Credit {
		return nil, invalid(op, "normal_side", "must be debit or credit")
	}
	return e.ledger.CreateAccount(ctx, ledger.Account{Name: a.Name, Asset: a.Asset, Normal: a.Normal,
		AllowNegative: a.AllowNegative, Shards: a.Shards})
}

// TransferRequest moves an amount between two treasury accounts.
type TransferRequest struct {
	Key      string // the client's idempotency key
	From, To string
	Amount   decimal.Decimal
	Asset    string // must be both accounts' asset
	Memo     string
}

// Transfer posts one balanced transaction, idempotent on the key.
func (e *Economy) Transfer(ctx context.Context, req TransferRequest) (*ledger.Transaction, error) {
	const op = "economy.Transfer"
	if err := checkKey(op, "idempotency_key", req.Key); err != nil {
		return nil, err
	}
	asset, err := e.ledger.Asset(ctx, req.Asset)
	if ledger.KindOf(err) == ledger.NotFound {
		return nil, invalid(op, "amount.asset", "%q is not an asset of the ledger", req.Asset)
	}
	if err != nil {
		return nil, err
	}
	if err := asset.CheckAmount(op, "amount", req.Amount); err != nil {
		return nil, err
	}
	for _, f := range []struct{ field, name string }{{"from", req.From}, {"to", req.To}} {
		if err := checkTreasuryName(op, f.field, f.name); err != nil {
			return nil, err
		}
		held, err := e.assetOf(ctx, f.name)
		if err != nil {
			return nil, &ledger.Error{Op: op, Field: f.field, Err: err}
		}
		if held != req.Asset {
			return nil, invalid(op, "amount.asset", "is %s, but %s holds %s", req.Asset, f.name, held)
		}
	}
	if req.From == req.To {
		return nil, invalid(op, "to", "must differ from from")
	}
	if len(req.Memo) > 256 {
		return nil, invalid(op, "memo", "must be at most 256 bytes")
	}
	meta, _ := json.Marshal(map[string]string{"memo": req.Memo})
	tx, err := e.ledger.Post(ctx, ledger.PostRequest{
		IdempotencyKey: "transfer:" + req.Key,
		Kind:           "transfer",
		Metadata:       meta,
		Postings: []ledger.PostingRequest{
			{Account: req.From, Side: ledger.Debit, Amount: req.Amount},
			{Account: req.To, Side: ledger.Credit, Amount: req.Amount},
		},
	})
	// A refused posting is named by the account the caller gave.
	switch field := ledger.FieldOf(err); {
	case strings.HasPrefix(field, "postings[0]"):
		return nil, &ledger.Error{Op: op, Field: "from", Err: err}
	case strings.HasPrefix(field, "postings[1]"):
		return nil, &ledger.Error{Op: op, Field: "to", Err: err}
	}
	return tx, err
}

func checkTreasuryName(op, field, name string) error {
	if !strings.HasPrefix(name, TreasuryPrefix) || len(name) == len(TreasuryPrefix) {
		return invalid(op, field, "must name a treasury account (%q followed by a name)", TreasuryPrefix)
	}
	return ledger.ValidateAccountName(op, field, name)
}
