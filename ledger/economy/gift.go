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

	"github.com/coinledger/coinledger/ledger"
)

// Earnings accounts. An earner is a creator ("c42") or an agency
// ("agency:a7"); creator ids cannot contain ':', so the two never collide.
// Their prefixes do: creator "agency"'s start every agency's names, so a
// reader by prefix checks each name it finds.
const (
	DiamondFrac        = "DIAMOND_FRAC" // fractions of a diamond waiting in carries, scale 6
	DiamondFracIssued  = "DIAMOND_FRAC:issued"
	GiftRevenue        = "Revenue:Gifts"
	CreatorShareCost   = "CostOfRevenue:CreatorShare"
	creatorPayable     = "Liability:CreatorPayable"
	pendingPrefix      = "DIAMOND:pending:"
	earnerShards       = 2 // one row per commit lane: gifts to one creator never wait on each other
	fracScale          = 6
	releaseDayLayout   = "20060102"
	maxGiftCoins       = 1_000_000_000
	agencyEarnerPrefix = "agency:"
	fracIssuanceShards = 8
	giftRevenueShards  = 4
	creatorCostShards  = 4
)

// MaxGiftDelay is how long before the ledger first sees a gift it may have
// been sent. A gift's diamonds are held until the end of the day its
// holding period ends, counted from when it was sent, and it is priced at
// that moment too: without a bound, a gift sent "a week ago" would skip
// its hold (its diamonds released at the next run) and take last week's
// prices. So a gift is held at least its holding period less this.
const MaxGiftDelay = time.Hour

// AgencyEarner names an agency as an earner of diamonds.
func AgencyEarner(agency string) string { return agencyEarnerPrefix + agency }

// PendingDiamonds names the earner's diamonds on hold that become available
// on day (UTC): one account per earner and release day, so the release job
// moves whole accounts whose day has passed.
func PendingDiamonds(earner string, day time.Time) string {
	return PendingDiamondsPrefix(earner) + day.UTC().Format(releaseDayLayout)
}

// PendingDiamondsPrefix is what the names of all of an earner's pending
// accounts start with.
func PendingDiamondsPrefix(earner string) string { return pendingPrefix + earner + ":" }

// AvailableDiamonds names the earner's diamonds that may be withdrawn.
func AvailableDiamonds(earner string) string { return "DIAMOND:available:" + earner }

// DiamondCarry names the earner's carry of fractional diamonds.
func DiamondCarry(earner string) string { return DiamondFrac + ":carry:" + earner }

// CreatorPayable names what the platform owes an earner for their diamonds.
func CreatorPayable(earner, currency string) string {
	return FiatAccount(creatorPayable+":"+earner, currency)
}

// GiftRequest is one gift sent during a stream.
type GiftRequest struct {
	Key      string // the client's idempotency key
	Viewer   string
	Creator  string
	GiftID   string // a catalog gift; or Coins, not both
	Coins    int64
	StreamID string
	// SentAt picks the gift price and share rule in force; required, so a
	// retry prices the gift the same way.
	SentAt time.Time
}

// Errors particular to gifts.
var (
	ErrSelfGift       = &ledger.Error{Kind: ledger.Invalid, Message: "a viewer cannot send a gift to themself"}
	ErrUnknownCreator = &ledger.Error{Kind: ledger.NotFound, Message: "creator is not registered to receive gifts"}
	// ErrEarningsReleased refuses a gift reversal once the diamonds it
	// earned have left pending (released to the earner).
	ErrEarningsReleased = &ledger.Error{Kind: ledger.FailedPrecondition, Message: "the gift's diamonds were released to the creator; a reversal can no longer take them back"}
)

// GiftTerms is what a gift was priced at; it is stored on the transaction.
// Its fields are in the order of their JSON names, so that its encoding is
// already the ledger's canonical metadata and is not re-encoded on every
// gift (TestGiftTermsEncodeCanonically).
type GiftTerms struct {
	Agency          string `json:"agency,omitempty"`
	AgencyDiamonds  string `json:"agency_diamonds,omitempty"`
	AgencyShare     string `json:"agency_share,omitempty"`
	Coins           int64  `json:"coins"`
	Creator         string `json:"creator"`
	CreatorDiamonds string `json:"creator_diamonds"`
	CreatorShare    string `json:"creator_share"`
	Currency        string `json:"currency"`
	DiamondValue    string `json:"diamond_value"`
	Diamonds        string `json:"diamonds"` // coins × share, exact
	GiftID          string `json:"gift_id,omitempty"`
	Granule         string `json:"granule"`
	ReleaseDay      string `json:"release_day"`
	SentAt          string `json:"sent_at"`
	StreamID        string `json:"stream_id"`
	Viewer          string `json:"viewer"`

	priced *pricedTerms // what newGiftTerms rendered the strings from; nil when read back
}

