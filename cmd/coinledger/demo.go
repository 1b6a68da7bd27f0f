package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
)

const (
	demoViewers = 20
	demoCreator = "creator-1"
	demoHold    = 7 * 24 * time.Hour
)

// The demo's gift and share rule: a 33-coin heart at 50% makes 16.5 diamonds,
// so the creator's carry is exercised; a diamond is worth half a cent.
var (
	demoGift = economy.Gift{ID: "heart", Coins: 33}
	demoRule = economy.ShareRule{CreatorShare: decimal.RequireFromString("0.5"), HoldingPeriod: demoHold,
		DiamondValue: decimal.RequireFromString("0.005"), DiamondCurrency: "USD"}
)

// The demo's coin packs, one per channel.
var demoPacks = []economy.CoinPack{
	{ID: "p1321", Channel: economy.Apple, Coins: 1321, FeeRate: decimal.RequireFromString("0.30"), Prices: map[string]decimal.Decimal{"USD": decimal.RequireFromString("19.99")}},
	{ID: "p1321", Channel: economy.Google, Coins: 1321, FeeRate: decimal.RequireFromString("0.15"), Prices: map[string]decimal.Decimal{"EUR": decimal.RequireFromString("18.99")}},
	{ID: "p1321", Channel: economy.Web, Coins: 1321, FeeRate: decimal.RequireFromString("0.029"), Prices: map[string]decimal.Decimal{"USD": decimal.RequireFromString("17.99")}},
}

func cmdDemo(ctx context.Context, c *common, args []string, stdout io.Writer) (int, error) {
	if len(args) > 0 {
		return exitError, fmt.Errorf("unexpected arguments %q", args)
	}
	svc, db, closeAll, err := c.open(ctx, true)
	if err != nil {
		return exitError, err
	}
	defer closeAll()
	cat := economy.NewCatalog(db, nil).WithLead(economy.DefaultLead)
	d := &demo{svc: svc, cat: cat, eco: economy.New(svc, cat, nil), out: stdout, run: fmt.Sprintf("demo-%d", time.Now().UnixNano())}
	if err := d.setup(ctx); err != nil {
		return exitError, err
	}
	if err := d.script(ctx); err != nil {
		return exitError, err
	}
	if err := d.printBalances(ctx); err != nil {
		return exitError, err
	}
	fmt.Fprintln(stdout)
	return verifyReport(ctx, c, svc, stdout)
}

type demo struct {
	svc *ledger.Service
	cat *economy.Catalog
	eco *economy.Economy
	out io.Writer
	run string // prefixes ids and keys, so the demo can run again on the same data
}

// viewer names a viewer of this run, so that a run on the same data starts
// from empty wallets.
func (d *demo) viewer(v int) string { return fmt.Sprintf("viewer-%d-%s", v, d.run[len(d.run)-6:]) }

