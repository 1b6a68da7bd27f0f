package economy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/internal/gctune"
	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
	"github.com/coinledger/coinledger/ledger/postgres"
)

// BenchmarkSendGift is the gift storm: 1,000 viewers send 5-coin
// gifts to one creator through economy.SendGift, 32 concurrent callers, on a
// durable PostgreSQL (fsync on) on this machine. Each viewer holds 30 promo
// coins and a purchased lot, so gifts start promo-only and then spill into
// paid coins with FIFO relief; each gift's 2.5 diamonds go through the
// creator's carry, minting whole granules with their payable.
//
// The sub-benchmarks compare the collector target (100 is Go's default,
// gctune.GOGC what coinledger's commands set) and the longest a commit lane
// lingers for more requests before committing a batch that is not full (it
// lingers a fifth of its recent commit time up to that; 1ms is the default).
//
//	go test -run '^$' -bench SendGift -benchtime 20000x -count 5 ./ledger/economy/
func BenchmarkSendGift(b *testing.B) {
	for _, gogc := range []int{100, gctune.GOGC} {
		for _, linger := range []time.Duration{-1, 250 * time.Microsecond, time.Millisecond} {
			name := fmt.Sprintf("gogc-%d/linger-%s", gogc, linger)
			if linger < 0 {
				name = fmt.Sprintf("gogc-%d/linger-none", gogc)
			}
			b.Run(name, func(b *testing.B) {
				defer debug.SetGCPercent(debug.SetGCPercent(gogc))
				benchSendGift(b, linger)
			})
		}
	}
}

func benchSendGift(b *testing.B, linger time.Duration) {
	ctx := context.Background()
	now := time.Now()
	svc, eco := benchEconomy(b, linger, economy.CoinPack{ID: "big", Channel: economy.Web, Coins: 100_000, FeeRate: dec("0.029"),
		Prices: map[string]decimal.Decimal{"USD": dec("999.99")}})
	const viewers = 1000
	dbtest.Fanout(viewers, 32, func(i int) {
		v := fmt.Sprintf("v%d", i)
		if _, err := eco.Purchase(ctx, economy.PurchaseRequest{Channel: economy.Web, StoreTransactionID: "ch-" + v, User: v,
			PackID: "big", AmountPaid: dec("999.99"), Currency: "USD", PurchasedAt: time.Now()}); err != nil {
			b.Error(err)
		}
		if _, err := eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: "promo-" + v, User: v, Coins: 30}); err != nil {
			b.Error(err)
		}
	})
	sentAt := time.Now()
	dbtest.ClosedLoop(b, 32, func(i int) error {
		_, err := eco.SendGift(ctx, economy.GiftRequest{Key: fmt.Sprintf("g%d-%d", now.UnixNano(), i), Viewer: fmt.Sprintf("v%d", i%viewers),
			Creator: "star", Coins: 5, StreamID: "live-1", SentAt: sentAt})
		return err
	})
	r, err := svc.Verify(ctx)
	if err != nil || !r.Clean() {
		b.Fatalf("verify: %v %v", err, r)
	}
}

// BenchmarkGiftFromManyLots measures what a viewer's open lots cost their
// gifts: 32 viewers, one per caller, each holding the given number of open
// lots (one purchase each, of at least 10 coins and enough that none runs
// dry), send 5-coin gifts of paid coins, so every gift relieves the oldest.
//
//	go test -run '^$' -bench GiftFromManyLots -benchtime 6400x -count 3 ./ledger/economy/
func BenchmarkGiftFromManyLots(b *testing.B) {
	for _, lots := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("lots-%d", lots), func(b *testing.B) { benchGiftFromLots(b, lots) })
	}
}

func benchGiftFromLots(b *testing.B, lots int) {
	const viewers, giftCoins = 32, 5
	ctx := context.Background()
	perLot := max(10, (b.N/viewers+1)*giftCoins/lots+giftCoins)
	svc, eco := benchEconomy(b, 0, economy.CoinPack{ID: "lot", Channel: economy.Web, Coins: int64(perLot), FeeRate: dec("0.029"),
		Prices: map[string]decimal.Decimal{"USD": dec("0.10")}})
	dbtest.Fanout(viewers*lots, 32, func(i int) {
		if _, err := eco.Purchase(ctx, economy.PurchaseRequest{Channel: economy.Web, StoreTransactionID: fmt.Sprintf("ch-%d", i),
			User: fmt.Sprintf("v%d", i%viewers), PackID: "lot", AmountPaid: dec("0.10"), Currency: "USD", PurchasedAt: time.Now()}); err != nil {
			b.Error(err)
		}
	})
	now, sentAt := time.Now(), time.Now()
	dbtest.ClosedLoop(b, viewers, func(i int) error {
		_, err := eco.SendGift(ctx, economy.GiftRequest{Key: fmt.Sprintf("g%d-%d", now.UnixNano(), i), Viewer: fmt.Sprintf("v%d", i%viewers),
			Creator: "star", Coins: giftCoins, StreamID: "live-1", SentAt: sentAt})
		return err
	})
	if r, err := svc.Verify(ctx); err != nil || !r.Clean() {
		b.Fatalf("verify: %v %v", err, r)
	}
}

// benchEconomy is an economy on the benchmark cluster with one coin pack, a
// 50% share rule and the creator "star", its reference data in effect.
func benchEconomy(b *testing.B, linger time.Duration, pack economy.CoinPack) (*ledger.Service, *economy.Economy) {
	db, _ := dbtest.Durable(b).Open(b, postgres.Config{})
	ctx := context.Background()
	svc := ledger.NewService(db, ledger.Options{Linger: linger, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	b.Cleanup(svc.Close)
	// Lookups of reference data are cached for the catalog's lead time.
	const lead = time.Second
	cat := economy.NewCatalog(db, nil).WithLead(lead)
	eco := economy.New(svc, cat, nil)
	if err := eco.Bootstrap(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := cat.AddCoinPack(ctx, pack); err != nil {
		b.Fatal(err)
	}
	if _, err := cat.AddShareRule(ctx, economy.ShareRule{CreatorShare: dec("0.5"), HoldingPeriod: 7 * 24 * time.Hour,
		DiamondValue: dec("0.005"), DiamondCurrency: "USD"}); err != nil {
		b.Fatal(err)
	}
	if err := cat.RegisterCreator(ctx, "star"); err != nil {
		b.Fatal(err)
	}
	time.Sleep(lead) // until the versions take effect
	return svc, eco
}