// pricedTerms are the decimals a gift's terms were rendered from.
type pricedTerms struct {
	granule, perGranule decimal.Decimal
	shares              []earnerShare
}

// earnerShare is one earner's part of a gift, in fractional diamonds.
type earnerShare struct {
	earner   string
	diamonds decimal.Decimal
}

// decimals are the terms' granule, its value and the earners' diamonds: as
// priced, or parsed from the stored terms (a reversal's).
func (t *GiftTerms) decimals() (granule, perGranule decimal.Decimal, shares []earnerShare) {
	if p := t.priced; p != nil {
		return p.granule, p.perGranule, p.shares
	}
	granule = decimal.RequireFromString(t.Granule)
	return granule, granule.Mul(decimal.RequireFromString(t.DiamondValue)), t.shares()
}

func (t *GiftTerms) shares() []earnerShare {
	out := []earnerShare{{t.Creator, decimal.RequireFromString(t.CreatorDiamonds)}}
	if t.Agency != "" {
		out = append(out, earnerShare{AgencyEarner(t.Agency), decimal.RequireFromString(t.AgencyDiamonds)})
	}
	return out
}

func (t *GiftTerms) releaseDay() time.Time {
	d, _ := time.Parse(releaseDayLayout, t.ReleaseDay)
	return d
}

// SendGift burns the viewer's coins, promo coins first (they carry no money,
// so paid coins, which a refund can still give back, are kept longest), and
// relieves the paid coins' deferred revenue lot by lot into gift revenue. The
// creator earns coins × share diamonds (the agency, if any, its share of
// those, rounded half up to a millionth of a diamond): each earner's
// diamonds go into their carry and whole granules come out, minted into
// pending diamonds for the release day with their value owed as creator
// payable. Everything that depends on balances is decided at commit.
func (e *Economy) SendGift(ctx context.Context, req GiftRequest) (*ledger.Transaction, error) {
	const op = "economy.SendGift"
	terms, err := e.priceGift(ctx, op, req)
	if err != nil {
		return nil, err
	}
	if err := e.openGiftAccounts(ctx, terms); err != nil {
		return nil, err
	}
	coins := decimal.NewFromInt(terms.Coins)
	meta, _ := json.Marshal(terms)
	gift := ledger.PostRequest{
		IdempotencyKey: giftKey(req.Key),
		Kind:           "gift",
		EffectiveAt:    req.SentAt,
		Metadata:       meta,
		Postings: []ledger.PostingRequest{
			{Account: PromoWallet(req.Viewer), Side: ledger.Debit, Amount: coins, SpillTo: CoinWallet(req.Viewer)},
			{Account: CoinIssued, Side: ledger.Credit, Amount: coins},
		},
		Relieve: &ledger.Relief{Account: CoinWallet(req.Viewer), Legs: giftReliefLegs},
		Carries: earningsCarries(terms),
		// No gift while the viewer owes coins: whatever they hold repays first.
		Expect: []ledger.Expectation{{Account: CoinDebt(req.Viewer), Balance: decimal.Zero}},
	}
	tx, err := e.ledger.Post(ctx, gift)
	if errors.Is(err, ledger.ErrUnexpectedBalance) {
		// The viewer owes coins. Should they hold coins to repay them (a
		// settlement a crash, or a race on every attempt, left undone), the
		// repayment is made now and the gift goes ahead if coins are left.
		if serr := e.settleDebt(ctx, req.Viewer, gift.IdempotencyKey); serr != nil && !errors.Is(serr, ErrSettlementRaced) {
			return nil, serr
		}
		tx, err = e.ledger.Post(ctx, gift)
	}
	// Which posting was short or frozen is the ledger's detail; the caller
	// sent a viewer and a price.
	switch {
	case errors.Is(err, ledger.ErrInsufficientFunds):
		return nil, &ledger.Error{Op: op, Field: "coins", Err: err, Message: fmt.Sprintf("viewer %s has fewer than %d coins", req.Viewer, terms.Coins)}
	case errors.Is(err, ledger.ErrAccountFrozen), errors.Is(err, ledger.ErrAccountClosed):
		return nil, &ledger.Error{Op: op, Field: "viewer", Err: err, Message: "viewer " + req.Viewer + " is blocked"}
	case errors.Is(err, ledger.ErrUnexpectedBalance):
		return nil, &ledger.Error{Op: op, Field: "viewer", Err: ErrInDebt, Message: ledger.Reason(err)}
	}
	return tx, err
}