func (d *demo) setup(ctx context.Context) error {
	if err := d.eco.Bootstrap(ctx); err != nil {
		return err
	}
	now := time.Now()
	var ready time.Time // when the versions added now take effect
	for _, p := range demoPacks {
		// A pack already in force with these terms needs no new version.
		if cur, err := d.cat.CoinPackAt(ctx, p.ID, p.Channel, now); err == nil {
			p.EffectiveAt = cur.EffectiveAt
			if cur.Same(p) {
				continue
			}
			p.EffectiveAt = time.Time{}
		}
		added, err := d.cat.AddCoinPack(ctx, p)
		if err != nil {
			return err
		}
		ready = added.EffectiveAt
	}
	if g, err := d.cat.GiftAt(ctx, demoGift.ID, now); err != nil || g.Coins != demoGift.Coins {
		added, err := d.cat.AddGift(ctx, demoGift)
		if err != nil {
			return err
		}
		ready = added.EffectiveAt
	}
	if r, err := d.cat.ShareRuleAt(ctx, demoCreator, now); err != nil || !r.CreatorShare.Equal(demoRule.CreatorShare) ||
		r.HoldingPeriod != demoRule.HoldingPeriod || !r.DiamondValue.Equal(demoRule.DiamondValue) {
		added, err := d.cat.AddShareRule(ctx, demoRule)
		if err != nil {
			return err
		}
		ready = added.EffectiveAt
	}
	if err := d.cat.RegisterCreator(ctx, demoCreator); err != nil {
		return err
	}
	if wait := time.Until(ready); wait > 0 {
		// Versions take effect a lead time after they are published.
		fmt.Fprintf(d.out, "published the demo's catalog; waiting %s for it to take effect\n", wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (d *demo) gift(key string, v int) economy.GiftRequest {
	return economy.GiftRequest{Key: key, Viewer: d.viewer(v), Creator: demoCreator, GiftID: demoGift.ID, StreamID: d.run, SentAt: time.Now()}
}

func (d *demo) purchase(v int) economy.PurchaseRequest {
	pack := demoPacks[v%len(demoPacks)]
	var cur string
	for cur = range pack.Prices {
	}
	return economy.PurchaseRequest{
		Channel: pack.Channel, StoreTransactionID: fmt.Sprintf("%s-%d", d.run, v), User: d.viewer(v),
		PackID: pack.ID, AmountPaid: pack.Prices[cur], Currency: cur, PurchasedAt: time.Now(),
	}
}

func (d *demo) script(ctx context.Context) error {
	fmt.Fprintf(d.out, "run %s\n\n", d.run)

	// 1. Every viewer buys a coin pack on one of the three channels, all at once.
	purchases := make([]economy.PurchaseRequest, demoViewers+1)
	for v := 1; v <= demoViewers; v++ {
		purchases[v] = d.purchase(v)
	}
	if err := d.concurrently(demoViewers, func(i int) error {
		_, err := d.eco.Purchase(ctx, purchases[i+1])
		return err
	}); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "%d concurrent purchases of 1,321 coins: Apple $19.99 (30%%), Google €18.99 (15%%), web $17.99 (2.9%%)\n", demoViewers)

	// 2. The store notifies viewer 1's purchase again: the original comes back.
	first, err := d.eco.Purchase(ctx, purchases[1])
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "repeated store notification for viewer 1: replayed=%v, same transaction %s, nothing posted twice\n", first.Replayed, first.ID)

	// 3. A welcome promo: free coins with no fiat value.
	if _, err := d.eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: d.run + ":welcome:1", User: d.viewer(1), Coins: 100, Reason: "welcome"}); err != nil {
		return err
	}
	fmt.Fprintln(d.out, "promo grant: 100 free coins to viewer 1")

	dup, err := d.eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: d.run + ":welcome-again:1", User: d.viewer(1), Coins: 100, Reason: "welcome"})
	if err != nil {
		return err
	}
	// A second welcome grant was a mistake: reversed; a second reversal is refused.
	if _, err := d.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: d.run + ":reverse:welcome-again:1", TransactionID: dup.ID, Metadata: []byte(`{"reason":"granted twice"}`)}); err != nil {
		return err
	}
	_, err = d.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: d.run + ":reverse-again:welcome-again:1", TransactionID: dup.ID})
	fmt.Fprintf(d.out, "duplicate promo grant %s reversed; reversing it again: refused (%s)\n", dup.ID, ledger.KindOf(err))

	// 4. A gift storm into one creator from 32 concurrent callers.
	const gifts = 400
	var sent atomic.Int64
	start := time.Now()
	if err := d.concurrently(32, func(w int) error {
		for i := w; i < gifts; i += 32 {
			if _, err := d.eco.SendGift(ctx, d.gift(fmt.Sprintf("%s:gift:%d", d.run, i), i%demoViewers+1)); err != nil {
				return err
			}
			sent.Add(1)
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "gift storm: %d hearts (33 coins, 16.5 diamonds) into %s from 32 callers in %s: promo coins first, deferred revenue relieved lot by lot, diamonds minted in whole granules, fractions carried\n",
		sent.Load(), demoCreator, time.Since(start).Round(time.Millisecond))

	// 5. Refusals: a key reused with other content, a gift beyond the wallet,
	// a gift to oneself, a blocked viewer.
	reused := d.gift(fmt.Sprintf("%s:gift:0", d.run), 2)
	_, err = d.eco.SendGift(ctx, reused)
	fmt.Fprintf(d.out, "gift key reused with different content: refused (%s): %v\n", ledger.KindOf(err), err)
	big := d.gift(d.run+":gift:big", 2)
	big.GiftID, big.Coins = "", 1_000_000
	_, err = d.eco.SendGift(ctx, big)
	fmt.Fprintf(d.out, "gift of 1,000,000 coins: refused (%s): %v\n", ledger.KindOf(err), err)
	self := d.gift(d.run+":gift:self", 3)
	self.Viewer = demoCreator
	_, err = d.eco.SendGift(ctx, self)
	fmt.Fprintf(d.out, "gift to oneself: refused (%s): %v\n", ledger.KindOf(err), err)
	if err := d.eco.BlockViewer(ctx, d.viewer(4)); err != nil {
		return err
	}
	_, err = d.eco.SendGift(ctx, d.gift(d.run+":gift:blocked", 4))
	fmt.Fprintf(d.out, "gift from a blocked viewer: refused (%s): %v\n", ledger.KindOf(err), err)
	if err := d.eco.UnblockViewer(ctx, d.viewer(4)); err != nil {
		return err
	}

	// 6. Viewer 2's purchase is refunded after some of its coins were spent.
	p2 := purchases[2]
	refund, err := d.eco.Refund(ctx, economy.RefundRequest{Channel: p2.Channel, StoreTransactionID: p2.StoreTransactionID,
		RefundID: d.run + "-refund-2", RefundedAt: time.Now()}, economy.ClawbackThenLoss)
	if err != nil {
		return err
	}
	var plan economy.RefundPlan
	_ = json.Unmarshal(refund.Metadata, &plan)
	fmt.Fprintf(d.out, "refund of viewer 2's purchase: %d unspent coins burned; %d spent ones worth %s %s, less what %d clawback(s) of the creator's pending diamonds recover, are refund loss\n",
		plan.Unspent, plan.Coins-plan.Unspent, plan.Loss, plan.Currency, len(plan.Clawbacks))

	// 7. The release job. The demo does not wait out the holding period: it
	// runs the job as of the day after the gifts' release day.
	asOf := time.Now().Add(demoHold + 48*time.Hour)
	later := economy.New(d.svc, d.cat, func() time.Time { return asOf })
	rep, err := later.ReleaseEarnings(ctx, asOf, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "release job as of %s (simulated): %d pending accounts, %s diamonds now available\n", asOf.Format("2006-01-02"), rep.Released, rep.Diamonds)
	return nil
}

func (d *demo) concurrently(n int, f func(i int) error) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f(i) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (d *demo) printBalances(ctx context.Context) error {
	fmt.Fprintln(d.out, "\nbalances (on each account's normal side):")
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	names := []string{
		economy.CoinIssued, economy.DiamondIssued, economy.DiamondFracIssued,
		economy.DiamondCarry(demoCreator), economy.AvailableDiamonds(demoCreator),
		economy.CreatorPayable(demoCreator, "USD"), economy.FiatAccount(economy.CreatorShareCost, "USD"),
		economy.FiatAccount(economy.ReceivableAppStore+":apple", "USD"), economy.FiatAccount(economy.ReceivableAppStore+":google", "EUR"),
		economy.FiatAccount(economy.ClearingPSP, "USD"),
		economy.FiatAccount(economy.StoreCommission, "USD"), economy.FiatAccount(economy.StoreCommission, "EUR"),
		economy.FiatAccount(economy.PaymentFees, "USD"),
		economy.FiatAccount(economy.DeferredRevenue, "USD"), economy.FiatAccount(economy.DeferredRevenue, "EUR"),
		economy.FiatAccount(economy.GiftRevenue, "USD"), economy.FiatAccount(economy.GiftRevenue, "EUR"),
		economy.FiatAccount(economy.RefundLoss, "USD"), economy.FiatAccount(economy.RefundLoss, "EUR"),
		economy.CoinWallet(d.viewer(1)), economy.PromoWallet(d.viewer(1)), economy.CoinWallet(d.viewer(2)),
	}
	for _, n := range names {
		a, err := d.svc.Account(ctx, n)
		if ledger.KindOf(err) == ledger.NotFound {
			continue // e.g. no refund loss in that currency
		}
		if err != nil {
			return err
		}
		asset, err := d.svc.Asset(ctx, a.Asset)
		if err != nil {
			return err
		}
		b, err := d.svc.Balance(ctx, n, time.Time{})
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "  %s\t%s %s\n", n, b.StringFixed(asset.Scale), a.Asset)
	}
	tw.Flush()
	var coins, promo, diamonds, available, payable decimal.Decimal
	for _, q := range []struct {
		prefix string
		into   *decimal.Decimal
	}{{"COIN:wallet:", &coins}, {"COIN:promo:", &promo}, {"DIAMOND:pending:", &diamonds}, {"DIAMOND:available:", &available}, {"Liability:CreatorPayable:", &payable}} {
		v, err := d.svc.Total(ctx, q.prefix)
		if err != nil {
			return err
		}
		*q.into = v
	}
	issued, _ := d.svc.Balance(ctx, economy.CoinIssued, time.Time{})
	dIssued, _ := d.svc.Balance(ctx, economy.DiamondIssued, time.Time{})
	held := diamonds.Add(available)
	fmt.Fprintf(d.out, "coins held %s = -COIN:issued %s\ndiamonds held %s = -DIAMOND:issued %s\ncreator payable %s USD = diamonds x 0.005 = %s USD\n",
		coins.Add(promo), issued.Neg(), held, dIssued.Neg(), payable, held.Mul(demoRule.DiamondValue))
	return nil
}
