package economy

import (
	"context"
	"fmt"
	"math/big"
	"sort"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/namecache"
	"github.com/coinledger/coinledger/ledger"
)

// Channel is where coins are bought.
type Channel string

const (
	Apple  Channel = "apple"
	Google Channel = "google"
	Web    Channel = "web"
)

// Valid reports whether c is a known channel.
func (c Channel) Valid() bool { return c == Apple || c == Google || c == Web }

// CoinPack is one version of a pack's terms on one channel: from EffectiveAt
// until the next version, buying it gives Coins for one of Prices, and the
// store or PSP keeps FeeRate of the price.
type CoinPack struct {
	ID          string
	Channel     Channel
	EffectiveAt time.Time
	Coins       int64
	Prices      map[string]decimal.Decimal // by currency code
	FeeRate     decimal.Decimal            // 0.30 for a 30% store commission
	RecordedAt  time.Time
	// Key is the idempotency key of the Add publishing it (see
	// AddCoinPack); versions read back leave it empty.
	Key string
}

// Gift is one version of a catalog gift's coin price.
type Gift struct {
	ID          string
	EffectiveAt time.Time
	Coins       int64
	RecordedAt  time.Time
	Key         string // as CoinPack's
}

// ShareRule is one version of how a gift's value is split, for one creator
// or (Creator empty) the platform default.
type ShareRule struct {
	Creator     string
	EffectiveAt time.Time
	// CreatorShare is the creator's fraction of the gift's coins, paid in
	// diamonds (1 coin = 1 diamond before the share): 0.5 gives 500 diamonds
	// for a 1,000-coin gift.
	CreatorShare decimal.Decimal
	// Agency, when set, receives AgencyShare of the creator's diamonds.
	Agency      string
	AgencyShare decimal.Decimal
	// HoldingPeriod keeps earnings pending before they become available.
	HoldingPeriod time.Duration
	// DiamondValue is what one diamond is worth in DiamondCurrency.
	DiamondValue    decimal.Decimal
	DiamondCurrency string
	RecordedAt      time.Time
	Key             string // as CoinPack's
}

// ErrVersionExists is returned when an id and effective time already hold
// other terms: published versions are never rewritten.
var ErrVersionExists = &ledger.Error{Kind: ledger.Conflict, Message: "a version with this effective time exists with other terms"}

// ErrNotInForce is returned when no version is in force at the instant asked.
var ErrNotInForce = &ledger.Error{Kind: ledger.NotFound, Message: "no version in force at that time"}

// Same reports whether two versions hold the same terms.
func (p CoinPack) Same(q CoinPack) bool {
	if p.ID != q.ID || p.Channel != q.Channel || !p.EffectiveAt.Equal(q.EffectiveAt) || p.Coins != q.Coins ||
		!p.FeeRate.Equal(q.FeeRate) || len(p.Prices) != len(q.Prices) {
		return false
	}
	for cur, price := range p.Prices {
		if other, ok := q.Prices[cur]; !ok || !other.Equal(price) {
			return false
		}
	}
	return true
}

// Same reports whether two versions hold the same terms.
func (g Gift) Same(h Gift) bool {
	return g.ID == h.ID && g.EffectiveAt.Equal(h.EffectiveAt) && g.Coins == h.Coins
}

// Same reports whether two versions hold the same terms.
func (r ShareRule) Same(s ShareRule) bool {
	return r.Creator == s.Creator && r.EffectiveAt.Equal(s.EffectiveAt) && r.CreatorShare.Equal(s.CreatorShare) &&
		r.Agency == s.Agency && r.AgencyShare.Equal(s.AgencyShare) && r.HoldingPeriod == s.HoldingPeriod &&
		r.DiamondValue.Equal(s.DiamondValue) && r.DiamondCurrency == s.DiamondCurrency
}

