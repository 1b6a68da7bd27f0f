package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/shopspring/decimal"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/coinledger/coinledger/internal/par"
	"github.com/coinledger/coinledger/internal/progress"
	"github.com/coinledger/coinledger/ledger/economy"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

type demoOptions struct {
	client      clientOptions
	viewers     int
	gifts       int
	concurrency int
}

func (o *demoOptions) register(fs *flag.FlagSet) {
	o.client.register(fs, "iap, gifting, creator-portal, finance and admin")
	fs.IntVar(&o.viewers, "viewers", 200, "viewers, each buying one 1,321-coin pack")
	fs.IntVar(&o.gifts, "gifts", 5000, "33-coin gifts in the storm (at most 40 per viewer)")
	fs.IntVar(&o.concurrency, "c", 32, "concurrent callers")
}

// The demo's terms: a 33-coin heart at a 50% share makes 16.5 diamonds, so
// the creator's carry is exercised; a diamond is worth half a cent.
const (
	demoPackCoins = 1321
	demoGiftCoins = 33
	demoHold      = 7 * 24 * time.Hour
	demoPromo     = 100
)

// One pack per channel, each at its store's fee.
var demoPacks = []struct {
	channel pb.Channel
	price   *pb.Money
	feeRate string
	label   string
}{
	{pb.Channel_CHANNEL_APPLE, &pb.Money{Amount: "19.99", Asset: "USD"}, "0.30", "Apple $19.99 (30%)"},
	{pb.Channel_CHANNEL_GOOGLE, &pb.Money{Amount: "18.99", Asset: "EUR"}, "0.15", "Google €18.99 (15%)"},
	{pb.Channel_CHANNEL_WEB, &pb.Money{Amount: "17.99", Asset: "USD"}, "0.029", "web $17.99 (2.9%)"},
}

// cmdDemo runs a small livestream economy through the gRPC server — the one
// at --addr, or one it starts on the ledger — and prints a short report. It
// exits 1 if the ledger does not verify afterwards.
func cmdDemo(ctx context.Context, c *common, o *demoOptions, args []string, stdout io.Writer) (int, error) {
	if len(args) > 0 {
		return exitError, fmt.Errorf("unexpected arguments %q", args)
	}
	if o.viewers < 3 || o.gifts < 1 || o.concurrency < 1 {
		return exitError, errors.New("--viewers must be at least 3, --gifts and -c at least 1")
	}
	if o.gifts > 40*o.viewers {
		return exitError, fmt.Errorf("--gifts %d: at most 40 per viewer (%d), or wallets run dry", o.gifts, 40*o.viewers)
	}
	conn, _, closeAll, err := c.dial(ctx, &o.client)
	if err != nil {
		return exitError, err
	}
	defer closeAll()
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	sfx := run[len(run)-6:]
	d := &demo{o: o, out: stdout, progress: c.stderr, run: "demo-" + run, sfx: sfx,
		creator: "creator-" + sfx, gift: "heart-" + sfx, pack: "p1321-" + sfx}
	d.connect(conn)
	if err := d.setup(ctx); err != nil {
		return exitError, err
	}
	if err := d.script(ctx); err != nil {
		return exitError, err
	}
	if err := d.report(ctx); err != nil {
		return exitError, err
	}
	return d.verify(ctx)
}

// demo holds one run's names: everything it creates carries the run's
// suffix, so it can run again on the same ledger or on a shared server.
type demo struct {
	o                    *demoOptions
	out, progress        io.Writer
	run, sfx             string
	creator, gift, pack  string
	catalog              pb.CatalogServiceClient
	purchases            pb.PurchaseServiceClient
	gifts                pb.GiftServiceClient
	earnings             pb.EarningsServiceClient
	ledger               pb.LedgerServiceClient
	bought, promo, spent int64 // coins, as the demo counts them
	reversed, burned     int64
}

func (d *demo) connect(conn *grpc.ClientConn) {
	d.catalog = pb.NewCatalogServiceClient(conn)
	d.purchases = pb.NewPurchaseServiceClient(conn)
	d.gifts = pb.NewGiftServiceClient(conn)
	d.earnings = pb.NewEarningsServiceClient(conn)
	d.ledger = pb.NewLedgerServiceClient(conn)
}

func (d *demo) viewer(v int) string { return fmt.Sprintf("viewer-%d-%s", v, d.sfx) }

