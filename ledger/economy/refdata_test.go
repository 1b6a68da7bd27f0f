package economy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
)

// nopStore accepts anything; validation is what is under test.
type nopStore struct{ RefStore }

func (nopStore) AddCoinPack(_ context.Context, p CoinPack, _ string) (CoinPack, error) { return p, nil }
func (nopStore) AddGift(_ context.Context, g Gift, _ string) (Gift, error)             { return g, nil }
func (nopStore) AddShareRule(_ context.Context, r ShareRule, _ string) (ShareRule, error) {
	return r, nil
}

var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestAddValidation(t *testing.T) {
	c := NewCatalog(nopStore{}, func() time.Time { return now })
	ctx := context.Background()
	pack := func() CoinPack {
		return CoinPack{ID: "pack-1321", Channel: Apple, Coins: 1321, Prices: map[string]decimal.Decimal{"USD": d("19.99")}, FeeRate: d("0.30")}
	}
	rule := func() ShareRule {
		return ShareRule{CreatorShare: d("0.5"), HoldingPeriod: 72 * time.Hour, DiamondValue: d("0.005"), DiamondCurrency: "USD"}
	}
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"pack ok", func() error { _, err := c.AddCoinPack(ctx, pack()); return err }, ""},
		{"pack id", func() error { p := pack(); p.ID = "a b"; _, err := c.AddCoinPack(ctx, p); return err }, "pack_id"},
		{"channel", func() error { p := pack(); p.Channel = "steam"; _, err := c.AddCoinPack(ctx, p); return err }, "channel"},
		{"coins", func() error { p := pack(); p.Coins = 0; _, err := c.AddCoinPack(ctx, p); return err }, "coins"},
		{"no prices", func() error { p := pack(); p.Prices = nil; _, err := c.AddCoinPack(ctx, p); return err }, "prices"},
		{"bad currency", func() error { p := pack(); p.Prices["usd"] = d("1"); _, err := c.AddCoinPack(ctx, p); return err }, "prices"},
		{"zero price", func() error { p := pack(); p.Prices["USD"] = d("0"); _, err := c.AddCoinPack(ctx, p); return err }, "prices[USD]"},
		{"price finer than its currency", func() error { p := pack(); p.Prices["USD"] = d("0.999"); _, err := c.AddCoinPack(ctx, p); return err }, "prices[USD]"},
		{"price in whole yen only", func() error { p := pack(); p.Prices["JPY"] = d("150.5"); _, err := c.AddCoinPack(ctx, p); return err }, "prices[JPY]"},
		{"price in a currency the economy does not book", func() error { p := pack(); p.Prices["XYZ"] = d("1"); _, err := c.AddCoinPack(ctx, p); return err }, "prices"},
		{"fee 1", func() error { p := pack(); p.FeeRate = d("1"); _, err := c.AddCoinPack(ctx, p); return err }, "fee_rate"},
		{"backdated", func() error {
			p := pack()
			p.EffectiveAt = now.Add(-time.Second)
			_, err := c.AddCoinPack(ctx, p)
			return err
		}, "effective_at"},
		{"future ok", func() error {
			p := pack()
			p.EffectiveAt = now.Add(time.Hour)
			_, err := c.AddCoinPack(ctx, p)
			return err
		}, ""},
		{"gift ok", func() error { _, err := c.AddGift(ctx, Gift{ID: "rose", Coins: 1}); return err }, ""},
		{"gift coins", func() error { _, err := c.AddGift(ctx, Gift{ID: "rose", Coins: -5}); return err }, "coins"},
		{"gift coins past a sent gift's bound", func() error { _, err := c.AddGift(ctx, Gift{ID: "rose", Coins: maxGiftCoins + 1}); return err }, "coins"},
		{"gift coins at the bound", func() error { _, err := c.AddGift(ctx, Gift{ID: "rose", Coins: maxGiftCoins}); return err }, ""},
		{"gift id", func() error { _, err := c.AddGift(ctx, Gift{ID: "", Coins: 5}); return err }, "gift_id"},
		{"rule ok", func() error { _, err := c.AddShareRule(ctx, rule()); return err }, ""},
		{"share 0", func() error { r := rule(); r.CreatorShare = d("0"); _, err := c.AddShareRule(ctx, r); return err }, "creator_share"},
		{"share 1.01", func() error { r := rule(); r.CreatorShare = d("1.01"); _, err := c.AddShareRule(ctx, r); return err }, "creator_share"},
		{"share digits", func() error {
			r := rule()
			r.CreatorShare = d("0.1234567")
			_, err := c.AddShareRule(ctx, r)
			return err
		}, "creator_share"},
		{"agency share without agency", func() error { r := rule(); r.AgencyShare = d("0.1"); _, err := c.AddShareRule(ctx, r); return err }, "agency_share"},
		{"agency ok", func() error {
			r := rule()
			r.Creator, r.Agency, r.AgencyShare = "c42", "agency-7", d("0.2")
			_, err := c.AddShareRule(ctx, r)
			return err
		}, ""},
		{"holding", func() error { r := rule(); r.HoldingPeriod = -time.Hour; _, err := c.AddShareRule(ctx, r); return err }, "holding_period"},
		{"holding fraction", func() error {
			r := rule()
			r.HoldingPeriod = 1500 * time.Millisecond
			_, err := c.AddShareRule(ctx, r)
			return err
		}, "holding_period"},
		{"diamond value", func() error { r := rule(); r.DiamondValue = d("0"); _, err := c.AddShareRule(ctx, r); return err }, "diamond_value"},
		{"diamond currency", func() error { r := rule(); r.DiamondCurrency = "$"; _, err := c.AddShareRule(ctx, r); return err }, "diamond_currency"},
	}
	for _, tt := range tests {
		err := tt.call()
		if tt.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if ledger.KindOf(err) != ledger.Invalid || ledger.FieldOf(err) != tt.field {
			t.Errorf("%s: got %v (field %q), want Invalid on %s", tt.name, err, ledger.FieldOf(err), tt.field)
		}
	}
}