// RefStore keeps reference data. Versions are only ever added: Add* inserts a
// version, or returns the stored one when it is identical (Conflict when the
// same id and effective time hold other terms); *At returns the version in
// force at an instant (NotFound when none is). An Add with a Key claims it
// for request, in the same transaction as the version: the key claimed for
// the same request returns the version it published, for another request
// it is a Conflict on idempotency_key.
type RefStore interface {
	AddCoinPack(ctx context.Context, p CoinPack, request string) (CoinPack, error)
	CoinPackAt(ctx context.Context, id string, ch Channel, at time.Time) (CoinPack, error)
	AddGift(ctx context.Context, g Gift, request string) (Gift, error)
	GiftAt(ctx context.Context, id string, at time.Time) (Gift, error)
	AddShareRule(ctx context.Context, r ShareRule, request string) (ShareRule, error)
	// CatalogRequest returns the request an Add's key was claimed for, ""
	// when it is not claimed.
	CatalogRequest(ctx context.Context, key string) (string, error)
	// ClaimAdminKey claims key for request unless it is claimed, and
	// returns the request it is claimed for and whether that is done;
	// FinishAdminKey marks it done.
	ClaimAdminKey(ctx context.Context, key, request string) (claimed string, done bool, err error)
	FinishAdminKey(ctx context.Context, key string) error
	// ShareRuleAt returns the creator's own rule in force at, else the
	// default's: an override, once in force, wins over later defaults.
	ShareRuleAt(ctx context.Context, creator string, at time.Time) (ShareRule, error)
	// A live-shopping session's terms are stored once (same terms again: a
	// no-op; other terms: Conflict); LiveSession is NotFound for an unknown id.
	AddLiveSession(ctx context.Context, s LiveSession) (LiveSession, error)
	LiveSession(ctx context.Context, id string) (LiveSession, error)
	// RegisterCreator records a creator who may receive gifts (again: a
	// no-op); CreatorRegistered reports whether one was.
	RegisterCreator(ctx context.Context, id string, at time.Time) error
	CreatorRegistered(ctx context.Context, id string) (bool, error)

	// The release job's index of pending accounts by release day
	// (YYYYMMDD), and the last day it closed ("" for none).
	NotePendingAccount(ctx context.Context, day, account string) error
	PendingAccounts(ctx context.Context, closed, through string, after PendingAccount, limit int) ([]PendingAccount, error)
	ReleaseClosedThrough(ctx context.Context) (string, error)
	CloseReleaseDays(ctx context.Context, from, to string) error
}

// PendingAccount is a pending-diamonds account under its release day.
type PendingAccount struct{ Day, Account string }

// Catalog validates and versions reference data.
type Catalog struct {
	store RefStore
	clock func() time.Time
	// lead is how long before taking effect a version must be recorded. It
	// lets a lookup be cached: the version in force now stays the answer
	// until now + lead, since no version can appear effective before then.
	lead time.Duration
	// Bounded like the other name caches: a share rule is cached per
	// creator, and a long-running server meets ever more creators. A name
	// the cache dropped costs one lookup in the store.
	current  namecache.Cache[*inForce] // cache key → version in force
	creators namecache.Cache[struct{}] // registered creators; registration is permanent
}

// inForce is the version in force when looked up, good for any instant in
// [from, until): a version recorded after the lookup may take effect at until.
type inForce struct {
	version     any
	from, until time.Time
}

// NewCatalog returns a catalog over store; clock nil means time.Now.
func NewCatalog(store RefStore, clock func() time.Time) *Catalog {
	if clock == nil {
		clock = time.Now
	}
	return &Catalog{store: store, clock: clock}
}

// DefaultLead is the lead time the binaries use: versions are published at
// least this long before they take effect.
const DefaultLead = 2 * time.Second

// WithLead makes every new version take effect at least lead after it is
// recorded, and caches lookups for that long; set it before first use.
// Every catalog writing to the same store must use the same lead.
func (c *Catalog) WithLead(lead time.Duration) *Catalog {
	c.lead = lead
	return c
}

// versionAt returns the version in force at t: from the cache when t falls in
// the window of the version in force at the last lookup, else from the store.
func versionAt[T any](c *Catalog, key string, t time.Time, effectiveAt func(T) time.Time, lookup func(time.Time) (T, error)) (T, error) {
	if c.lead <= 0 {
		return lookup(t)
	}
	if cur, ok := c.current.Get(key); ok && !t.Before(cur.from) && t.Before(cur.until) {
		return cur.version.(T), nil
	}
	now := c.clock()
	v, err := lookup(now)
	if err == nil {
		cur := &inForce{version: v, from: effectiveAt(v), until: now.Add(c.lead)}
		c.current.Put(key, cur)
		if !t.Before(cur.from) && t.Before(cur.until) {
			return v, nil
		}
	}
	return lookup(t)
}

