package main

import (
	"context"
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
	demoCreator = "DIAMOND:pending:creator-1"
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
	cat := economy.NewCatalog(db, nil)
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

func viewer(v int) string { return fmt.Sprintf("viewer-%d", v) }

func (d *demo) setup(ctx context.Context) error {
	if err := d.eco.Bootstrap(ctx); err != nil {
		return err
	}
	now := time.Now()
	for _, p := range demoPacks {
		// A pack already in force with these terms needs no new version.
		if cur, err := d.cat.CoinPackAt(ctx, p.ID, p.Channel, now); err == nil {
			p.EffectiveAt = cur.EffectiveAt
			if cur.Same(p) {
				continue
			}
			p.EffectiveAt = time.Time{}
		}
		if _, err := d.cat.AddCoinPack(ctx, p); err != nil {
			return err
		}
	}
	accounts := []ledger.Account{{Name: demoCreator, Asset: economy.Diamond, Normal: ledger.Credit, Shards: 4}}
	for _, cur := range []string{"USD", "EUR"} {
		accounts = append(accounts, ledger.Account{Name: economy.FiatAccount(demoGiftRevenue, cur), Asset: cur, Normal: ledger.Credit, AllowNegative: true, Shards: 4})
	}
	for _, a := range accounts {
		if _, err := d.svc.CreateAccount(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

const demoGiftRevenue = "Revenue:Gifts"

// gift burns the viewer's paid coins, relieving deferred revenue into gift
// revenue lot by lot (oldest first), and mints half as many diamonds for the
// creator. The economy's gift operation (rules in force, promo coins, creator
// payable, agency split) is not built yet.
func (d *demo) gift(key string, v int, coins int64) ledger.PostRequest {
	c := decimal.NewFromInt(coins)
	dia := decimal.NewFromInt(coins / 2)
	legs := map[string]ledger.ReliefLeg{}
	for _, cur := range []string{"USD", "EUR"} {
		legs[cur] = ledger.ReliefLeg{From: economy.FiatAccount(economy.DeferredRevenue, cur), To: economy.FiatAccount(demoGiftRevenue, cur)}
	}
	return ledger.PostRequest{
		IdempotencyKey: key,
		Kind:           "gift",
		Relieve:        &ledger.Relief{Account: economy.CoinWallet(viewer(v)), Units: c, Legs: legs},
		Postings: []ledger.PostingRequest{
			{Account: economy.CoinWallet(viewer(v)), Side: ledger.Debit, Amount: c},
			{Account: economy.CoinIssued, Side: ledger.Credit, Amount: c},
			{Account: economy.DiamondIssued, Side: ledger.Debit, Amount: dia},
			{Account: demoCreator, Side: ledger.Credit, Amount: dia},
		},
	}
}

func (d *demo) purchase(v int) economy.PurchaseRequest {
	pack := demoPacks[v%len(demoPacks)]
	var cur string
	for cur = range pack.Prices {
	}
	return economy.PurchaseRequest{
		Channel: pack.Channel, StoreTransactionID: fmt.Sprintf("%s-%d", d.run, v), User: viewer(v),
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
	promo, err := d.eco.GrantPromo(ctx, economy.PromoRequest{IdempotencyKey: d.run + ":welcome:1", User: viewer(1), Coins: 100, Reason: "welcome"})
	if err != nil {
		return err
	}
	fmt.Fprintln(d.out, "promo grant: 100 free coins to viewer 1")

	// 4. A gift storm into one creator from 32 concurrent callers.
	const gifts = 400
	var sent atomic.Int64
	start := time.Now()
	if err := d.concurrently(32, func(w int) error {
		for i := w; i < gifts; i += 32 {
			if _, err := d.svc.Post(ctx, d.gift(fmt.Sprintf("%s:gift:%d", d.run, i), i%demoViewers+1, 50)); err != nil {
				return err
			}
			sent.Add(1)
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "gift storm: %d gifts of 50 coins into creator 1 from 32 callers in %s, deferred revenue relieved lot by lot\n", sent.Load(), time.Since(start).Round(time.Millisecond))

	// 5. A key reused with other content, and a gift beyond the wallet: refused.
	_, err = d.svc.Post(ctx, d.gift(fmt.Sprintf("%s:gift:0", d.run), 1, 60))
	fmt.Fprintf(d.out, "key reused with different content: refused (%s): %v\n", ledger.KindOf(err), err)
	_, err = d.svc.Post(ctx, d.gift(fmt.Sprintf("%s:gift:big", d.run), 2, 1_000_000))
	fmt.Fprintf(d.out, "gift of 1,000,000 coins: refused (%s): %v\n", ledger.KindOf(err), err)

	// 6. The promo grant was a mistake: reversed; a second reversal is refused.
	if _, err := d.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: d.run + ":reverse:welcome:1", TransactionID: promo.ID, Metadata: []byte(`{"reason":"granted twice"}`)}); err != nil {
		return err
	}
	_, err = d.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: d.run + ":reverse-again:welcome:1", TransactionID: promo.ID})
	fmt.Fprintf(d.out, "promo grant %s reversed; reversing it again: refused (%s)\n", promo.ID, ledger.KindOf(err))
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
		economy.CoinIssued, economy.DiamondIssued, demoCreator,
		economy.FiatAccount(economy.ReceivableAppStore+":apple", "USD"), economy.FiatAccount(economy.ReceivableAppStore+":google", "EUR"),
		economy.FiatAccount(economy.ClearingPSP, "USD"),
		economy.FiatAccount(economy.StoreCommission, "USD"), economy.FiatAccount(economy.StoreCommission, "EUR"),
		economy.FiatAccount(economy.PaymentFees, "USD"),
		economy.FiatAccount(economy.DeferredRevenue, "USD"), economy.FiatAccount(economy.DeferredRevenue, "EUR"),
		economy.FiatAccount(demoGiftRevenue, "USD"), economy.FiatAccount(demoGiftRevenue, "EUR"),
		economy.CoinWallet(viewer(1)), economy.PromoWallet(viewer(1)), economy.CoinWallet(viewer(2)),
	}
	for _, n := range names {
		a, err := d.svc.Account(ctx, n)
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
	coins := decimal.Zero
	for v := 1; v <= demoViewers; v++ {
		for _, w := range []string{economy.CoinWallet(viewer(v)), economy.PromoWallet(viewer(v))} {
			b, err := d.svc.Balance(ctx, w, time.Time{})
			if err != nil && ledger.KindOf(err) != ledger.NotFound {
				return err
			}
			coins = coins.Add(b)
		}
	}
	issued, _ := d.svc.Balance(ctx, economy.CoinIssued, time.Time{})
	dias, _ := d.svc.Balance(ctx, demoCreator, time.Time{})
	dIssued, _ := d.svc.Balance(ctx, economy.DiamondIssued, time.Time{})
	fmt.Fprintf(d.out, "coins held %s = -COIN:issued %s; creator diamonds %s = -DIAMOND:issued %s\n",
		coins, issued.Neg(), dias, dIssued.Neg())
	return nil
}
