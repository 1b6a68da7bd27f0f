package postgres_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
	"github.com/coinledger/coinledger/ledger/postgres"
)

func TestReferenceDataVersions(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		db, owner := b.Open(t, postgres.Config{})
		ctx := context.Background()
		clock := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
		cat := economy.NewCatalog(db, func() time.Time { return clock })
		t0, t1 := clock, clock.Add(24*time.Hour)

		p1 := economy.CoinPack{ID: "p1321", Channel: economy.Apple, Coins: 1321, FeeRate: decimal.RequireFromString("0.30"),
			Prices: map[string]decimal.Decimal{"USD": decimal.RequireFromString("19.99"), "JPY": decimal.NewFromInt(3000)}}
		if _, err := cat.AddCoinPack(ctx, p1); err != nil {
			t.Fatal(err)
		}
		p2 := p1
		p2.EffectiveAt, p2.FeeRate = t1, decimal.RequireFromString("0.15") // small-business rate from tomorrow
		if _, err := cat.AddCoinPack(ctx, p2); err != nil {
			t.Fatal(err)
		}
		// Adding the same version again is a no-op; other terms are refused.
		if _, err := cat.AddCoinPack(ctx, p2); err != nil {
			t.Fatalf("identical version: %v", err)
		}
		p3 := p2
		p3.Coins = 1400
		if _, err := cat.AddCoinPack(ctx, p3); !errors.Is(err, economy.ErrVersionExists) || ledger.KindOf(err) != ledger.Conflict {
			t.Fatalf("rewriting a version: %v", err)
		}
		for _, tc := range []struct {
			at  time.Time
			fee string
		}{{t0, "0.3"}, {t1.Add(-time.Microsecond), "0.3"}, {t1, "0.15"}, {t1.Add(time.Hour), "0.15"}} {
			got, err := cat.CoinPackAt(ctx, "p1321", economy.Apple, tc.at)
			if err != nil || got.FeeRate.String() != tc.fee || !got.Prices["JPY"].Equal(decimal.NewFromInt(3000)) {
				t.Errorf("pack at %s: %+v %v, want fee %s", tc.at, got, err, tc.fee)
			}
		}
		if _, err := cat.CoinPackAt(ctx, "p1321", economy.Apple, t0.Add(-time.Second)); !errors.Is(err, economy.ErrNotInForce) {
			t.Errorf("before the first version: %v", err)
		}
		if _, err := cat.CoinPackAt(ctx, "p1321", economy.Google, t1); ledger.KindOf(err) != ledger.NotFound {
			t.Errorf("other channel: %v", err)
		}

		if _, err := cat.AddGift(ctx, economy.Gift{ID: "lion", Coins: 29999}); err != nil {
			t.Fatal(err)
		}
		if _, err := cat.AddGift(ctx, economy.Gift{ID: "lion", Coins: 25000, EffectiveAt: t1}); err != nil {
			t.Fatal(err)
		}
		if g, err := cat.GiftAt(ctx, "lion", t1.Add(-time.Second)); err != nil || g.Coins != 29999 {
			t.Errorf("lion before the price change: %+v %v", g, err)
		}
		if g, err := cat.GiftAt(ctx, "lion", t1); err != nil || g.Coins != 25000 {
			t.Errorf("lion after the price change: %+v %v", g, err)
		}

		def := economy.ShareRule{CreatorShare: decimal.RequireFromString("0.5"), HoldingPeriod: 72 * time.Hour,
			DiamondValue: decimal.RequireFromString("0.005"), DiamondCurrency: "USD"}
		if _, err := cat.AddShareRule(ctx, def); err != nil {
			t.Fatal(err)
		}
		own := def
		own.Creator, own.CreatorShare, own.Agency, own.AgencyShare, own.EffectiveAt = "c42", decimal.RequireFromString("0.53"), "agency-7", decimal.RequireFromString("0.2"), t1
		if _, err := cat.AddShareRule(ctx, own); err != nil {
			t.Fatal(err)
		}
		later := def
		later.CreatorShare, later.EffectiveAt = decimal.RequireFromString("0.4"), t1.Add(time.Hour)
		if _, err := cat.AddShareRule(ctx, later); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			creator string
			at      time.Time
			share   string
			agency  string
		}{
			{"c42", t0, "0.5", ""},                             // override not yet in force: default
			{"c42", t1, "0.53", "agency-7"},                    // override
			{"c42", t1.Add(2 * time.Hour), "0.53", "agency-7"}, // override wins over a later default
			{"c7", t1.Add(2 * time.Hour), "0.4", ""},           // others follow the default
			{"c7", t1, "0.5", ""},
		} {
			got, err := cat.ShareRuleAt(ctx, tc.creator, tc.at)
			if err != nil || got.CreatorShare.String() != tc.share || got.Agency != tc.agency || got.HoldingPeriod != 72*time.Hour {
				t.Errorf("%s at %s: %+v %v; want share %s agency %q", tc.creator, tc.at, got, err, tc.share, tc.agency)
			}
		}

		// The service's role cannot rewrite a version.
		conn, err := pgx.Connect(ctx, owner)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "SET ROLE coinledger_writer"); err != nil {
			t.Fatal(err)
		}
		for _, stmt := range []string{"UPDATE coin_packs SET coins = 1", "DELETE FROM gifts", "UPDATE share_rules SET creator_share = 1"} {
			if _, err := conn.Exec(ctx, stmt); sqlStateOf(err) != "42501" {
				t.Errorf("%s as writer: %v", stmt, err)
			}
		}
	})
}