func invalid(op, field, format string, args ...any) error {
	return &ledger.Error{Op: op, Kind: ledger.Invalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// effective defaults a zero time to now and refuses the past: a new version
// may only change what happens after it is recorded, never what was posted.
func (c *Catalog) effective(op string, t time.Time) (time.Time, time.Time, error) {
	now := c.clock().UTC().Truncate(time.Microsecond)
	earliest := now.Add(c.lead)
	if t.IsZero() {
		return earliest, now, nil
	}
	t = t.UTC().Truncate(time.Microsecond)
	if t.Before(earliest) {
		return t, now, invalid(op, "effective_at", "is before %s; versions may only take effect from %s after they are recorded", earliest.Format(time.RFC3339Nano), c.lead)
	}
	return t, now, nil
}

func checkFraction(op, field string, d decimal.Decimal, allowZero bool) error {
	if d.Sign() < 0 || (!allowZero && d.IsZero()) || d.GreaterThan(decimal.NewFromInt(1)) {
		if allowZero {
			return invalid(op, field, "must be between 0 and 1")
		}
		return invalid(op, field, "must be above 0 and at most 1")
	}
	if !d.Truncate(6).Equal(d) {
		return invalid(op, field, "has more than 6 decimal places")
	}
	return nil
}

// AddCoinPack adds a version of a coin pack's terms. With a Key (the gRPC
// API requires one) the call is idempotent however its effective time was
// given: a retry answers with the version the key published, and the key
// with another request, or another kind of version, is a Conflict. Without
// one, only the pack and effective time key the version, so a call that
// leaves the time to the catalog publishes again each time. The same holds
// for AddGift and AddShareRule.
func (c *Catalog) AddCoinPack(ctx context.Context, p CoinPack) (CoinPack, error) {
	const op = "economy.AddCoinPack"
	if err := checkID(op, "pack_id", p.ID, 64); err != nil {
		return p, err
	}
	if !p.Channel.Valid() {
		return p, invalid(op, "channel", "must be apple, google or web")
	}
	if p.Coins <= 0 {
		return p, invalid(op, "coins", "must be positive")
	}
	if len(p.Prices) == 0 {
		return p, invalid(op, "prices", "needs at least one currency")
	}
	currencies := make([]string, 0, len(p.Prices))
	for cur := range p.Prices {
		currencies = append(currencies, cur)
	}
	sort.Strings(currencies)
	for _, cur := range currencies {
		// Checked here, not first at a purchase, whose caller could not mend it.
		asset, ok := currency(cur)
		if !ok {
			return p, invalid(op, "prices", "currency %q is not one of the economy's currencies", cur)
		}
		if err := asset.CheckAmount(op, "prices["+cur+"]", p.Prices[cur]); err != nil {
			return p, err
		}
	}
	if p.FeeRate.Sign() < 0 || p.FeeRate.GreaterThanOrEqual(decimal.NewFromInt(1)) {
		return p, invalid(op, "fee_rate", "must be at least 0 and below 1")
	}
	terms := fmt.Sprintf("coin-pack %q %q %d %s", p.ID, p.Channel, p.Coins, p.FeeRate)
	for _, cur := range currencies {
		terms += " " + cur + ":" + p.Prices[cur].String()
	}
	request, err := c.publication(ctx, op, p.Key, &p.EffectiveAt, &p.RecordedAt, terms)
	if err != nil {
		return p, err
	}
	return c.store.AddCoinPack(ctx, p, request)
}

// publication checks an Add's key, fixes the version's effective and
// recorded times, and returns what the key stands for: the terms, and the
// effective time as asked, none when left to the catalog, so that a retry
// matches the time first chosen.
func (c *Catalog) publication(ctx context.Context, op, key string, effective, recorded *time.Time, terms string) (string, error) {
	if key != "" {
		if err := checkKey(op, "idempotency_key", key); err != nil {
			return "", err
		}
	}
	request := terms + " at server-chosen"
	if !effective.IsZero() {
		request = terms + " at " + effective.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
	}
	var err error
	if *effective, *recorded, err = c.effective(op, *effective); err != nil {
		// A retry that comes once the time it gave is near or past is
		// answered with the version the key published, not refused.
		if key == "" {
			return "", err
		}
		if claimed, kerr := c.store.CatalogRequest(ctx, key); kerr != nil || claimed != request {
			return "", err
		}
	}
	return request, nil
}

// CoinPackAt returns the pack's terms in force at an instant.
func (c *Catalog) CoinPackAt(ctx context.Context, id string, ch Channel, at time.Time) (CoinPack, error) {
	return versionAt(c, "pack\x00"+id+"\x00"+string(ch), at, func(p CoinPack) time.Time { return p.EffectiveAt },
		func(t time.Time) (CoinPack, error) { return c.store.CoinPackAt(ctx, id, ch, t) })
}

// AddGift adds a version of a gift's coin price.
func (c *Catalog) AddGift(ctx context.Context, g Gift) (Gift, error) {
	const op = "economy.AddGift"
	if err := checkID(op, "gift_id", g.ID, 64); err != nil {
		return g, err
	}
	// The bound a gift sent by its coin amount has: a gift sent by its id
	// must not post what the same amount sent directly would be refused.
	if g.Coins <= 0 || g.Coins > maxGiftCoins {
		return g, invalid(op, "coins", "must be between 1 and %d", maxGiftCoins)
	}
	request, err := c.publication(ctx, op, g.Key, &g.EffectiveAt, &g.RecordedAt, fmt.Sprintf("gift %q %d", g.ID, g.Coins))
	if err != nil {
		return g, err
	}
	return c.store.AddGift(ctx, g, request)
}

// GiftAt returns the gift's price in force at an instant.
func (c *Catalog) GiftAt(ctx context.Context, id string, at time.Time) (Gift, error) {
	return versionAt(c, "gift\x00"+id, at, func(g Gift) time.Time { return g.EffectiveAt },
		func(t time.Time) (Gift, error) { return c.store.GiftAt(ctx, id, t) })
}

// AddShareRule adds a version of a creator's (or the default) revenue share.
func (c *Catalog) AddShareRule(ctx context.Context, r ShareRule) (ShareRule, error) {
	const op = "economy.AddShareRule"
	if r.Creator != "" {
		if err := checkID(op, "creator", r.Creator, 64); err != nil {
			return r, err
		}
	}
	if err := checkFraction(op, "creator_share", r.CreatorShare, false); err != nil {
		return r, err
	}
	if r.Agency == "" && !r.AgencyShare.IsZero() {
		return r, invalid(op, "agency_share", "needs an agency")
	}
	if r.Agency != "" {
		if err := checkID(op, "agency", r.Agency, 64); err != nil {
			return r, err
		}
		if err := checkFraction(op, "agency_share", r.AgencyShare, false); err != nil {
			return r, err
		}
	}
	if r.HoldingPeriod < 0 || r.HoldingPeriod > 365*24*time.Hour || r.HoldingPeriod%time.Second != 0 {
		return r, invalid(op, "holding_period", "must be whole seconds between 0 and 365 days")
	}
	if r.DiamondValue.Sign() <= 0 {
		return r, invalid(op, "diamond_value", "must be positive")
	}
	cur, ok := currency(r.DiamondCurrency)
	if !ok {
		return r, invalid(op, "diamond_currency", "must be one of the economy's currencies, such as USD")
	}
	if g := Granule(r.DiamondValue, cur.Scale); g.GreaterThan(decimal.NewFromInt(maxGranule)) {
		return r, invalid(op, "diamond_value", "%s %s a diamond needs %s diamonds to make a whole minor unit; at most %d allowed", r.DiamondValue, r.DiamondCurrency, g, maxGranule)
	}
	terms := fmt.Sprintf("share-rule %q %s %q %s %d %s %q", r.Creator, r.CreatorShare, r.Agency, r.AgencyShare,
		int64(r.HoldingPeriod/time.Second), r.DiamondValue, r.DiamondCurrency)
	request, err := c.publication(ctx, op, r.Key, &r.EffectiveAt, &r.RecordedAt, terms)
	if err != nil {
		return r, err
	}
	return c.store.AddShareRule(ctx, r, request)
}

// ShareRuleAt returns the rule in force for a creator at an instant.
func (c *Catalog) ShareRuleAt(ctx context.Context, creator string, at time.Time) (ShareRule, error) {
	return versionAt(c, "share\x00"+creator, at, func(r ShareRule) time.Time { return r.EffectiveAt },
		func(t time.Time) (ShareRule, error) { return c.store.ShareRuleAt(ctx, creator, t) })
}

// CoinPack returns, for the catalog's readers, the pack's terms on a
// channel in force at an instant (now when zero). Unlike CoinPackAt, on the
// purchase path after the request was checked, it checks what it is asked.
func (c *Catalog) CoinPack(ctx context.Context, id string, ch Channel, at time.Time) (CoinPack, error) {
	const op = "economy.CoinPack"
	if err := checkID(op, "pack_id", id, 64); err != nil {
		return CoinPack{}, err
	}
	if !ch.Valid() {
		return CoinPack{}, invalid(op, "channel", "must be apple, google or web")
	}
	return c.CoinPackAt(ctx, id, ch, c.instant(at))
}

// Gift returns, for the catalog's readers, a gift's price in force at an
// instant (now when zero).
func (c *Catalog) Gift(ctx context.Context, id string, at time.Time) (Gift, error) {
	if err := checkID("economy.Gift", "gift_id", id, 64); err != nil {
		return Gift{}, err
	}
	return c.GiftAt(ctx, id, c.instant(at))
}

// ShareRule returns, for the catalog's readers, the rule a creator's gifts
// are split by at an instant (now when zero): the creator's own, or the
// platform default when it has none; creator "" asks for the default.
func (c *Catalog) ShareRule(ctx context.Context, creator string, at time.Time) (ShareRule, error) {
	if creator != "" {
		if err := checkID("economy.ShareRule", "creator", creator, 64); err != nil {
			return ShareRule{}, err
		}
	}
	return c.ShareRuleAt(ctx, creator, c.instant(at))
}

func (c *Catalog) instant(at time.Time) time.Time {
	if at.IsZero() {
		return c.clock()
	}
	return at
}

// RegisterCreator lets a creator receive gifts.
func (c *Catalog) RegisterCreator(ctx context.Context, id string) error {
	if err := checkID("economy.RegisterCreator", "creator", id, 64); err != nil {
		return err
	}
	return c.store.RegisterCreator(ctx, id, c.clock().UTC().Truncate(time.Microsecond))
}

// CreatorRegistered reports whether a creator may receive gifts.
func (c *Catalog) CreatorRegistered(ctx context.Context, id string) (bool, error) {
	if _, ok := c.creators.Get(id); ok {
		return true, nil
	}
	ok, err := c.store.CreatorRegistered(ctx, id)
	if ok {
		c.creators.Put(id, struct{}{})
	}
	return ok, err
}

// maxGranule bounds how many diamonds may wait in a carry for a whole minor
// unit of their value: with 0.005 USD a diamond it is 2.
const maxGranule = 1000

// Granule is the fewest whole diamonds whose value is a whole number of the
// currency's minor units: 2 for 0.005 USD, 1 for 0.01 USD. Diamonds are
// minted in granules, so the creator's payable is always exactly their
// diamonds' value.
func Granule(value decimal.Decimal, scale int32) decimal.Decimal {
	// Every gift works this out; in int64 it costs a tenth of big.Int's.
	if value.NumDigits() <= 18 {
		num, places := value.CoefficientInt64(), -(value.Exponent() + scale)
		for places > 0 && num%10 == 0 {
			num /= 10
			places--
		}
		if places <= 0 {
			return decimal.NewFromInt(1)
		}
		if places <= 18 {
			den := int64(1)
			for range places {
				den *= 10
			}
			return decimal.NewFromInt(den / gcd(num, den))
		}
	}
	minor := value.Shift(scale) // value in minor units, maybe fractional
	places := int32(0)
	for !minor.Shift(places).Equal(minor.Shift(places).Truncate(0)) {
		places++
	}
	num := minor.Shift(places).BigInt()
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(places)), nil)
	return decimal.NewFromBigInt(new(big.Int).Quo(den, new(big.Int).GCD(nil, nil, num, den)), 0)
}

func gcd(a, b int64) int64 {
	if a < 0 {
		a = -a
	}
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// currency is the economy's currency of that code, if it is one.
func currency(code string) (ledger.Asset, bool) {
	for _, a := range Currencies {
		if a.Code == code {
			return a, true
		}
	}
	return ledger.Asset{}, false
}