// countingStore keeps share rules in memory and counts lookups.
type countingStore struct {
	RefStore
	rules   []ShareRule
	lookups int
}

func (s *countingStore) AddShareRule(_ context.Context, r ShareRule, _ string) (ShareRule, error) {
	s.rules = append(s.rules, r)
	return r, nil
}

func (s *countingStore) ShareRuleAt(_ context.Context, _ string, at time.Time) (ShareRule, error) {
	s.lookups++
	var best *ShareRule
	for i, r := range s.rules {
		if !r.EffectiveAt.After(at) && (best == nil || r.EffectiveAt.After(best.EffectiveAt)) {
			best = &s.rules[i]
		}
	}
	if best == nil {
		return ShareRule{}, ErrNotInForce
	}
	return *best, nil
}

func (s *countingStore) CreatorRegistered(context.Context, string) (bool, error) {
	s.lookups++
	return true, nil
}

// TestCatalogCachesBounded: the catalog meets a share-rule key per creator
// and caches each registered creator, so its caches are bounded: past the
// limit they start over, and a dropped name is looked up in the store again.
func TestCatalogCachesBounded(t *testing.T) {
	ctx := context.Background()
	store := &countingStore{rules: []ShareRule{{CreatorShare: d("0.5"), DiamondValue: d("0.005"), DiamondCurrency: "USD", EffectiveAt: now}}}
	c := NewCatalog(store, func() time.Time { return now.Add(time.Hour) }).WithLead(time.Minute)
	c.current.Limit, c.creators.Limit = 10, 10
	lookups := []struct {
		name   string
		lookup func(creator string) error
	}{
		{"share rules", func(creator string) error { _, err := c.ShareRuleAt(ctx, creator, now.Add(time.Hour)); return err }},
		{"registered creators", func(creator string) error { _, err := c.CreatorRegistered(ctx, creator); return err }},
	}
	for _, l := range lookups {
		for i := range 25 {
			if err := l.lookup(fmt.Sprint("c", i)); err != nil {
				t.Fatalf("%s: %v", l.name, err)
			}
		}
		storeLookups := func(creator string) int {
			before := store.lookups
			if err := l.lookup(creator); err != nil {
				t.Fatalf("%s: %v", l.name, err)
			}
			return store.lookups - before
		}
		if n := storeLookups("c24"); n != 0 {
			t.Errorf("%s: the latest creator took %d store lookups, want it cached", l.name, n)
		}
		if n := storeLookups("c0"); n != 1 {
			t.Errorf("%s: the first of 25 creators took %d store lookups with room for 10, want 1 (dropped)", l.name, n)
		}
	}
}

// TestCatalogLeadCaches: with a lead time, a lookup is cached until the lead
// runs out, and never serves a version outside the window it was in force.
func TestCatalogLeadCaches(t *testing.T) {
	clock := now
	store := &countingStore{}
	c := NewCatalog(store, func() time.Time { return clock }).WithLead(time.Minute)
	ctx := context.Background()
	rule := ShareRule{CreatorShare: d("0.5"), DiamondValue: d("0.005"), DiamondCurrency: "USD"}
	if _, err := c.AddShareRule(ctx, ShareRule{CreatorShare: d("0.5"), DiamondValue: d("0.005"), DiamondCurrency: "USD", EffectiveAt: now.Add(30 * time.Second)}); ledger.FieldOf(err) != "effective_at" {
		t.Fatalf("a version inside the lead: %v", err)
	}
	first, err := c.AddShareRule(ctx, rule) // effective now + 1 minute
	if err != nil || !first.EffectiveAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("default effective time: %v %v", first.EffectiveAt, err)
	}
	clock = now.Add(2 * time.Minute)
	for i := 0; i < 5; i++ {
		if r, err := c.ShareRuleAt(ctx, "c1", clock.Add(time.Duration(i)*time.Second)); err != nil || !r.CreatorShare.Equal(d("0.5")) {
			t.Fatalf("lookup %d: %v %v", i, r, err)
		}
	}
	if store.lookups != 1 {
		t.Errorf("%d store lookups for five gifts inside the lead, want 1", store.lookups)
	}
	if _, err := c.ShareRuleAt(ctx, "c1", now); err != ErrNotInForce { // before the version: not from the cache
		t.Errorf("before the first version: %v", err)
	}
	rule.CreatorShare = d("0.6")
	second, err := c.AddShareRule(ctx, rule) // effective now + 3 minutes
	if err != nil {
		t.Fatal(err)
	}
	clock = second.EffectiveAt
	if r, _ := c.ShareRuleAt(ctx, "c1", clock); !r.CreatorShare.Equal(d("0.6")) {
		t.Errorf("after the lead ran out the new version is in force: got %s", r.CreatorShare)
	}
	if r, _ := c.ShareRuleAt(ctx, "c1", clock.Add(-time.Second)); !r.CreatorShare.Equal(d("0.5")) {
		t.Errorf("a gift just before the change: got %s", r.CreatorShare)
	}
}