// giftReliefLegs moves relieved deferred revenue into gift revenue, in
// whichever currencies the viewer's lots were bought.
var giftReliefLegs = func() map[string]ledger.ReliefLeg {
	legs := map[string]ledger.ReliefLeg{}
	for _, c := range Currencies {
		legs[c.Code] = ledger.ReliefLeg{From: FiatAccount(DeferredRevenue, c.Code), To: FiatAccount(GiftRevenue, c.Code)}
	}
	return legs
}()

// earningsCarries adds each earner's diamonds to their carry. Whole
// granules mint pending diamonds for the release day and move their value
// from creator cost into the earner's payable.
func earningsCarries(t *GiftTerms) []ledger.Carry {
	legs, shares := newCarryLegs(t)
	out := make([]ledger.Carry, 0, len(shares))
	for _, s := range shares {
		if !s.diamonds.IsZero() {
			out = append(out, legs.carry(s.earner, s.diamonds, PendingDiamonds(s.earner, t.releaseDay())))
		}
	}
	return out
}

// takeBackCarries takes each earner's diamonds of a gift back: in the parts
// split names for the earner, else whole, returning granules out of the
// release day's pending account.
func takeBackCarries(t *GiftTerms, split map[string][]takeBackPart) []ledger.Carry {
	legs, shares := newCarryLegs(t)
	out := make([]ledger.Carry, 0, len(shares))
	for _, s := range shares {
		if s.diamonds.IsZero() {
			continue
		}
		parts, ok := split[s.earner]
		if !ok {
			parts = []takeBackPart{{s.diamonds, PendingDiamonds(s.earner, t.releaseDay())}}
		}
		for _, p := range parts {
			out = append(out, legs.carry(s.earner, p.diamonds.Neg(), p.pending))
		}
	}
	return out
}

// carryLegs is what a gift's terms fix in its earners' carries, worked out
// once per gift.
type carryLegs struct {
	granule, perGranule decimal.Decimal
	cost, currency      string
}

func newCarryLegs(t *GiftTerms) (carryLegs, []earnerShare) {
	granule, perGranule, shares := t.decimals()
	return carryLegs{granule, perGranule, FiatAccount(CreatorShareCost, t.Currency), t.Currency}, shares
}

// carry adds diamonds to earner's carry (negative: takes them back),
// minting whole granules into pending (taking them back out of it).
func (l carryLegs) carry(earner string, diamonds decimal.Decimal, pending string) ledger.Carry {
	return ledger.Carry{
		Account: DiamondCarry(earner), Source: DiamondFracIssued,
		Fraction: diamonds, Granule: l.granule,
		Legs: []ledger.CarryLeg{
			{From: DiamondIssued, To: pending, PerGranule: l.granule},
			{From: l.cost, To: CreatorPayable(earner, l.currency), PerGranule: l.perGranule},
		},
	}
}

// splitGiftTakeBack splits each earner's take-back of a gift so that the
// granules it returns come out of pending accounts that hold them
// (ErrEarningsReleased: the earner's together hold too few).
func (e *Economy) splitGiftTakeBack(ctx context.Context, t *GiftTerms) (map[string][]takeBackPart, error) {
	granule, _, shares := t.decimals()
	split := map[string][]takeBackPart{}
	tb := e.takeBacks()
	for _, s := range shares {
		if s.diamonds.IsZero() {
			continue
		}
		parts, ok, err := tb.split(ctx, s.earner, PendingDiamonds(s.earner, t.releaseDay()), s.diamonds, granule)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, ErrEarningsReleased
		}
		split[s.earner] = parts
	}
	return split, nil
}