// A catalog key publishes one version however many times, and however
// concurrently, its request is retried with the time left to the catalog;
// a request refused for its terms leaves its key free.
func TestCatalogKeys(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		db, _ := b.Open(t, postgres.Config{})
		ctx := context.Background()
		base := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
		var ticks atomic.Int64 // every call sees a later now
		cat := economy.NewCatalog(db, func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * time.Millisecond) })

		var wg sync.WaitGroup
		got := make([]economy.Gift, 8)
		errs := make([]error, len(got))
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], errs[i] = cat.AddGift(ctx, economy.Gift{ID: "lion", Coins: 100, Key: "k-lion"})
			}()
		}
		wg.Wait()
		for i := range got {
			if errs[i] != nil || !got[i].EffectiveAt.Equal(got[0].EffectiveAt) {
				t.Fatalf("call %d: %+v %v, want every call answered with %s", i, got[i], errs[i], got[0].EffectiveAt)
			}
		}
		if latest, err := cat.GiftAt(ctx, "lion", base.Add(time.Hour)); err != nil || !latest.EffectiveAt.Equal(got[0].EffectiveAt) {
			t.Fatalf("latest version %+v %v: a retry published another", latest, err)
		}

		at := base.Add(24 * time.Hour)
		if _, err := cat.AddGift(ctx, economy.Gift{ID: "tiger", Coins: 10, EffectiveAt: at, Key: "k-tiger"}); err != nil {
			t.Fatal(err)
		}
		if _, err := cat.AddGift(ctx, economy.Gift{ID: "tiger", Coins: 20, EffectiveAt: at, Key: "k-other"}); !errors.Is(err, economy.ErrVersionExists) {
			t.Fatalf("other terms at a taken time: %v", err)
		}
		if _, err := cat.AddGift(ctx, economy.Gift{ID: "bear", Coins: 20, Key: "k-other"}); err != nil {
			t.Fatalf("the refused request's key, used again: %v", err)
		}
		_, err := cat.AddGift(ctx, economy.Gift{ID: "bear", Coins: 21, Key: "k-other"})
		if ledger.KindOf(err) != ledger.Conflict || ledger.FieldOf(err) != "idempotency_key" {
			t.Fatalf("the key with other terms: %v", err)
		}
	})
}