// setup publishes the run's packs, gift and share rule through the admin
// RPCs and waits for them to take effect (the server's lead time).
func (d *demo) setup(ctx context.Context) error {
	var ready []*timestamppb.Timestamp
	for _, p := range demoPacks {
		r, err := d.catalog.AddCoinPack(ctx, &pb.AddCoinPackRequest{PackId: d.pack, Channel: p.channel, Coins: demoPackCoins,
			Prices: []*pb.Money{p.price}, FeeRate: p.feeRate, IdempotencyKey: d.pack + "-" + p.channel.String()})
		if err != nil {
			return fmt.Errorf("AddCoinPack: %w", err)
		}
		ready = append(ready, r.EffectiveAt)
	}
	g, err := d.catalog.AddGift(ctx, &pb.AddGiftRequest{GiftId: d.gift, Coins: demoGiftCoins, IdempotencyKey: d.gift})
	if err != nil {
		return fmt.Errorf("AddGift: %w", err)
	}
	rule, err := d.catalog.AddShareRule(ctx, &pb.AddShareRuleRequest{Creator: d.creator, CreatorShare: "0.5",
		HoldingPeriod: durationpb.New(demoHold), DiamondValue: &pb.Money{Amount: "0.005", Asset: "USD"}, IdempotencyKey: d.creator + "-share"})
	if err != nil {
		return fmt.Errorf("AddShareRule: %w", err)
	}
	if _, err := d.catalog.RegisterCreator(ctx, &pb.RegisterCreatorRequest{Creator: d.creator}); err != nil {
		return fmt.Errorf("RegisterCreator: %w", err)
	}
	ready = append(ready, g.EffectiveAt, rule.EffectiveAt)
	var last time.Time
	for _, at := range ready {
		if t := at.AsTime(); t.After(last) {
			last = t
		}
	}
	if wait := time.Until(last); wait > 0 {
		fmt.Fprintf(d.progress, "published the demo's catalog; waiting %s for it to take effect\n", wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (d *demo) purchase(v int) *pb.PurchaseRequest {
	p := demoPacks[v%len(demoPacks)]
	return &pb.PurchaseRequest{Channel: p.channel, StoreTransactionId: fmt.Sprintf("%s-%d", d.run, v), User: d.viewer(v),
		PackId: d.pack, AmountPaid: p.price, PurchasedAt: timestamppb.Now()}
}

func (d *demo) giftRequest(key string, v int) *pb.SendGiftRequest {
	return &pb.SendGiftRequest{IdempotencyKey: key, Viewer: d.viewer(v), Creator: d.creator, GiftId: d.gift, StreamId: d.run, SentAt: timestamppb.Now()}
}

// each runs f for 0..n-1 from the demo's callers behind a progress bar.
func (d *demo) each(ctx context.Context, label string, n int, f func(ctx context.Context, i int) error) (time.Duration, error) {
	bar := progress.Start(d.progress, label, n)
	start := time.Now()
	err := par.Each(ctx, n, d.o.concurrency, func(ctx context.Context, i int) error {
		if err := f(ctx, i); err != nil {
			return err
		}
		bar.Add(1)
		return nil
	})
	bar.Finish()
	return time.Since(start), err
}

// refused checks that a request the demo expects to fail failed with code
// and describes it.
func refused(what string, want codes.Code, err error) (string, error) {
	if err == nil {
		return "", fmt.Errorf("%s: accepted, want %s", what, want)
	}
	st := status.Convert(err)
	if st.Code() != want {
		return "", fmt.Errorf("%s: %s, want %s: %w", what, st.Code(), want, err)
	}
	return fmt.Sprintf("%s: refused, %s: %s", what, st.Code(), st.Message()), nil
}

func (d *demo) script(ctx context.Context) error {
	fmt.Fprintf(d.out, "run %s (creator %s, gift %s, pack %s)\n\n", d.run, d.creator, d.gift, d.pack)

	// 1. Every viewer buys a pack on one of the three channels.
	purchases := make([]*pb.PurchaseRequest, d.o.viewers+1)
	for v := 1; v <= d.o.viewers; v++ {
		purchases[v] = d.purchase(v)
	}
	took, err := d.each(ctx, "purchases", d.o.viewers, func(ctx context.Context, i int) error {
		_, err := d.purchases.Purchase(ctx, purchases[i+1])
		return err
	})
	if err != nil {
		return fmt.Errorf("Purchase: %w", err)
	}
	d.bought = int64(d.o.viewers) * demoPackCoins
	labels := make([]string, len(demoPacks))
	for i, p := range demoPacks {
		labels[i] = p.label
	}
	fmt.Fprintf(d.out, "%d purchases of 1,321 coins in %s: %s\n", d.o.viewers, took.Round(time.Millisecond), strings.Join(labels, ", "))

	// 2. The store notifies viewer 1's purchase again: the original answers.
	again, err := d.purchases.Purchase(ctx, purchases[1])
	if err != nil {
		return fmt.Errorf("Purchase again: %w", err)
	}
	if !again.Transaction.Replayed {
		return errors.New("a repeated store notification posted again")
	}
	fmt.Fprintf(d.out, "repeated store notification: replayed=true, transaction %s, nothing posted twice\n", again.Transaction.Id)

	// 3. A welcome promo; the same key with other content is refused.
	promo := &pb.GrantPromoRequest{IdempotencyKey: d.run + ":welcome:1", User: d.viewer(1), Coins: demoPromo, Reason: "welcome"}
	if _, err := d.purchases.GrantPromo(ctx, promo); err != nil {
		return fmt.Errorf("GrantPromo: %w", err)
	}
	d.promo = demoPromo
	promo.Coins *= 2
	_, err = d.purchases.GrantPromo(ctx, promo)
	line, err := refused("promo key reused for 200 coins", codes.AlreadyExists, err)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "promo grant: %d free coins to viewer 1; %s\n", demoPromo, line)

	// 4. The gift storm: every gift into one creator, from many callers.
	var sent atomic.Int64
	var first atomic.Value // the first gift's transaction id
	took, err = d.each(ctx, "gifts", d.o.gifts, func(ctx context.Context, i int) error {
		r, err := d.gifts.SendGift(ctx, d.giftRequest(fmt.Sprintf("%s:gift:%d", d.run, i), i%d.o.viewers+1))
		if err != nil {
			return err
		}
		if i == 0 {
			first.Store(r.Transaction.Id)
		}
		sent.Add(1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("SendGift: %w", err)
	}
	d.spent = sent.Load() * demoGiftCoins
	fmt.Fprintf(d.out, "gift storm: %d hearts (33 coins = 16.5 diamonds) into %s from %d callers in %s (%.0f/s)\n",
		sent.Load(), d.creator, d.o.concurrency, took.Round(time.Millisecond), float64(sent.Load())/took.Seconds())

	// 5. Refusals, each with the code a caller would see.
	reused := d.giftRequest(d.run+":gift:0", 2)
	big := d.giftRequest(d.run+":gift:big", 2)
	big.GiftId, big.Coins = "", 1_000_000
	self := d.giftRequest(d.run+":gift:self", 3)
	self.Viewer = d.creator
	nokey := d.giftRequest("", 3)
	for _, c := range []struct {
		what string
		req  *pb.SendGiftRequest
		want codes.Code
	}{
		{"gift key reused with another viewer", reused, codes.AlreadyExists},
		{"gift of 1,000,000 coins", big, codes.FailedPrecondition},
		{"gift to oneself", self, codes.InvalidArgument},
		{"gift without a key", nokey, codes.InvalidArgument},
	} {
		_, err := d.gifts.SendGift(ctx, c.req)
		line, err := refused(c.what, c.want, err)
		if err != nil {
			return err
		}
		fmt.Fprintln(d.out, line)
	}

	// 6. The first gift is reversed (the stream was cancelled); twice is refused.
	id, _ := first.Load().(string)
	if _, err := d.gifts.ReverseGift(ctx, &pb.ReverseGiftRequest{IdempotencyKey: d.run + ":reverse:0", GiftTransactionId: id, Reason: "stream cancelled"}); err != nil {
		return fmt.Errorf("ReverseGift: %w", err)
	}
	d.reversed = demoGiftCoins
	_, err = d.gifts.ReverseGift(ctx, &pb.ReverseGiftRequest{IdempotencyKey: d.run + ":reverse-again:0", GiftTransactionId: id, Reason: "again"})
	if line, err = refused("reversing it again", codes.FailedPrecondition, err); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "gift %s reversed: coins back to viewer 1, diamonds back from the creator; %s\n", id, line)

	// 7. Viewer 2's purchase is refunded after some of its coins were spent.
	p2 := purchases[2]
	r, err := d.purchases.Refund(ctx, &pb.RefundRequest{Channel: p2.Channel, StoreTransactionId: p2.StoreTransactionId,
		RefundId: d.run + "-refund-2", RefundedAt: timestamppb.Now(), Policy: pb.RefundPolicy_REFUND_POLICY_CLAWBACK})
	if err != nil {
		return fmt.Errorf("Refund: %w", err)
	}
	var plan economy.RefundPlan
	if err := json.Unmarshal([]byte(r.Transaction.MetadataJson), &plan); err != nil {
		return fmt.Errorf("refund plan: %w", err)
	}
	d.burned = plan.Unspent
	fmt.Fprintf(d.out, "refund of viewer 2's purchase: %d unspent coins burned; %d spent ones worth %s %s, less %d clawback(s) of the creator's pending diamonds, are refund loss\n",
		plan.Unspent, plan.Coins-plan.Unspent, plan.Loss, plan.Currency, len(plan.Clawbacks))
	return nil
}

// report prints the creator's earnings, the platform's balances and the
// viewers' coins, checking the coins against what the demo did.
func (d *demo) report(ctx context.Context) error {
	e, err := d.earnings.GetCreatorEarnings(ctx, &pb.GetCreatorEarningsRequest{Earner: d.creator})
	if err != nil {
		return fmt.Errorf("GetCreatorEarnings: %w", err)
	}
	fmt.Fprintf(d.out, "\n%s's earnings:\n", d.creator)
	tw := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	for _, p := range e.Pending {
		fmt.Fprintf(tw, "  pending, released %s\t%s %s\n", p.ReleaseDay, p.Diamonds.Amount, p.Diamonds.Asset)
	}
	fmt.Fprintf(tw, "  available\t%s %s\n", e.Available.Amount, e.Available.Asset)
	for _, m := range e.Payable {
		fmt.Fprintf(tw, "  payable\t%s %s\n", m.Amount, m.Asset)
	}
	tw.Flush()

	fmt.Fprintln(d.out, "\nplatform balances (on each account's normal side):")
	tw = tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	for _, name := range []string{
		economy.CoinIssued, economy.DiamondIssued,
		economy.FiatAccount(economy.GiftRevenue, "USD"), economy.FiatAccount(economy.GiftRevenue, "EUR"),
		economy.FiatAccount(economy.DeferredRevenue, "USD"), economy.FiatAccount(economy.DeferredRevenue, "EUR"),
		economy.FiatAccount(economy.RefundLoss, "USD"), economy.FiatAccount(economy.RefundLoss, "EUR"),
	} {
		b, err := d.ledger.GetBalance(ctx, &pb.GetBalanceRequest{Account: name})
		if status.Code(err) == codes.NotFound {
			continue // e.g. no refund loss in that currency yet
		}
		if err != nil {
			return fmt.Errorf("GetBalance %s: %w", name, err)
		}
		fmt.Fprintf(tw, "  %s\t%s %s\n", name, b.Balance.Amount, b.Balance.Asset)
	}
	tw.Flush()

	// The run's viewers hold exactly what they bought and were given, less
	// what they gifted, plus the reversed gift, less the refund's burn.
	held := decimal.Zero
	for v := 1; v <= d.o.viewers; v++ {
		w, err := d.gifts.GetWallet(ctx, &pb.GetWalletRequest{User: d.viewer(v)})
		if err != nil {
			return fmt.Errorf("GetWallet: %w", err)
		}
		for _, m := range []*pb.Money{w.Paid, w.Promo} {
			amount, err := decimal.NewFromString(m.Amount)
			if err != nil {
				return fmt.Errorf("GetWallet %s: %w", d.viewer(v), err)
			}
			held = held.Add(amount)
		}
	}
	want := d.bought + d.promo - d.spent + d.reversed - d.burned
	fmt.Fprintf(d.out, "\nviewers' coins: bought %d + promo %d - gifted %d + reversed %d - refunded unspent %d = %d; their %d wallets hold %s\n",
		d.bought, d.promo, d.spent, d.reversed, d.burned, want, d.o.viewers, held)
	if !held.Equal(decimal.NewFromInt(want)) {
		return fmt.Errorf("the viewers' wallets hold %s coins, want %d", held, want)
	}
	return nil
}

// verify runs the ledger's invariant checks on the server.
func (d *demo) verify(ctx context.Context) (int, error) {
	r, err := d.ledger.Verify(ctx, &pb.VerifyRequest{})
	if err != nil {
		return exitError, fmt.Errorf("Verify: %w", err)
	}
	fmt.Fprintf(d.out, "verify: %d assets, %d accounts, %d transactions, %d entries: ", r.Assets, r.Accounts, r.Transactions, r.Entries)
	if len(r.Violations) == 0 && r.ViolationsOmitted == 0 {
		fmt.Fprintln(d.out, "OK (trial balance per asset, every transaction balanced, stored balances equal to their entries, lots equal to their accounts, no closed release day holding pending diamonds)")
		return exitOK, nil
	}
	fmt.Fprintf(d.out, "%d violations (%d not listed)\n", int64(len(r.Violations))+r.ViolationsOmitted, r.ViolationsOmitted)
	for _, v := range r.Violations {
		fmt.Fprintf(d.out, "  %s %s: %s\n", v.Check, v.Subject, v.Detail)
	}
	return exitViolations, errors.New("ledger invariants are violated")
}