// priceGift validates a gift and works out its terms from reference data.
func (e *Economy) priceGift(ctx context.Context, op string, req GiftRequest) (*GiftTerms, error) {
	if err := checkKey(op, "key", req.Key); err != nil {
		return nil, err
	}
	if err := checkID(op, "viewer", req.Viewer, 64); err != nil {
		return nil, err
	}
	if err := checkID(op, "creator", req.Creator, 64); err != nil {
		return nil, err
	}
	if err := checkID(op, "stream_id", req.StreamID, 128); err != nil {
		return nil, err
	}
	if req.Viewer == req.Creator {
		return nil, &ledger.Error{Op: op, Field: "creator", Err: ErrSelfGift}
	}
	if req.SentAt.IsZero() {
		return nil, invalid(op, "sent_at", "is required")
	}
	if req.SentAt.After(e.clock().Add(maxClockSkew)) {
		return nil, invalid(op, "sent_at", "is in the future")
	}
	if req.SentAt.Before(e.clock().Add(-MaxGiftDelay)) {
		if err := e.checkLateGift(ctx, op, req.Key); err != nil {
			return nil, err
		}
	}
	coins := req.Coins
	switch {
	case req.GiftID != "" && req.Coins != 0:
		return nil, invalid(op, "coins", "give a gift id or a coin amount, not both")
	case req.GiftID != "":
		if err := checkID(op, "gift_id", req.GiftID, 64); err != nil {
			return nil, err
		}
		g, err := e.catalog.GiftAt(ctx, req.GiftID, req.SentAt)
		if err != nil {
			return nil, &ledger.Error{Op: op, Field: "gift_id", Err: err}
		}
		coins = g.Coins
	case coins <= 0 || coins > maxGiftCoins:
		return nil, invalid(op, "coins", "must be between 1 and %d (or give a gift id)", maxGiftCoins)
	}
	ok, err := e.catalog.CreatorRegistered(ctx, req.Creator)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &ledger.Error{Op: op, Field: "creator", Err: ErrUnknownCreator}
	}
	rule, err := e.catalog.ShareRuleAt(ctx, req.Creator, req.SentAt)
	if err != nil {
		return nil, &ledger.Error{Op: op, Field: "creator", Err: err}
	}
	return newGiftTerms(req, rule, coins), nil
}

// checkLateGift refuses a gift sent more than MaxGiftDelay ago unless its
// key is already recorded: a retry of a recorded gift, however late, still
// gets the original (or a refusal as a reused key) from the post.
func (e *Economy) checkLateGift(ctx context.Context, op, key string) error {
	_, err := e.ledger.TransactionByKey(ctx, giftKey(key))
	if errors.Is(err, ledger.ErrTransactionNotFound) {
		return invalid(op, "sent_at", "is more than %s ago: a gift is held and priced from when it was sent, so it must reach the ledger within that", MaxGiftDelay)
	}
	return err
}

func giftKey(key string) string { return "gift:" + key }

// newGiftTerms prices a gift of coins under a share rule. It keeps the
// decimals it renders the terms from, so that the gift need not parse them
// back (earningsCarries).
func newGiftTerms(req GiftRequest, rule ShareRule, coins int64) *GiftTerms {
	cur, _ := currency(rule.DiamondCurrency)
	diamonds := decimal.NewFromInt(coins).Mul(rule.CreatorShare)
	agencyDiamonds := decimal.Zero
	if rule.Agency != "" {
		agencyDiamonds = diamonds.Mul(rule.AgencyShare).Round(fracScale)
	}
	granule := Granule(rule.DiamondValue, cur.Scale)
	creatorDiamonds := diamonds.Sub(agencyDiamonds)
	t := &GiftTerms{
		Viewer: req.Viewer, Creator: req.Creator, StreamID: req.StreamID, GiftID: req.GiftID, Coins: coins,
		SentAt:       req.SentAt.UTC().Format(time.RFC3339Nano),
		CreatorShare: ledger.DecimalString(rule.CreatorShare), Agency: rule.Agency,
		Diamonds: ledger.DecimalString(diamonds), CreatorDiamonds: ledger.DecimalString(creatorDiamonds),
		DiamondValue: ledger.DecimalString(rule.DiamondValue), Currency: rule.DiamondCurrency,
		Granule:    ledger.DecimalString(granule),
		ReleaseDay: req.SentAt.Add(rule.HoldingPeriod).UTC().Format(releaseDayLayout),
		priced: &pricedTerms{granule: granule, perGranule: granule.Mul(rule.DiamondValue),
			shares: []earnerShare{{req.Creator, creatorDiamonds}}},
	}
	if rule.Agency != "" {
		t.AgencyShare, t.AgencyDiamonds = ledger.DecimalString(rule.AgencyShare), ledger.DecimalString(agencyDiamonds)
		t.priced.shares = append(t.priced.shares, earnerShare{AgencyEarner(rule.Agency), agencyDiamonds})
	}
	return t
}

