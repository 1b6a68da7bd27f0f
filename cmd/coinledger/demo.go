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
)

// The demo's chart of accounts: name, asset, normal side, may go negative, shards.
var demoAccounts = []ledger.Account{
	{Name: "COIN:issued", Asset: "COIN", Normal: ledger.Credit, AllowNegative: true, Shards: 4},
	{Name: "DIAMOND:issued", Asset: "DIAMOND", Normal: ledger.Credit, AllowNegative: true, Shards: 4},
	{Name: "DIAMOND:pending:creator:1", Asset: "DIAMOND", Normal: ledger.Credit, Shards: 4},
	{Name: "Receivable:AppStore:apple", Asset: "USD", Normal: ledger.Debit},
	{Name: "Expense:StoreCommission", Asset: "USD", Normal: ledger.Debit},
	{Name: "Liability:DeferredRevenue:Coins", Asset: "USD", Normal: ledger.Credit, Shards: 4},
}

const demoViewers = 20

var demoScale = map[string]int32{"USD": 2, "COIN": 0, "DIAMOND": 0}

func cmdDemo(ctx context.Context, c *common, args []string, stdout io.Writer) (int, error) {
	if len(args) > 0 {
		return exitError, fmt.Errorf("unexpected arguments %q", args)
	}
	svc, closeAll, err := c.open(ctx)
	if err != nil {
		return exitError, err
	}
	defer closeAll()
	d := &demo{svc: svc, out: stdout, run: fmt.Sprintf("demo-%d", time.Now().UnixNano())}
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
	return verifyReport(ctx, svc, stdout)
}

type demo struct {
	svc *ledger.Service
	out io.Writer
	run string // prefixes idempotency keys, so the demo can run again on the same data
}

func (d *demo) setup(ctx context.Context) error {
	for code, scale := range demoScale {
		if _, err := d.svc.CreateAsset(ctx, ledger.Asset{Code: code, Scale: scale}); err != nil {
			return err
		}
	}
	accounts := append([]ledger.Account(nil), demoAccounts...)
	for v := 1; v <= demoViewers; v++ {
		accounts = append(accounts, ledger.Account{Name: wallet(v), Asset: "COIN", Normal: ledger.Credit})
	}
	for _, a := range accounts {
		if _, err := d.svc.CreateAccount(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

func wallet(v int) string { return fmt.Sprintf("COIN:wallet:viewer:%d", v) }

func amt(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// purchase: 1,321 coins for $19.99 through Apple at 30% commission.
func (d *demo) purchase(v int) ledger.PostRequest {
	return ledger.PostRequest{
		IdempotencyKey: fmt.Sprintf("%s:apple:%d", d.run, v),
		Kind:           "purchase",
		Metadata:       []byte(fmt.Sprintf(`{"channel":"apple","store_transaction_id":"%s-%d"}`, d.run, v)),
		Postings: []ledger.PostingRequest{
			{Account: "COIN:issued", Side: ledger.Debit, Amount: amt("1321")},
			{Account: wallet(v), Side: ledger.Credit, Amount: amt("1321")},
			{Account: "Receivable:AppStore:apple", Side: ledger.Debit, Amount: amt("13.99")},
			{Account: "Expense:StoreCommission", Side: ledger.Debit, Amount: amt("6.00")},
			{Account: "Liability:DeferredRevenue:Coins", Side: ledger.Credit, Amount: amt("19.99")},
		},
	}
}

// gift: burn coins from the viewer, mint half as many diamonds for the creator.
func (d *demo) gift(key string, v int, coins int64) ledger.PostRequest {
	c := decimal.NewFromInt(coins)
	dia := decimal.NewFromInt(coins / 2)
	return ledger.PostRequest{
		IdempotencyKey: key,
		Kind:           "gift",
		Postings: []ledger.PostingRequest{
			{Account: wallet(v), Side: ledger.Debit, Amount: c},
			{Account: "COIN:issued", Side: ledger.Credit, Amount: c},
			{Account: "DIAMOND:issued", Side: ledger.Debit, Amount: dia},
			{Account: "DIAMOND:pending:creator:1", Side: ledger.Credit, Amount: dia},
		},
	}
}

func (d *demo) script(ctx context.Context) error {
	fmt.Fprintf(d.out, "run %s\n\n", d.run)

	// 1. Every viewer buys a coin pack, all at once.
	if err := d.concurrently(demoViewers, func(i int) error {
		_, err := d.svc.Post(ctx, d.purchase(i+1))
		return err
	}); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "%d concurrent purchases of 1,321 coins for $19.99 (Apple, 30%% commission)\n", demoViewers)

	// 2. The purchase backend retries viewer 1's purchase after a lost response.
	first, err := d.svc.Post(ctx, d.purchase(1))
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "retried purchase of viewer 1: replayed=%v, same transaction %s, nothing posted twice\n", first.Replayed, first.ID)

	// 3. A gift storm into one creator from 32 concurrent callers.
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
	fmt.Fprintf(d.out, "gift storm: %d gifts of 50 coins into creator 1 from 32 callers in %s\n", sent.Load(), time.Since(start).Round(time.Millisecond))

	// 4. A key reused with other content, and a gift beyond the wallet: refused.
	_, err = d.svc.Post(ctx, d.gift(fmt.Sprintf("%s:gift:0", d.run), 1, 60))
	fmt.Fprintf(d.out, "key reused with different content: refused (%s): %v\n", ledger.KindOf(err), err)
	_, err = d.svc.Post(ctx, d.gift(fmt.Sprintf("%s:gift:big", d.run), 2, 1_000_000))
	fmt.Fprintf(d.out, "gift of 1,000,000 coins: refused (%s): %v\n", ledger.KindOf(err), err)

	// 5. Moderation reverses one gift; a second reversal is refused.
	g, err := d.svc.Post(ctx, d.gift(fmt.Sprintf("%s:gift:0", d.run), 1, 50))
	if err != nil {
		return err
	}
	if _, err := d.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: d.run + ":reverse:gift:0", TransactionID: g.ID, Metadata: []byte(`{"reason":"moderation"}`)}); err != nil {
		return err
	}
	_, err = d.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: d.run + ":reverse-again:gift:0", TransactionID: g.ID})
	fmt.Fprintf(d.out, "gift %s reversed; reversing it again: refused (%s)\n", g.ID, ledger.KindOf(err))
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
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', tabwriter.AlignRight)
	names := []string{}
	for _, a := range demoAccounts {
		names = append(names, a.Name)
	}
	names = append(names, wallet(1), wallet(2), wallet(demoViewers))
	coins, dias := decimal.Zero, decimal.Zero
	for v := 1; v <= demoViewers; v++ {
		b, err := d.svc.Balance(ctx, wallet(v), time.Time{})
		if err != nil {
			return err
		}
		coins = coins.Add(b)
	}
	for _, n := range names {
		b, err := d.svc.Balance(ctx, n, time.Time{})
		if err != nil {
			return err
		}
		if n == "DIAMOND:pending:creator:1" {
			dias = b
		}
		a, err := d.svc.Account(ctx, n)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "  %s\t%s %s\t\n", n, b.StringFixed(demoScale[a.Asset]), a.Asset)
	}
	tw.Flush()
	issued, _ := d.svc.Balance(ctx, "COIN:issued", time.Time{})
	dIssued, _ := d.svc.Balance(ctx, "DIAMOND:issued", time.Time{})
	fmt.Fprintf(d.out, "coins in wallets %s = -COIN:issued %s; creator diamonds %s = -DIAMOND:issued %s\n",
		coins, issued.Neg(), dias, dIssued.Neg())
	return nil
}
