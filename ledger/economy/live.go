package economy

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
)

// LiveSession holds the terms of one live-shopping session, fixed when it is
// set up: the platform keeps PlatformRate of each sale, the session's partner
// PartnerShare, and the seller the rest.
type LiveSession struct {
	ID           string
	Seller       string
	Partner      string // empty when the session has none
	PlatformRate decimal.Decimal
	PartnerShare decimal.Decimal
	RecordedAt   time.Time
}

// Same reports whether two sessions hold the same terms.
func (s LiveSession) Same(o LiveSession) bool {
	return s.ID == o.ID && s.Seller == o.Seller && s.Partner == o.Partner &&
		s.PlatformRate.Equal(o.PlatformRate) && s.PartnerShare.Equal(o.PartnerShare)
}

// ErrLiveSessionNotFound is returned for an unknown session id.
var ErrLiveSessionNotFound = &ledger.Error{Kind: ledger.NotFound, Message: "live-shopping session not found"}

// Live-shopping accounts, per currency (see FiatAccount).
const (
	LiveShoppingRevenue = "Revenue:LiveShopping"
	sellerPayable       = "Liability:SellerPayable"
	partnerPayable      = "Liability:PartnerPayable"
)

// SellerPayable and PartnerPayable name what the platform owes, settled by payouts.
func SellerPayable(seller, currency string) string {
	return FiatAccount(sellerPayable+":"+seller, currency)
}
func PartnerPayable(partner, currency string) string {
	return FiatAccount(partnerPayable+":"+partner, currency)
}

// AddLiveSession validates and stores a session's terms.
func (c *Catalog) AddLiveSession(ctx context.Context, s LiveSession) (LiveSession, error) {
	const op = "economy.AddLiveSession"
	if err := checkID(op, "session_id", s.ID, 64); err != nil {
		return s, err
	}
	if err := checkID(op, "seller", s.Seller, 64); err != nil {
		return s, err
	}
	if s.Partner == "" && !s.PartnerShare.IsZero() {
		return s, invalid(op, "partner_share", "needs a partner")
	}
	if s.Partner != "" {
		if err := checkID(op, "partner", s.Partner, 64); err != nil {
			return s, err
		}
	}
	if err := checkFraction(op, "platform_rate", s.PlatformRate, true); err != nil {
		return s, err
	}
	if err := checkFraction(op, "partner_share", s.PartnerShare, true); err != nil {
		return s, err
	}
	if s.PlatformRate.Add(s.PartnerShare).GreaterThanOrEqual(decimal.NewFromInt(1)) {
		return s, invalid(op, "partner_share", "with platform_rate must leave the seller something")
	}
	s.RecordedAt = c.clock().UTC().Truncate(time.Microsecond)
	return c.store.AddLiveSession(ctx, s)
}

// LiveSession returns a session's terms.
func (c *Catalog) LiveSession(ctx context.Context, id string) (LiveSession, error) {
	if err := checkID("economy.LiveSession", "session_id", id, 64); err != nil {
		return LiveSession{}, err
	}
	return c.store.LiveSession(ctx, id)
}

// LiveSaleRequest is one paid order during a live-shopping session.
type LiveSaleRequest struct {
	OrderID   string // the idempotency key
	SessionID string
	Amount    decimal.Decimal
	Currency  string
	SoldAt    time.Time // required
}

// RecordLiveSale books a sale paid through the PSP: the clearing account
// receives the amount, the platform's commission and the partner's share are
// each rounded half up to the currency's minor unit, and the seller is owed
// the rest, so the legs balance exactly.
func (e *Economy) RecordLiveSale(ctx context.Context, req LiveSaleRequest) (*ledger.Transaction, error) {
	const op = "economy.RecordLiveSale"
	if err := checkID(op, "order_id", req.OrderID, 128); err != nil {
		return nil, err
	}
	if req.SoldAt.IsZero() {
		return nil, invalid(op, "sold_at", "is required")
	}
	if req.SoldAt.After(e.clock().Add(maxClockSkew)) {
		return nil, invalid(op, "sold_at", "is in the future")
	}
	s, err := e.catalog.LiveSession(ctx, req.SessionID)
	if err != nil {
		return nil, &ledger.Error{Op: op, Field: "session_id", Err: err}
	}
	// Sales are paid in money: coins or diamonds here would put units in
	// accounts outside their issuance identities.
	asset, ok := currency(req.Currency)
	if !ok {
		return nil, invalid(op, "currency", "%q is not one of the economy's currencies, such as USD", req.Currency)
	}
	if err := asset.CheckAmount(op, "amount", req.Amount); err != nil {
		return nil, err
	}
	platform := req.Amount.Mul(s.PlatformRate).Round(asset.Scale)
	partner := req.Amount.Mul(s.PartnerShare).Round(asset.Scale)
	seller := req.Amount.Sub(platform).Sub(partner)
	if seller.Sign() <= 0 {
		return nil, invalid(op, "amount", "is too small to leave the seller anything after commissions")
	}
	clearing := FiatAccount(ClearingPSP, req.Currency)
	postings := []ledger.PostingRequest{
		{Account: clearing, Side: ledger.Debit, Amount: req.Amount},
		{Account: SellerPayable(s.Seller, req.Currency), Side: ledger.Credit, Amount: seller},
	}
	opens := []ledger.Account{
		{Name: clearing, Asset: req.Currency, Normal: ledger.Debit},
		{Name: SellerPayable(s.Seller, req.Currency), Asset: req.Currency, Normal: ledger.Credit},
	}
	if platform.Sign() > 0 {
		name := FiatAccount(LiveShoppingRevenue, req.Currency)
		postings = append(postings, ledger.PostingRequest{Account: name, Side: ledger.Credit, Amount: platform})
		opens = append(opens, ledger.Account{Name: name, Asset: req.Currency, Normal: ledger.Credit})
	}
	if partner.Sign() > 0 {
		name := PartnerPayable(s.Partner, req.Currency)
		postings = append(postings, ledger.PostingRequest{Account: name, Side: ledger.Credit, Amount: partner})
		opens = append(opens, ledger.Account{Name: name, Asset: req.Currency, Normal: ledger.Credit})
	}
	for _, a := range opens {
		if err := e.open(ctx, a); err != nil {
			return nil, err
		}
	}
	meta, _ := json.Marshal(map[string]string{
		"session_id": s.ID, "seller": s.Seller, "partner": s.Partner,
		"platform_rate": s.PlatformRate.String(), "partner_share": s.PartnerShare.String(),
	})
	return e.ledger.Post(ctx, ledger.PostRequest{
		IdempotencyKey: fmt.Sprintf("live-sale:%s", req.OrderID),
		Kind:           "live-sale",
		EffectiveAt:    req.SoldAt,
		Metadata:       meta,
		Postings:       postings,
	})
}