// openGiftAccounts opens what a gift posts to, once per process and name.
func (e *Economy) openGiftAccounts(ctx context.Context, t *GiftTerms) error {
	parties := giftPartiesKey(t)
	if _, ok := e.giftParties.Get(parties); ok {
		return nil
	}
	for _, a := range giftAccounts(t) {
		if err := e.open(ctx, a); err != nil {
			return err
		}
	}
	e.giftParties.Put(parties, struct{}{})
	return nil
}

// giftPartiesKey determines giftAccounts(t): it holds every term an account
// name is made of. None of them may hold NUL (ids are name segments,
// currencies asset codes, the day a date), so the key is unambiguous.
func giftPartiesKey(t *GiftTerms) string {
	return t.Viewer + "\x00" + t.Currency + "\x00" + t.ReleaseDay + "\x00" + t.Creator + "\x00" + t.Agency
}

// giftAccounts are the accounts a gift's postings name.
func giftAccounts(t *GiftTerms) []ledger.Account {
	accounts := []ledger.Account{
		{Name: PromoWallet(t.Viewer), Asset: Coin, Normal: ledger.Credit},
		{Name: CoinWallet(t.Viewer), Asset: Coin, Normal: ledger.Credit},
		coinDebtAccount(t.Viewer),
		{Name: FiatAccount(CreatorShareCost, t.Currency), Asset: t.Currency, Normal: ledger.Debit, AllowNegative: true, Shards: creatorCostShards},
	}
	for _, s := range t.shares() {
		accounts = append(accounts, earnerAccounts(s.earner, t.Currency, t.releaseDay())...)
	}
	return accounts
}

func earnerAccounts(earner, currency string, day time.Time) []ledger.Account {
	return []ledger.Account{
		{Name: DiamondCarry(earner), Asset: DiamondFrac, Normal: ledger.Credit, Shards: earnerShards, PerShard: true},
		{Name: PendingDiamonds(earner, day), Asset: Diamond, Normal: ledger.Credit, Shards: earnerShards},
		{Name: AvailableDiamonds(earner), Asset: Diamond, Normal: ledger.Credit},
		{Name: CreatorPayable(earner, currency), Asset: currency, Normal: ledger.Credit, Shards: earnerShards},
	}
}

// giftTerms reads the terms stored on a gift transaction, which the request
// named in field.
func giftTerms(op, field string, tx *ledger.Transaction) (*GiftTerms, error) {
	if tx.Kind != "gift" {
		return nil, invalid(op, field, "is a %s, not a gift", tx.Kind)
	}
	var t GiftTerms
	if err := json.Unmarshal(tx.Metadata, &t); err != nil {
		return nil, &ledger.Error{Op: op, Kind: ledger.Internal, Message: fmt.Sprintf("gift %s has unreadable terms: %v", tx.ID, err)}
	}
	return &t, nil
}

// ReverseGiftRequest undoes a gift for fraud or moderation.
type ReverseGiftRequest struct {
	Key    string // the idempotency key of the reversal
	GiftTx string // the gift transaction's id
	Reason string
}

