package economy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/namecache"
	"github.com/coinledger/coinledger/ledger"
)

// Ledger is what the economy needs of the ledger service.
type Ledger interface {
	CreateAsset(ctx context.Context, a ledger.Asset) (ledger.Asset, error)
	CreateAccount(ctx context.Context, a ledger.Account) (*ledger.Account, error)
	Account(ctx context.Context, name string) (*ledger.Account, error)
	AccountsByName(ctx context.Context, names []string) ([]*ledger.Account, error)
	Asset(ctx context.Context, code string) (ledger.Asset, error)
	Post(ctx context.Context, req ledger.PostRequest) (*ledger.Transaction, error)
	SetAccountsStatus(ctx context.Context, names []string, st ledger.Status) ([]*ledger.Account, error)
	Transaction(ctx context.Context, id uuid.UUID) (*ledger.Transaction, error)
	TransactionByKey(ctx context.Context, key string) (*ledger.Transaction, error)
	Lot(ctx context.Context, id uuid.UUID) (*ledger.Lot, error)
	LotMoves(ctx context.Context, lot uuid.UUID) ([]ledger.LotMove, error)
	Accounts(ctx context.Context, prefix, after string, limit int) ([]*ledger.Account, error)
	Balance(ctx context.Context, name string, asOf time.Time) (decimal.Decimal, error)
	Balances(ctx context.Context, accounts []*ledger.Account, asOf time.Time) ([]decimal.Decimal, error)
	Entries(ctx context.Context, name string, after ledger.Cursor, until time.Time, limit int) ([]ledger.Entry, error)
}

// Economy performs the coin economy's operations, each one atomic ledger
// transaction, idempotent on its natural key.
type Economy struct {
	ledger  Ledger
	catalog *Catalog
	clock   func() time.Time
	// opened maps the names of accounts known to exist to their asset;
	// accounts are never deleted and their asset never changes. Bounded:
	// every viewer and earner adds names.
	opened namecache.Cache[string]
	// giftParties holds a key for each gift's set of parties (viewer,
	// earners, currency, release day) whose accounts are all known to
	// exist, so that a gift checks one key rather than each of the names.
	giftParties namecache.Cache[struct{}]
}

// New returns the economy over a ledger and a catalog; clock nil means time.Now.
func New(l Ledger, c *Catalog, clock func() time.Time) *Economy {
	if clock == nil {
		clock = time.Now
	}
	return &Economy{ledger: l, catalog: c, clock: clock}
}

// Currencies the bootstrap registers, at their ISO 4217 minor-unit scale.
var Currencies = []ledger.Asset{
	{Code: "USD", Scale: 2}, {Code: "EUR", Scale: 2}, {Code: "GBP", Scale: 2},
	{Code: "JPY", Scale: 0}, {Code: "VND", Scale: 0}, {Code: "KRW", Scale: 0},
}

// Units of the economy.
const (
	Coin    = "COIN"
	Diamond = "DIAMOND"
)

// Platform accounts. Fiat accounts hold one currency each, so their names end
// in the currency: FiatAccount(DeferredRevenue, "USD").
const (
	CoinIssued          = "COIN:issued"
	DiamondIssued       = "DIAMOND:issued"
	DeferredRevenue     = "Liability:DeferredRevenue:Coins"
	StoreCommission     = "Expense:StoreCommission"
	PaymentFees         = "Expense:PaymentFees"
	ReceivableAppStore  = "Receivable:AppStore" // :apple or :google
	ClearingPSP         = "Clearing:PSP:stripe"
	issuanceShards      = 8 // every gift touches issuance: spread it
	deferredRevenueShds = 4
)

// FiatAccount names the currency's account under base.
func FiatAccount(base, currency string) string { return base + ":" + currency }

// purchaseKey is a purchase's idempotency key; its lot has the transaction's id.
func purchaseKey(ch Channel, storeTransactionID string) string {
	return fmt.Sprintf("purchase:%s:%s", ch, storeTransactionID)
}

// CoinWallet holds a user's paid coins; PromoWallet their free coins, which
// carry no fiat value.
func CoinWallet(user string) string  { return "COIN:wallet:" + user }
func PromoWallet(user string) string { return "COIN:promo:" + user }