// ReverseGift gives the viewer back the coins the gift burned (promo and paid
// as they were taken; the paid coins return to the lots they came from, with
// their deferred revenue) and takes the earners' diamonds back from their
// carries and pending diamonds. A gift is reversed at most once; once its
// earnings were released, the reversal is refused (ErrEarningsReleased) and
// the matter is one for a clawback from available earnings, which payouts
// own. Pending diamonds that other pending days lend and that move under
// every attempt answer ErrRetriesExhausted, to retry under the key.
func (e *Economy) ReverseGift(ctx context.Context, req ReverseGiftRequest) (*ledger.Transaction, error) {
	const op = "economy.ReverseGift"
	if err := checkKey(op, "key", req.Key); err != nil {
		return nil, err
	}
	if len(req.Reason) > 200 {
		return nil, invalid(op, "reason", "is longer than 200 bytes")
	}
	gift, err := e.transaction(ctx, op, "gift_tx", req.GiftTx)
	if err != nil {
		return nil, err
	}
	terms, err := giftTerms(op, "gift_tx", gift)
	if err != nil {
		return nil, err
	}
	var postings []ledger.PostingRequest
	for _, p := range gift.Postings {
		if p.Asset == Coin || isReliefLeg(p.Account) {
			postings = append(postings, mirror(p))
		}
	}
	meta, _ := json.Marshal(map[string]string{"gift_tx": gift.ID.String(), "reason": req.Reason, "creator": terms.Creator, "viewer": terms.Viewer})
	id := gift.ID
	key := "gift-reversal:" + req.Key
	reversal := ledger.PostRequest{
		IdempotencyKey: key,
		Kind:           "gift-reversal",
		Metadata:       meta,
		Postings:       postings,
		Carries:        takeBackCarries(terms, nil),
		Reverses:       &id,
		// A blocked viewer's gifts are the ones most likely to be undone
		// (fraud): the coins go back into the frozen wallet.
		PastFrozen: true,
	}
	var tx *ledger.Transaction
	for attempt := 1; ; attempt++ {
		tx, err = e.ledger.Post(ctx, reversal)
		if !errors.Is(err, ledger.ErrInsufficientFunds) {
			break
		}
		// Short of diamonds: a lot refunded since (by a refund that clawed
		// them back) is refused before they are checked, so the pending
		// account the gift paid into was released. Gifts arriving late may
		// refill it meanwhile (a day is released once over, and closed only
		// a day later); then the reversal takes their diamonds, which the
		// creator's total, less the gift's, comes to all the same.
		released, rerr := e.releasedSince(ctx, gift, terms)
		if rerr != nil {
			return nil, rerr
		}
		if released {
			return nil, &ledger.Error{Op: op, Field: "gift_tx", Err: ErrEarningsReleased}
		}
		// Or the carry's take-back needs a granule that a later day's gift
		// minted into that day's pending account: the gift's fraction went
		// into it. The earner's other pending accounts lend the granules.
		split, lerr := e.splitGiftTakeBack(ctx, terms)
		if lerr != nil {
			return nil, &ledger.Error{Op: op, Field: "gift_tx", Err: lerr}
		}
		reversal.Carries = takeBackCarries(terms, split)
		if attempt == 3 {
			// The lenders' diamonds moved between each plan and its post.
			err = &ledger.Error{Op: op, Err: ledger.ErrRetriesExhausted}
			break
		}
	}
	if errors.Is(err, ledger.ErrIdempotencyConflict) {
		// A reversal of this gift for this reason, posted under the key with
		// another day's pending account lending the granules, is this one.
		if done, derr := e.ledger.TransactionByKey(ctx, key); derr == nil && sameGiftReversal(done, gift.ID, req.Reason) {
			done.Replayed = true
			tx, err = done, nil
		}
	}
	// Which posting, lot or reversal refused is the ledger's detail: the
	// caller named a gift (and a key, which a conflict names).
	if ledger.FieldOf(err) != "" && ledger.KindOf(err) != ledger.Conflict {
		return nil, &ledger.Error{Op: op, Field: "gift_tx", Err: err}
	}
	if err != nil {
		return nil, err
	}
	// Paid coins coming back to a viewer who owes coins repay the debt at
	// once, as a purchase's do; a retry finishes a settlement a crash left
	// undone.
	return tx, e.settleDebt(ctx, terms.Viewer, key)
}

// sameGiftReversal tells whether tx reverses gift for reason.
func sameGiftReversal(tx *ledger.Transaction, gift uuid.UUID, reason string) bool {
	var meta map[string]string
	if tx.Kind != "gift-reversal" || tx.Reverses == nil || *tx.Reverses != gift || json.Unmarshal(tx.Metadata, &meta) != nil {
		return false
	}
	return meta["reason"] == reason
}

// releasedSince tells whether the gift's diamonds may have been released:
// its release day may be over (a release's as_of may run maxClockSkew ahead
// of its server's clock, which may run ahead of ours) and a pending account
// holds fewer diamonds than the gift put into it. A day not over was not
// released, though an earlier day's take-back may have borrowed its
// granules (a refund that still saw the earlier day pending after a
// release whose clock ran ahead); the earner's other pending days then lend
// them.
func (e *Economy) releasedSince(ctx context.Context, gift *ledger.Transaction, terms *GiftTerms) (bool, error) {
	if terms.releaseDay().Add(24 * time.Hour).After(e.clock().Add(2 * maxClockSkew)) {
		return false, nil
	}
	for _, p := range gift.Postings {
		if p.Side != ledger.Credit || !strings.HasPrefix(p.Account, pendingPrefix) {
			continue
		}
		held, err := e.ledger.Balance(ctx, p.Account, time.Time{})
		if err != nil {
			return false, err
		}
		if held.LessThan(p.Amount) {
			return true, nil
		}
	}
	return false, nil
}

func isReliefLeg(account string) bool {
	for _, leg := range giftReliefLegs {
		if account == leg.From || account == leg.To {
			return true
		}
	}
	return false
}

func mirror(p ledger.Posting) ledger.PostingRequest {
	return ledger.PostingRequest{Account: p.Account, Side: opposite(p.Side), Amount: p.Amount}
}

// BlockViewer freezes the user's wallets: their gifts and promo grants are
// refused until UnblockViewer. What the stores did (purchases, refunds and
// their reversals) is still recorded, as are gift reversals and debt
// repayments: finance must find every store transaction in the ledger, and
// a fraudster's chargebacks arrive while they are blocked.
//
// With a key (the gRPC API requires one), a retry changes nothing more: a
// viewer unblocked in between stays unblocked. The key is claimed before the
// wallets change and marked done after, so a retry of a request a crash
// interrupted finishes it; the key with another request is a Conflict.
func (e *Economy) BlockViewer(ctx context.Context, key, user string) error {
	return e.setWalletStatus(ctx, "economy.BlockViewer", key, user, ledger.Frozen)
}

// UnblockViewer reopens the user's wallets; its key as BlockViewer's.
func (e *Economy) UnblockViewer(ctx context.Context, key, user string) error {
	return e.setWalletStatus(ctx, "economy.UnblockViewer", key, user, ledger.Open)
}

func (e *Economy) setWalletStatus(ctx context.Context, op, key, user string, st ledger.Status) error {
	if err := checkID(op, "user", user, 64); err != nil {
		return err
	}
	store := e.catalog.store
	if key != "" {
		if err := checkKey(op, "idempotency_key", key); err != nil {
			return err
		}
		request := string(st) + " " + user
		claimed, done, err := store.ClaimAdminKey(ctx, key, request)
		switch {
		case err != nil:
			return err
		case claimed != request:
			return &ledger.Error{Op: op, Field: "idempotency_key", Err: ledger.ErrIdempotencyConflict}
		case done:
			return nil
		}
	}
	wallets := []string{CoinWallet(user), PromoWallet(user)}
	for _, name := range wallets {
		if err := e.open(ctx, ledger.Account{Name: name, Asset: Coin, Normal: ledger.Credit}); err != nil {
			return err
		}
	}
	// Both at once: a block and an unblock side by side must not leave one
	// wallet blocked and the other open.
	if _, err := e.ledger.SetAccountsStatus(ctx, wallets, st); err != nil {
		return err
	}
	if key == "" {
		return nil
	}
	return store.FinishAdminKey(ctx, key)
}

// transaction reads a transaction named by a caller-supplied id.
func (e *Economy) transaction(ctx context.Context, op, field, id string) (*ledger.Transaction, error) {
	txID, err := uuid.Parse(id)
	if err != nil {
		return nil, invalid(op, field, "must be a transaction id")
	}
	tx, err := e.ledger.Transaction(ctx, txID)
	if errors.Is(err, ledger.ErrTransactionNotFound) {
		return nil, &ledger.Error{Op: op, Field: field, Err: err}
	}
	return tx, err
}