// Bootstrap registers the units and the platform's accounts that gifts touch
// in every currency. It is idempotent; other fiat accounts are opened on
// first use.
func (e *Economy) Bootstrap(ctx context.Context) error {
	err := e.bootstrap(ctx)
	if errors.Is(err, ledger.ErrAccountExists) {
		return &ledger.Error{Op: "economy.Bootstrap", Err: err,
			Message: "this database's chart of accounts differs from this version's (an earlier coinledger made it); it cannot be used as it is"}
	}
	return err
}

func (e *Economy) bootstrap(ctx context.Context) error {
	assets := append([]ledger.Asset{{Code: Coin}, {Code: Diamond}, {Code: DiamondFrac, Scale: fracScale}}, Currencies...)
	for _, a := range assets {
		if _, err := e.ledger.CreateAsset(ctx, a); err != nil {
			return err
		}
	}
	// Issuance is debited as units are minted: its balance is minus the
	// units outstanding, so it may go negative.
	for _, name := range []string{CoinIssued, DiamondIssued} {
		asset := Coin
		if name == DiamondIssued {
			asset = Diamond
		}
		if _, err := e.ledger.CreateAccount(ctx, ledger.Account{Name: name, Asset: asset, Normal: ledger.Credit, AllowNegative: true, Shards: issuanceShards}); err != nil {
			return err
		}
	}
	accounts := []ledger.Account{{Name: DiamondFracIssued, Asset: DiamondFrac, Normal: ledger.Credit, AllowNegative: true, Shards: fracIssuanceShards}}
	for _, c := range Currencies {
		accounts = append(accounts, deferredRevenueAccount(c.Code),
			ledger.Account{Name: FiatAccount(GiftRevenue, c.Code), Asset: c.Code, Normal: ledger.Credit, AllowNegative: true, Shards: giftRevenueShards})
	}
	for _, a := range accounts {
		if err := e.open(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// deferredRevenueAccount is held by the lots (each lot's value left is
// checked non-negative, and verify matches their sum to this balance), so
// relief need not lock all its shards to check the balance.
func deferredRevenueAccount(currency string) ledger.Account {
	return ledger.Account{Name: FiatAccount(DeferredRevenue, currency), Asset: currency, Normal: ledger.Credit, AllowNegative: true, Shards: deferredRevenueShds}
}

// open opens an account on first use; opening it again is a no-op.
func (e *Economy) open(ctx context.Context, a ledger.Account) error {
	if _, ok := e.opened.Get(a.Name); ok {
		return nil
	}
	// The release job finds pending accounts by their day: noted before the
	// account exists, none is missed.
	if _, day, ok := ParsePending(a.Name); ok {
		if err := e.catalog.store.NotePendingAccount(ctx, day.Format(releaseDayLayout), a.Name); err != nil {
			return err
		}
	}
	if _, err := e.ledger.CreateAccount(ctx, a); err != nil {
		return err
	}
	e.opened.Put(a.Name, a.Asset)
	return nil
}

// assetOf returns the asset of an existing account, read once per name.
func (e *Economy) assetOf(ctx context.Context, name string) (string, error) {
	if asset, ok := e.opened.Get(name); ok {
		return asset, nil
	}
	a, err := e.ledger.Account(ctx, name)
	if err != nil {
		return "", err
	}
	e.opened.Put(name, a.Asset)
	return a.Asset, nil
}

// PurchaseRequest is a verified store transaction.
type PurchaseRequest struct {
	Channel Channel
	// StoreTransactionID is Apple's transactionId, Google's orderId or the
	// PSP's charge id: the purchase's idempotency key within its channel.
	StoreTransactionID string
	User               string
	PackID             string
	AmountPaid         decimal.Decimal
	Currency           string
	// PurchasedAt is when the store charged; the pack version in force then
	// applies. Required, so that a retry days later prices the same way.
	PurchasedAt time.Time
}

// Lot is what a purchase records for later relief of deferred revenue and
// for refunds; it is kept in the purchase transaction's metadata.
type Lot struct {
	Channel            Channel `json:"channel"`
	StoreTransactionID string  `json:"store_transaction_id"`
	PackID             string  `json:"pack_id"`
	Coins              int64   `json:"coins"`
	Currency           string  `json:"currency"`
	Gross              string  `json:"gross"`
	Fee                string  `json:"fee"`
	Net                string  `json:"net"`
	FeeRate            string  `json:"fee_rate"`
}

// Purchase mints the pack's coins into the user's wallet and books the fiat
// side: the store's receivable (or the PSP's clearing account) for the net
// proceeds, the store commission (or card fee) and deferred revenue for the
// gross price. The fee is gross × rate rounded half up to the currency's
// minor unit; net is gross − fee, so the fiat legs balance exactly.
func (e *Economy) Purchase(ctx context.Context, req PurchaseRequest) (*ledger.Transaction, error) {
	const op = "economy.Purchase"
	if !req.Channel.Valid() {
		return nil, invalid(op, "channel", "must be apple, google or web")
	}
	if err := checkID(op, "store_transaction_id", req.StoreTransactionID, 128); err != nil {
		return nil, err
	}
	if err := checkID(op, "user", req.User, 64); err != nil {
		return nil, err
	}
	if err := checkID(op, "pack_id", req.PackID, 64); err != nil {
		return nil, err
	}
	if req.PurchasedAt.IsZero() {
		return nil, invalid(op, "purchased_at", "is required")
	}
	if req.PurchasedAt.After(e.clock().Add(maxClockSkew)) {
		return nil, invalid(op, "purchased_at", "is in the future")
	}
	pack, err := e.catalog.CoinPackAt(ctx, req.PackID, req.Channel, req.PurchasedAt)
	if err != nil {
		return nil, &ledger.Error{Op: op, Field: "pack_id", Err: err}
	}
	price, ok := pack.Prices[req.Currency]
	if !ok {
		return nil, invalid(op, "currency", "pack %s is not sold in %q on %s", pack.ID, req.Currency, req.Channel)
	}
	if !req.AmountPaid.Equal(price) {
		return nil, invalid(op, "amount_paid", "is %s %s; pack %s costs %s %s", req.AmountPaid, req.Currency, pack.ID, price, req.Currency)
	}
	asset, err := e.ledger.Asset(ctx, req.Currency)
	if err != nil {
		return nil, &ledger.Error{Op: op, Field: "currency", Err: err}
	}
	scale := asset.Scale
	fee := price.Mul(pack.FeeRate).Round(scale)
	net := price.Sub(fee)

	receivable, feeAccount := FiatAccount(ReceivableAppStore+":"+string(req.Channel), req.Currency), FiatAccount(StoreCommission, req.Currency)
	if req.Channel == Web {
		receivable, feeAccount = FiatAccount(ClearingPSP, req.Currency), FiatAccount(PaymentFees, req.Currency)
	}
	deferred := FiatAccount(DeferredRevenue, req.Currency)
	for _, a := range []ledger.Account{
		{Name: CoinWallet(req.User), Asset: Coin, Normal: ledger.Credit},
		{Name: receivable, Asset: req.Currency, Normal: ledger.Debit},
		{Name: feeAccount, Asset: req.Currency, Normal: ledger.Debit},
		deferredRevenueAccount(req.Currency),
	} {
		if err := e.open(ctx, a); err != nil {
			return nil, err
		}
	}
	lot := Lot{Channel: req.Channel, StoreTransactionID: req.StoreTransactionID, PackID: pack.ID, Coins: pack.Coins,
		Currency: req.Currency, Gross: price.StringFixed(scale), Fee: fee.StringFixed(scale), Net: net.StringFixed(scale), FeeRate: pack.FeeRate.String()}
	meta, _ := json.Marshal(map[string]any{"user": req.User, "lot": lot})
	coins := decimal.NewFromInt(pack.Coins)
	postings := []ledger.PostingRequest{
		{Account: CoinIssued, Side: ledger.Debit, Amount: coins},
		{Account: CoinWallet(req.User), Side: ledger.Credit, Amount: coins},
		{Account: receivable, Side: ledger.Debit, Amount: net},
		{Account: deferred, Side: ledger.Credit, Amount: price},
	}
	if fee.Sign() > 0 {
		postings = append(postings, ledger.PostingRequest{Account: feeAccount, Side: ledger.Debit, Amount: fee})
	}
	valuePosting := 3
	if net.Sign() == 0 { // rounding can make the fee the whole price of a tiny pack
		postings = append(postings[:2], postings[3:]...)
		valuePosting = 2
	}
	// The coins open a FIFO lot carrying the gross price as deferred revenue;
	// gifts relieve it oldest lot first.
	key := purchaseKey(req.Channel, req.StoreTransactionID)
	tx, err := e.ledger.Post(ctx, ledger.PostRequest{
		IdempotencyKey: key,
		Kind:           "purchase",
		EffectiveAt:    req.PurchasedAt,
		Metadata:       meta,
		Postings:       postings,
		OpenLot:        &ledger.LotOpen{UnitsPosting: 1, ValuePosting: valuePosting},
		PastFrozen:     true, // the store has charged: recorded, blocked viewer or not
	})
	if err != nil {
		return nil, err
	}
	// Coins bought repay a debt first; a retried purchase finishes a
	// settlement a crash left undone.
	return tx, e.settleDebt(ctx, req.User, key)
}

// PromoRequest grants free coins.
type PromoRequest struct {
	IdempotencyKey string
	User           string
	Coins          int64
	Reason         string
}

// GrantPromo mints free coins into the user's promo wallet. They carry no
// fiat value, so nothing is booked on the fiat side.
func (e *Economy) GrantPromo(ctx context.Context, req PromoRequest) (*ledger.Transaction, error) {
	const op = "economy.GrantPromo"
	if err := checkKey(op, "idempotency_key", req.IdempotencyKey); err != nil {
		return nil, err
	}
	if err := checkID(op, "user", req.User, 64); err != nil {
		return nil, err
	}
	if req.Coins <= 0 {
		return nil, invalid(op, "coins", "must be positive")
	}
	if len(req.Reason) > 200 {
		return nil, invalid(op, "reason", "is longer than 200 bytes")
	}
	if err := e.open(ctx, ledger.Account{Name: PromoWallet(req.User), Asset: Coin, Normal: ledger.Credit}); err != nil {
		return nil, err
	}
	meta, _ := json.Marshal(map[string]string{"user": req.User, "reason": req.Reason})
	coins := decimal.NewFromInt(req.Coins)
	tx, err := e.ledger.Post(ctx, ledger.PostRequest{
		// Namespaced like every flow's key, so that a promo key cannot
		// take a purchase's, a gift's or a release's.
		IdempotencyKey: "promo:" + req.IdempotencyKey,
		Kind:           "promo-grant",
		Metadata:       meta,
		Postings: []ledger.PostingRequest{
			{Account: CoinIssued, Side: ledger.Debit, Amount: coins},
			{Account: PromoWallet(req.User), Side: ledger.Credit, Amount: coins},
		},
	})
	if errors.Is(err, ledger.ErrAccountFrozen) || errors.Is(err, ledger.ErrAccountClosed) {
		// The wallet's posting is the ledger's detail; the caller named a user.
		return nil, &ledger.Error{Op: op, Field: "user", Err: err, Message: "user " + req.User + " is blocked"}
	}
	return tx, err
}

// maxClockSkew is how far ahead of our clock a store's timestamp may be.
const maxClockSkew = 5 * time.Minute

// checkID accepts ids that embed safely in account names and keys: one
// segment of a name.
func checkID(op, field, s string, max int) error {
	if len(s) > max || !ledger.IsNameSegment(s) {
		return invalid(op, field, "must be 1-%d characters of letters, digits, '_', '.' or '-'", max)
	}
	return nil
}

// CheckUserID checks a viewer's id as the economy's writes do, for a read
// that names the viewer's accounts.
func CheckUserID(op, field, id string) error { return checkID(op, field, id, 64) }

// CheckEarner checks an earner, a creator id or "agency:{id}", for a read
// that names the earner's accounts.
func CheckEarner(op, field, earner string) error {
	id, _ := strings.CutPrefix(earner, agencyEarnerPrefix)
	return checkID(op, field, id, 64)
}

// checkKey accepts a client's idempotency key: printable ASCII without
// spaces, as the ledger's keys are.
func checkKey(op, field, s string) error {
	if s == "" || len(s) > 128 {
		return invalid(op, field, "must be 1-128 characters")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return invalid(op, field, "must be printable ASCII without spaces")
		}
	}
	return nil
}
