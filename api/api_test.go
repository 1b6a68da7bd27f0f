package api_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/coinledger/coinledger/api"
	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
	"github.com/coinledger/coinledger/ledger/postgres"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

const tokens = `
# name scopes token
iap-backend iap tok-iap-0123456789
gifting-svc gifting tok-gift-0123456789
portal creator-portal tok-portal-0123456789
finance finance tok-fin-0123456789
admin admin tok-admin-0123456789
shop commerce tok-shop-0123456789
treasurer treasury tok-treasury-0123456789
everything iap,gifting,creator-portal,finance,admin,commerce,treasury tok-all-0123456789
`

type env struct {
	srv  *api.Server
	svc  *ledger.Service
	db   *postgres.DB
	addr string
	conn map[string]*grpc.ClientConn // by token
	done chan error
	at   *timestamppb.Timestamp // purchases' store time: a retry resends it
}

func newEnv(t testing.TB, configure ...func(*api.Config)) *env {
	t.Helper()
	return newEnvWith(t, ledger.Options{}, configure...)
}

// newEnvWith is newEnv with the ledger's options.
func newEnvWith(t testing.TB, opts ledger.Options, configure ...func(*api.Config)) *env {
	t.Helper()
	db, _ := dbtest.Postgres().Open(t, postgres.Config{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.Logger = quiet
	svc := ledger.NewService(db, opts)
	cat := economy.NewCatalog(db, nil)
	eco := economy.New(svc, cat, nil)
	if err := eco.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	toks, err := api.ParseTokens(strings.NewReader(tokens))
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{Tokens: toks, Logger: quiet}
	for _, f := range configure {
		f(&cfg)
	}
	srv := api.New(svc, eco, cat, cfg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{srv: srv, svc: svc, db: db, addr: lis.Addr().String(), conn: map[string]*grpc.ClientConn{}, done: make(chan error, 1)}
	go func() { e.done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		for _, c := range e.conn {
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		svc.Close()
	})
	return e
}

func (e *env) dial(t testing.TB, token string) *grpc.ClientConn {
	t.Helper()
	if c, ok := e.conn[token]; ok {
		return c
	}
	c, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(api.Bearer{Token: token, Plaintext: true}))
	if err != nil {
		t.Fatal(err)
	}
	e.conn[token] = c
	return c
}

func (e *env) purchases(t testing.TB) pb.PurchaseServiceClient {
	return pb.NewPurchaseServiceClient(e.dial(t, "tok-iap-0123456789"))
}
func (e *env) gifts(t testing.TB) pb.GiftServiceClient {
	return pb.NewGiftServiceClient(e.dial(t, "tok-gift-0123456789"))
}
func (e *env) earnings(t testing.TB) pb.EarningsServiceClient {
	return pb.NewEarningsServiceClient(e.dial(t, "tok-portal-0123456789"))
}
func (e *env) finance(t testing.TB) pb.LedgerServiceClient {
	return pb.NewLedgerServiceClient(e.dial(t, "tok-fin-0123456789"))
}
func (e *env) catalog(t testing.TB) pb.CatalogServiceClient {
	return pb.NewCatalogServiceClient(e.dial(t, "tok-admin-0123456789"))
}

func (e *env) admin(t testing.TB) pb.AdminServiceClient {
	return pb.NewAdminServiceClient(e.dial(t, "tok-admin-0123456789"))
}

func (e *env) shop(t testing.TB) pb.LiveShoppingServiceClient {
	return pb.NewLiveShoppingServiceClient(e.dial(t, "tok-shop-0123456789"))
}
func (e *env) treasury(t testing.TB) pb.TreasuryServiceClient {
	return pb.NewTreasuryServiceClient(e.dial(t, "tok-treasury-0123456789"))
}

func usd(s string) *pb.Money { return &pb.Money{Amount: s, Asset: "USD"} }

// seed publishes a pack, a gift, the default share rule and a creator.
func (e *env) seed(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	cat := e.catalog(t)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cat.AddCoinPack(ctx, &pb.AddCoinPackRequest{PackId: "p100", Channel: pb.Channel_CHANNEL_APPLE, Coins: 100,
		Prices: []*pb.Money{usd("0.99")}, FeeRate: "0.30", IdempotencyKey: "seed-pack"}))
	// 5 coins earn 2.5 diamonds: the gift and its reversal go through the
	// creator's carry, on whichever lanes.
	must(cat.AddGift(ctx, &pb.AddGiftRequest{GiftId: "rose", Coins: 5, IdempotencyKey: "seed-gift"}))
	must(cat.AddShareRule(ctx, &pb.AddShareRuleRequest{CreatorShare: "0.5", HoldingPeriod: durationpb.New(7 * 24 * time.Hour),
		DiamondValue: usd("0.005"), IdempotencyKey: "seed-rule"}))
	must(cat.RegisterCreator(ctx, &pb.RegisterCreatorRequest{Creator: "star"}))
	must(cat.AddLiveSession(ctx, &pb.AddLiveSessionRequest{SessionId: "live-1", Seller: "shop1", Partner: "host1", PlatformRate: "0.05", PartnerShare: "0.10"}))
	tr := e.treasury(t)
	must(tr.CreateAccount(ctx, &pb.CreateAccountRequest{Name: "Treasury:float", Asset: "USD", NormalSide: pb.Side_SIDE_DEBIT, AllowNegative: true}))
	must(tr.CreateAccount(ctx, &pb.CreateAccountRequest{Name: "Treasury:ops", Asset: "USD", NormalSide: pb.Side_SIDE_CREDIT, Shards: 4}))
	e.at = timestamppb.Now()
}

func (e *env) buy(t testing.TB, user, storeID string) *pb.Transaction {
	t.Helper()
	r, err := e.purchases(t).Purchase(context.Background(), &pb.PurchaseRequest{Channel: pb.Channel_CHANNEL_APPLE, StoreTransactionId: storeID,
		User: user, PackId: "p100", AmountPaid: usd("0.99"), PurchasedAt: e.at})
	if err != nil {
		t.Fatal(err)
	}
	return r.Transaction
}

// giftStorm has viewers v0, v1, ... each buy 100 coins, then send
// giftsEach gifts of coins to star, the viewers concurrently, and returns a
// channel closed once every gift is answered.
func (e *env) giftStorm(t *testing.T, name string, viewers, giftsEach int, coins int64) <-chan struct{} {
	t.Helper()
	for v := range viewers {
		e.buy(t, fmt.Sprintf("v%d", v), fmt.Sprintf("tx-%s-%d", name, v))
	}
	gifts := e.gifts(t)
	var wg sync.WaitGroup
	for v := range viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range giftsEach {
				if _, err := gifts.SendGift(context.Background(), &pb.SendGiftRequest{IdempotencyKey: fmt.Sprintf("%s-%d-%d", name, v, i),
					Viewer: fmt.Sprintf("v%d", v), Creator: "star", Coins: coins, StreamId: "s", SentAt: timestamppb.Now()}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}

// readEarningsUntil reads star's earnings until done closes, failing at the
// first answer whose payable is not the value (0.005 USD a diamond) of the
// diamonds it shows. An Aborted read (new accounts kept appearing while it
// read, likelier on a loaded machine) is retried, as the status asks.
func (e *env) readEarningsUntil(t *testing.T, done <-chan struct{}) {
	t.Helper()
	reader := e.earnings(t)
	aborted := 0
	for reads := 0; ; reads++ {
		select {
		case <-done:
			t.Logf("%d reads, %d of them aborted", reads, aborted)
			if reads == aborted {
				t.Fatal("no read was answered")
			}
			return
		default:
		}
		r, err := reader.GetCreatorEarnings(context.Background(), &pb.GetCreatorEarningsRequest{Earner: "star"})
		if status.Code(err) == codes.Aborted {
			aborted++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		diamonds := decimal.RequireFromString(r.Available.Amount)
		for _, p := range r.Pending {
			diamonds = diamonds.Add(decimal.RequireFromString(p.Diamonds.Amount))
		}
		payable := decimal.Zero
		for _, p := range r.Payable {
			payable = payable.Add(decimal.RequireFromString(p.Amount))
		}
		if value := diamonds.Mul(decimal.RequireFromString("0.005")); !payable.Equal(value) {
			t.Fatalf("read %d: %s diamonds with %s USD payable, want their value %s", reads, diamonds, payable, value)
		}
	}
}

// earningsLine renders an earner's statement as "pending N, ..., payable N
// ASSET, ..., available N".
func (e *env) earningsLine(t *testing.T, req *pb.GetCreatorEarningsRequest) string {
	t.Helper()
	r, err := e.earnings(t).GetCreatorEarnings(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, p := range r.Pending {
		s = append(s, "pending "+p.Diamonds.Amount)
	}
	for _, p := range r.Payable {
		s = append(s, "payable "+p.Amount+" "+p.Asset)
	}
	return strings.Join(append(s, "available "+r.Available.Amount), ", ")
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: got %v, want %s", what, err, code)
	}
	if op := domainOp(err); op != "" {
		t.Errorf("%s: the message names the domain's operation %s: %q", what, op, status.Convert(err).Message())
	}
}

// domainOp is a domain operation ("economy.SendGift: ") that a refusal's
// message names: the caller is told of its own fields, not our functions.
// No id or name a message repeats can hold the space it ends with.
func domainOp(err error) string {
	return domainOpRE.FindString(status.Convert(err).Message())
}

var domainOpRE = regexp.MustCompile(`\b(ledger|economy)\.[A-Z]\w*: `)

// fieldOf is the field a BadRequest status names.
func fieldOf(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
			return br.FieldViolations[0].Field
		}
	}
	return ""
}

// preconditionOf is what a FailedPrecondition status names as its subject.
func preconditionOf(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if pf, ok := d.(*errdetails.PreconditionFailure); ok && len(pf.Violations) > 0 {
			return pf.Violations[0].Subject
		}
	}
	return ""
}

func TestHappyPaths(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	ctx := context.Background()
	buy := e.buy(t, "v1", "tx-1")
	if len(buy.Postings) == 0 || buy.Replayed {
		t.Fatalf("purchase: %+v", buy)
	}
	if again := e.buy(t, "v1", "tx-1"); again.Id != buy.Id || !again.Replayed {
		t.Errorf("retried purchase: %s replayed=%v, want %s", again.Id, again.Replayed, buy.Id)
	}
	if _, err := e.purchases(t).GrantPromo(ctx, &pb.GrantPromoRequest{IdempotencyKey: "promo-1", User: "v1", Coins: 2, Reason: "welcome"}); err != nil {
		t.Fatal(err)
	}
	g, err := e.gifts(t).SendGift(ctx, &pb.SendGiftRequest{IdempotencyKey: "g1", Viewer: "v1", Creator: "star", GiftId: "rose", StreamId: "s1", SentAt: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	w, err := e.gifts(t).GetWallet(ctx, &pb.GetWalletRequest{User: "v1"})
	if err != nil || w.Paid.Amount != "97" || w.Promo.Amount != "0" || w.Owed.Amount != "0" || w.Paid.Asset != "COIN" {
		t.Fatalf("wallet after a 5-coin gift (2 promo): %v %v", w, err)
	}
	// 2.5 diamonds earned: one 2-diamond granule (a cent at 0.005) minted,
	// half a diamond carried.
	earn, err := e.earnings(t).GetCreatorEarnings(ctx, &pb.GetCreatorEarningsRequest{Earner: "star"})
	if err != nil || len(earn.Pending) != 1 || earn.Pending[0].Diamonds.Amount != "2" || len(earn.Payable) != 1 || earn.Payable[0].Amount != "0.01" {
		t.Fatalf("earnings: %v %v", earn, err)
	}
	afterGift := g.Transaction.RecordedAt
	// Refund under the debt policy: 97 unspent coins burned, 3 owed.
	if _, err := e.purchases(t).Refund(ctx, &pb.RefundRequest{Channel: pb.Channel_CHANNEL_APPLE, StoreTransactionId: "tx-1", RefundId: "rf-1",
		RefundedAt: timestamppb.Now(), Policy: pb.RefundPolicy_REFUND_POLICY_DEBT}); err != nil {
		t.Fatal(err)
	}
	if w, _ := e.gifts(t).GetWallet(ctx, &pb.GetWalletRequest{User: "v1"}); w.Paid.Amount != "0" || w.Owed.Amount != "3" {
		t.Errorf("wallet after the refund: %v", w)
	}
	if _, err := e.purchases(t).ReverseRefund(ctx, &pb.ReverseRefundRequest{Channel: pb.Channel_CHANNEL_APPLE, RefundId: "rf-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.gifts(t).ReverseGift(ctx, &pb.ReverseGiftRequest{IdempotencyKey: "rev-g1", GiftTransactionId: g.Transaction.Id, Reason: "fraud"}); err != nil {
		t.Fatal(err)
	}
	if w, _ := e.gifts(t).GetWallet(ctx, &pb.GetWalletRequest{User: "v1"}); w.Paid.Amount != "100" || w.Promo.Amount != "2" || w.Owed.Amount != "0" {
		t.Errorf("wallet after both reversals: %v", w)
	}
	// A statement's earnings as of an instant: the gift's, though reversed
	// since; before the gift, none of the accounts it opened.
	earnings := func(at *timestamppb.Timestamp) string {
		t.Helper()
		return e.earningsLine(t, &pb.GetCreatorEarningsRequest{Earner: "star", AsOf: at})
	}
	for _, c := range []struct {
		name string
		at   *timestamppb.Timestamp
		want string
	}{
		{"now, the gift reversed", nil, "payable 0 USD, available 0"},
		{"as of the gift", afterGift, "pending 2, payable 0.01 USD, available 0"},
		{"as of the purchase before it", buy.RecordedAt, "available 0"},
	} {
		if got := earnings(c.at); got != c.want {
			t.Errorf("earnings %s: %s, want %s", c.name, got, c.want)
		}
	}

	fin := e.finance(t)
	accts, err := fin.ListAccounts(ctx, &pb.ListAccountsRequest{Prefix: "COIN:", PageSize: 2})
	if err != nil || len(accts.Accounts) != 2 || accts.NextPageToken == "" {
		t.Fatalf("accounts page: %v %v", accts, err)
	}
	next, err := fin.ListAccounts(ctx, &pb.ListAccountsRequest{Prefix: "COIN:", PageSize: 2, PageToken: accts.NextPageToken})
	if err != nil || len(next.Accounts) == 0 || next.Accounts[0].Name <= accts.Accounts[1].Name {
		t.Fatalf("next accounts page: %v %v", next, err)
	}
	bal, err := fin.GetBalance(ctx, &pb.GetBalanceRequest{Account: economy.CoinWallet("v1")})
	if err != nil || bal.Balance.Amount != "100" {
		t.Fatalf("balance: %v %v", bal, err)
	}
	before, err := fin.GetBalance(ctx, &pb.GetBalanceRequest{Account: economy.CoinWallet("v1"), AsOf: buy.RecordedAt})
	if err != nil || before.Balance.Amount != "100" {
		t.Fatalf("balance as of the purchase: %v %v", before, err)
	}
	// A trial balance's lines: several accounts in one call, now and as of
	// the purchase, each as GetBalance reads it.
	names := []string{economy.CoinWallet("v1"), economy.CoinIssued, economy.CoinWallet("v1")}
	for _, at := range []*timestamppb.Timestamp{nil, buy.RecordedAt} {
		batch, err := fin.BatchGetBalances(ctx, &pb.BatchGetBalancesRequest{Accounts: names, AsOf: at})
		if err != nil || len(batch.Balances) != len(names) {
			t.Fatalf("balances as of %v: %v %v", at, batch, err)
		}
		for i, name := range names {
			one, err := fin.GetBalance(ctx, &pb.GetBalanceRequest{Account: name, AsOf: at})
			if err != nil || !proto.Equal(one.Balance, batch.Balances[i]) {
				t.Errorf("%s as of %v: batch %v, alone %v %v", name, at, batch.Balances[i], one, err)
			}
		}
	}
	var kinds []string
	token := ""
	for {
		page, err := fin.ListEntries(ctx, &pb.ListEntriesRequest{Account: economy.CoinWallet("v1"), PageSize: 1, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range page.Entries {
			kinds = append(kinds, en.Kind)
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	if got := strings.Join(kinds, ","); got != "purchase,gift,refund,refund-reversal,gift-reversal" {
		t.Errorf("wallet entries, one page each: %s", got)
	}
	// A statement's span: after the purchase, up to and with the gift.
	span, err := fin.ListEntries(ctx, &pb.ListEntriesRequest{Account: economy.CoinWallet("v1"), RecordedAfter: buy.RecordedAt, RecordedUntil: afterGift})
	if err != nil || len(span.Entries) != 1 || span.Entries[0].Kind != "gift" || span.NextPageToken != "" {
		t.Errorf("wallet entries after the purchase up to the gift: %v %v", span, err)
	}
	byID, err := fin.GetTransaction(ctx, &pb.GetTransactionRequest{Id: g.Transaction.Id})
	if err != nil || byID.Transaction.IdempotencyKey != "gift:g1" {
		t.Fatalf("transaction by id: %v %v", byID, err)
	}
	if byKey, err := fin.GetTransaction(ctx, &pb.GetTransactionRequest{IdempotencyKey: "gift:g1"}); err != nil || byKey.Transaction.Id != g.Transaction.Id {
		t.Fatalf("transaction by key: %v %v", byKey, err)
	}
	r, err := e.svc.Verify(ctx)
	if err != nil || !r.Clean() {
		t.Fatalf("verify: %v %v", err, r)
	}
}

// A gift answered in the basic view carries no postings or metadata; the
// view is not part of the gift, so a retry may ask for the full one and gets
// the same transaction, replayed.
func TestGiftViews(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	ctx := context.Background()
	e.buy(t, "v1", "tx-1")
	req := &pb.SendGiftRequest{IdempotencyKey: "gv", Viewer: "v1", Creator: "star", GiftId: "rose", StreamId: "s1", SentAt: timestamppb.Now(),
		View: pb.TransactionView_TRANSACTION_VIEW_BASIC}
	basic, err := e.gifts(t).SendGift(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if b := basic.Transaction; b.Id == "" || b.IdempotencyKey != "gift:gv" || b.Kind != "gift" || b.RecordedAt == nil || b.Replayed ||
		len(b.Postings) != 0 || b.MetadataJson != "" {
		t.Errorf("basic view: %v", b)
	}
	for _, view := range []pb.TransactionView{pb.TransactionView_TRANSACTION_VIEW_FULL, pb.TransactionView_TRANSACTION_VIEW_UNSPECIFIED} {
		req.View = view
		full, err := e.gifts(t).SendGift(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if f := full.Transaction; f.Id != basic.Transaction.Id || !f.Replayed || len(f.Postings) < 6 || f.MetadataJson == "" {
			t.Errorf("%s view of the retry: %v", view, f)
		}
	}
}

// Reference data reads back as published: the version in force at the
// instant asked, a creator's own share rule or else the platform default.
func TestCatalogReads(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	ctx := context.Background()
	cat := pb.NewCatalogServiceClient(e.dial(t, "tok-fin-0123456789"))
	pack, err := cat.GetCoinPack(ctx, &pb.GetCoinPackRequest{PackId: "p100", Channel: pb.Channel_CHANNEL_APPLE})
	if err != nil {
		t.Fatal(err)
	}
	if p := pack.Pack; p.PackId != "p100" || p.Channel != pb.Channel_CHANNEL_APPLE || p.Coins != 100 || p.FeeRate != "0.3" ||
		len(p.Prices) != 1 || p.Prices[0].Amount != "0.99" || p.Prices[0].Asset != "USD" || p.EffectiveAt == nil || p.RecordedAt == nil {
		t.Errorf("pack: %v", p)
	}
	_, err = cat.GetCoinPack(ctx, &pb.GetCoinPackRequest{PackId: "p100", Channel: pb.Channel_CHANNEL_GOOGLE})
	wantCode(t, "pack on a channel it is not sold on", err, codes.NotFound)

	gift, err := cat.GetGift(ctx, &pb.GetGiftRequest{GiftId: "rose"})
	if err != nil || gift.Gift.GiftId != "rose" || gift.Gift.Coins != 5 {
		t.Fatalf("gift: %v %v", gift, err)
	}
	before := timestamppb.New(gift.Gift.EffectiveAt.AsTime().Add(-time.Microsecond))
	_, err = cat.GetGift(ctx, &pb.GetGiftRequest{GiftId: "rose", At: before})
	wantCode(t, "gift before its first version", err, codes.NotFound)
	_, err = cat.GetGift(ctx, &pb.GetGiftRequest{GiftId: "tulip"})
	wantCode(t, "unknown gift", err, codes.NotFound)

	from := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	if _, err := e.catalog(t).AddShareRule(ctx, &pb.AddShareRuleRequest{Creator: "star", EffectiveAt: timestamppb.New(from), CreatorShare: "0.6",
		Agency: "agency1", AgencyShare: "0.1", HoldingPeriod: durationpb.New(72 * time.Hour), DiamondValue: usd("0.005"), IdempotencyKey: "star-rule"}); err != nil {
		t.Fatal(err)
	}
	rules := []struct {
		name    string
		creator string
		at      time.Time
		want    string // creator, share, agency, agency share, holding, diamond value
	}{
		{"the default", "", time.Time{}, ",0.5,,,168h0m0s,0.005 USD"},
		{"a creator before its own rule", "star", time.Time{}, ",0.5,,,168h0m0s,0.005 USD"},
		{"a creator under its own rule", "star", from, "star,0.6,agency1,0.1,72h0m0s,0.005 USD"},
		{"a creator without a rule", "nova", from, ",0.5,,,168h0m0s,0.005 USD"},
	}
	for _, tt := range rules {
		req := &pb.GetShareRuleRequest{Creator: tt.creator}
		if !tt.at.IsZero() {
			req.At = timestamppb.New(tt.at)
		}
		got, err := cat.GetShareRule(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		r := got.Rule
		if s := strings.Join([]string{r.Creator, r.CreatorShare, r.Agency, r.AgencyShare, r.HoldingPeriod.AsDuration().String(),
			r.DiamondValue.Amount + " " + r.DiamondValue.Asset}, ","); s != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, s, tt.want)
		}
	}
}

func TestTreasuryAndLiveShopping(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	ctx := context.Background()
	tr := e.treasury(t)
	// Creating the same account again returns it; other attributes are refused.
	again, err := tr.CreateAccount(ctx, &pb.CreateAccountRequest{Name: "Treasury:ops", Asset: "USD", NormalSide: pb.Side_SIDE_CREDIT, Shards: 4})
	if err != nil || again.Account.Name != "Treasury:ops" || again.Account.NormalSide != pb.Side_SIDE_CREDIT {
		t.Fatalf("account again: %v %v", again, err)
	}
	_, err = tr.CreateAccount(ctx, &pb.CreateAccountRequest{Name: "Treasury:ops", Asset: "USD", NormalSide: pb.Side_SIDE_DEBIT})
	wantCode(t, "account redefined", err, codes.AlreadyExists)

	req := &pb.TransferRequest{IdempotencyKey: "t1", From: "Treasury:float", To: "Treasury:ops", Amount: usd("125.50"), Memo: "opening float"}
	first, err := tr.Transfer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if p := first.Transaction.Postings; len(p) != 2 || p[0].Account != "Treasury:float" || p[0].Side != pb.Side_SIDE_DEBIT || p[1].Amount.Amount != "125.5" {
		t.Errorf("transfer postings: %v", p)
	}
	retry, err := tr.Transfer(ctx, req)
	if err != nil || retry.Transaction.Id != first.Transaction.Id || !retry.Transaction.Replayed {
		t.Errorf("retried transfer: %v %v", retry, err)
	}
	req.Amount = usd("1")
	_, err = tr.Transfer(ctx, req)
	wantCode(t, "transfer key reused with another amount", err, codes.AlreadyExists)
	_, err = tr.Transfer(ctx, &pb.TransferRequest{IdempotencyKey: "t2", From: "Treasury:ops", To: "Treasury:float", Amount: usd("200")})
	wantCode(t, "transfer beyond the balance", err, codes.FailedPrecondition)
	if got := preconditionOf(err); got != "from" {
		t.Errorf("transfer beyond the balance names %q, want from", got)
	}

	// A 20 USD sale: 5% to the platform, 10% to the session's partner.
	sale, err := e.shop(t).RecordSale(ctx, &pb.RecordSaleRequest{OrderId: "o1", SessionId: "live-1", Amount: usd("20"), SoldAt: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	var legs []string
	for _, p := range sale.Transaction.Postings {
		legs = append(legs, p.Side.String()+" "+p.Account+" "+p.Amount.Amount)
	}
	want := "SIDE_DEBIT Clearing:PSP:stripe:USD 20,SIDE_CREDIT Liability:SellerPayable:shop1:USD 17,SIDE_CREDIT Revenue:LiveShopping:USD 1,SIDE_CREDIT Liability:PartnerPayable:host1:USD 2"
	if got := strings.Join(legs, ","); got != want {
		t.Errorf("sale postings:\n got %s\nwant %s", got, want)
	}
	fin := e.finance(t)
	if b, err := fin.GetBalance(ctx, &pb.GetBalanceRequest{Account: "Liability:PartnerPayable:host1:USD"}); err != nil || b.Balance.Amount != "2" {
		t.Errorf("partner payable: %v %v", b, err)
	}
	v, err := fin.Verify(ctx, &pb.VerifyRequest{})
	if err != nil || len(v.Violations) != 0 || v.Transactions < 2 {
		t.Fatalf("verify: %v %v", v, err)
	}
}

// Verify lists the economy's checks after the ledger's: diamonds in a
// pending account of a closed release day (put there behind the economy's
// back) are a release-closed violation.
func TestVerifyListsTheEconomysChecks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pending := economy.PendingDiamonds("c1", time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
	if err := e.db.NotePendingAccount(ctx, "20261128", pending); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateAccount(ctx, ledger.Account{Name: pending, Asset: economy.Diamond, Normal: ledger.Credit}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Post(ctx, ledger.PostRequest{IdempotencyKey: "stuck", Kind: "test-stuck", Postings: []ledger.PostingRequest{
		{Account: economy.DiamondIssued, Side: ledger.Debit, Amount: decimal.NewFromInt(3)},
		{Account: pending, Side: ledger.Credit, Amount: decimal.NewFromInt(3)},
	}}); err != nil {
		t.Fatal(err)
	}
	fin := e.finance(t)
	if v, err := fin.Verify(ctx, &pb.VerifyRequest{}); err != nil || len(v.Violations) != 0 {
		t.Fatalf("verify before the day is closed: %v %v", v, err)
	}
	if err := e.db.CloseReleaseDays(ctx, "", "20261128"); err != nil {
		t.Fatal(err)
	}
	v, err := fin.Verify(ctx, &pb.VerifyRequest{})
	if err != nil || len(v.Violations) != 1 || v.Violations[0].Check != economy.CheckReleaseClosed || v.Violations[0].Subject != pending {
		t.Fatalf("verify after the day is closed: %v %v", v, err)
	}
}

// An earner's statement shows its own accounts only, also for a creator whose
// id is "agency": every agency's accounts are named "agency:{id}" under the
// same prefixes.
func TestEarningsOfACreatorNamedAgency(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	ctx := context.Background()
	cat := e.catalog(t)
	if _, err := cat.AddShareRule(ctx, &pb.AddShareRuleRequest{Creator: "star", CreatorShare: "0.5", Agency: "ag1", AgencyShare: "0.2",
		HoldingPeriod: durationpb.New(7 * 24 * time.Hour), DiamondValue: usd("0.005"), IdempotencyKey: "star-agency-rule"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.RegisterCreator(ctx, &pb.RegisterCreatorRequest{Creator: "agency"}); err != nil {
		t.Fatal(err)
	}
	e.buy(t, "v1", "tx-agency")
	// 100 coins: 50 diamonds, the agency's 10 minted with 0.05 USD payable.
	if _, err := e.gifts(t).SendGift(ctx, &pb.SendGiftRequest{IdempotencyKey: "g-agency", Viewer: "v1", Creator: "star", Coins: 100,
		StreamId: "s1", SentAt: timestamppb.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ earner, want string }{
		{"agency", "available 0"},
		{"agency:ag1", "pending 10, payable 0.05 USD, available 0"},
	} {
		if got := e.earningsLine(t, &pb.GetCreatorEarningsRequest{Earner: c.earner}); got != c.want {
			t.Errorf("earnings of %s: %s, want %s", c.earner, got, c.want)
		}
	}
}

func TestValidation(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	ctx := context.Background()
	now := timestamppb.Now()
	long := strings.Repeat("x", 300)
	purchase := func(f func(*pb.PurchaseRequest)) func() error {
		r := &pb.PurchaseRequest{Channel: pb.Channel_CHANNEL_APPLE, StoreTransactionId: "tx-v", User: "v1", PackId: "p100", AmountPaid: usd("0.99"), PurchasedAt: now}
		f(r)
		return func() error { _, err := e.purchases(t).Purchase(ctx, r); return err }
	}
	gift := func(f func(*pb.SendGiftRequest)) func() error {
		r := &pb.SendGiftRequest{IdempotencyKey: "gv", Viewer: "v1", Creator: "star", Coins: 1, StreamId: "s1", SentAt: now}
		f(r)
		return func() error { _, err := e.gifts(t).SendGift(ctx, r); return err }
	}
	refund := func(f func(*pb.RefundRequest)) func() error {
		r := &pb.RefundRequest{Channel: pb.Channel_CHANNEL_APPLE, StoreTransactionId: "tx-v", RefundId: "rf", RefundedAt: now, Policy: pb.RefundPolicy_REFUND_POLICY_LOSS}
		f(r)
		return func() error { _, err := e.purchases(t).Refund(ctx, r); return err }
	}
	transfer := func(f func(*pb.TransferRequest)) func() error {
		r := &pb.TransferRequest{IdempotencyKey: "t", From: "Treasury:float", To: "Treasury:ops", Amount: usd("1")}
		f(r)
		return func() error { _, err := e.treasury(t).Transfer(ctx, r); return err }
	}
	sale := func(f func(*pb.RecordSaleRequest)) func() error {
		r := &pb.RecordSaleRequest{OrderId: "o1", SessionId: "live-1", Amount: usd("20"), SoldAt: now}
		f(r)
		return func() error { _, err := e.shop(t).RecordSale(ctx, r); return err }
	}
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"purchase: no channel", purchase(func(r *pb.PurchaseRequest) { r.Channel = 0 }), "channel"},
		{"purchase: empty store id", purchase(func(r *pb.PurchaseRequest) { r.StoreTransactionId = "" }), "store_transaction_id"},
		{"purchase: oversized user", purchase(func(r *pb.PurchaseRequest) { r.User = long }), "user"},
		{"purchase: no amount", purchase(func(r *pb.PurchaseRequest) { r.AmountPaid = nil }), "amount_paid"},
		{"purchase: float-ish amount", purchase(func(r *pb.PurchaseRequest) { r.AmountPaid = usd("9.9e1") }), "amount_paid.amount"},
		{"purchase: negative amount", purchase(func(r *pb.PurchaseRequest) { r.AmountPaid = usd("-0.99") }), "amount_paid"},
		{"purchase: too many decimals", purchase(func(r *pb.PurchaseRequest) { r.AmountPaid = usd("0.991") }), "amount_paid"},
		// The request's own field, not the domain's name for it ("currency").
		{"purchase: unknown asset", purchase(func(r *pb.PurchaseRequest) { r.AmountPaid = &pb.Money{Amount: "0.99", Asset: "XYZ"} }), "amount_paid.asset"},
		{"purchase: no time", purchase(func(r *pb.PurchaseRequest) { r.PurchasedAt = nil }), "purchased_at"},
		{"promo: negative coins", func() error {
			_, err := e.purchases(t).GrantPromo(ctx, &pb.GrantPromoRequest{IdempotencyKey: "p", User: "v1", Coins: -1})
			return err
		}, "coins"},
		{"promo: empty key", func() error {
			_, err := e.purchases(t).GrantPromo(ctx, &pb.GrantPromoRequest{User: "v1", Coins: 1})
			return err
		}, "idempotency_key"},
		{"promo: oversized reason", func() error {
			_, err := e.purchases(t).GrantPromo(ctx, &pb.GrantPromoRequest{IdempotencyKey: "p", User: "v1", Coins: 1, Reason: long})
			return err
		}, "reason"},
		{"gift: empty key", gift(func(r *pb.SendGiftRequest) { r.IdempotencyKey = "" }), "idempotency_key"},
		{"gift: oversized key", gift(func(r *pb.SendGiftRequest) { r.IdempotencyKey = long }), "idempotency_key"},
		{"gift: a key with a space", gift(func(r *pb.SendGiftRequest) { r.IdempotencyKey = "a b" }), "idempotency_key"},
		{"reverse gift: a key with a space", func() error {
			_, err := e.gifts(t).ReverseGift(ctx, &pb.ReverseGiftRequest{IdempotencyKey: "a b", GiftTransactionId: "01a250cc-5cdf-78c4-aca0-2c8685f15052"})
			return err
		}, "idempotency_key"},
		{"share rule: a diamond value in no currency", func() error {
			_, err := e.catalog(t).AddShareRule(ctx, &pb.AddShareRuleRequest{Creator: "x", CreatorShare: "0.5", HoldingPeriod: durationpb.New(time.Hour),
				DiamondValue: &pb.Money{Amount: "0.005", Asset: "XYZ"}, IdempotencyKey: "k"})
			return err
		}, "diamond_value.asset"},
		{"gift: negative coins", gift(func(r *pb.SendGiftRequest) { r.Coins = -5 }), "coins"},
		{"gift: no viewer", gift(func(r *pb.SendGiftRequest) { r.Viewer = "" }), "viewer"},
		{"gift: self", gift(func(r *pb.SendGiftRequest) { r.Viewer = "star" }), "creator"},
		{"gift: no time", gift(func(r *pb.SendGiftRequest) { r.SentAt = nil }), "sent_at"},
		{"gift: sent too long ago", gift(func(r *pb.SendGiftRequest) {
			r.SentAt = timestamppb.New(now.AsTime().Add(-economy.MaxGiftDelay - time.Minute))
		}), "sent_at"},
		{"refund: no policy", refund(func(r *pb.RefundRequest) { r.Policy = 0 }), "policy"},
		{"refund: negative coins", refund(func(r *pb.RefundRequest) { r.Coins = -1 }), "coins"},
		{"refund: bad refund id", refund(func(r *pb.RefundRequest) { r.RefundId = "a b" }), "refund_id"},
		{"reverse gift: not a transaction id", func() error {
			_, err := e.gifts(t).ReverseGift(ctx, &pb.ReverseGiftRequest{IdempotencyKey: "r", GiftTransactionId: "nope"})
			return err
		}, "gift_transaction_id"},
		{"wallet: no user", func() error { _, err := e.gifts(t).GetWallet(ctx, &pb.GetWalletRequest{}); return err }, "user"},
		{"entries: page size", func() error {
			_, err := e.finance(t).ListEntries(ctx, &pb.ListEntriesRequest{Account: "COIN:issued", PageSize: 5000})
			return err
		}, "page_size"},
		{"entries: forged page token", func() error {
			_, err := e.finance(t).ListEntries(ctx, &pb.ListEntriesRequest{Account: "COIN:issued", PageToken: "!!"})
			return err
		}, "page_token"},
		{"entries: a page token whose position is out of range", func() error {
			// Tokens were JSON once; this one reached SQL and failed there as Internal.
			forged := base64.RawURLEncoding.EncodeToString([]byte(`{"RecordedAt":"2026-01-01T00:00:00Z","BatchSeq":99999999999,"TxID":"00000000-0000-0000-0000-000000000001","Index":0}`))
			_, err := e.finance(t).ListEntries(ctx, &pb.ListEntriesRequest{Account: "COIN:issued", PageToken: forged})
			return err
		}, "page_token"},
		{"entries: a page token past a transaction's last posting", func() error {
			var raw [32]byte
			raw[12] = 1                                          // a transaction id
			binary.BigEndian.PutUint32(raw[28:], math.MaxUint32) // the posting index
			_, err := e.finance(t).ListEntries(ctx, &pb.ListEntriesRequest{Account: "COIN:issued", PageToken: base64.RawURLEncoding.EncodeToString(raw[:])})
			return err
		}, "page_token"},
		{"transaction: neither id nor key", func() error { _, err := e.finance(t).GetTransaction(ctx, &pb.GetTransactionRequest{}); return err }, "id"},
		{"pack: no key", func() error {
			_, err := e.catalog(t).AddCoinPack(ctx, &pb.AddCoinPackRequest{PackId: "x", Channel: pb.Channel_CHANNEL_WEB, Coins: 1, Prices: []*pb.Money{usd("1")}, FeeRate: "0.3"})
			return err
		}, "idempotency_key"},
		{"pack: a key with a space", func() error {
			_, err := e.catalog(t).AddCoinPack(ctx, &pb.AddCoinPackRequest{PackId: "x", Channel: pb.Channel_CHANNEL_WEB, Coins: 1, Prices: []*pb.Money{usd("1")}, FeeRate: "0.3", IdempotencyKey: "a b"})
			return err
		}, "idempotency_key"},
		{"gift catalog: no key", func() error {
			_, err := e.catalog(t).AddGift(ctx, &pb.AddGiftRequest{GiftId: "g", Coins: 1})
			return err
		}, "idempotency_key"},
		{"share rule: no key", func() error {
			_, err := e.catalog(t).AddShareRule(ctx, &pb.AddShareRuleRequest{CreatorShare: "0.5", HoldingPeriod: durationpb.New(time.Hour), DiamondValue: usd("0.005")})
			return err
		}, "idempotency_key"},
		{"pack: bad fee rate", func() error {
			_, err := e.catalog(t).AddCoinPack(ctx, &pb.AddCoinPackRequest{PackId: "x", Channel: pb.Channel_CHANNEL_WEB, Coins: 1, Prices: []*pb.Money{usd("1")}, FeeRate: "30%", IdempotencyKey: "k"})
			return err
		}, "fee_rate"},
		{"pack: a currency priced twice", func() error {
			_, err := e.catalog(t).AddCoinPack(ctx, &pb.AddCoinPackRequest{PackId: "x", Channel: pb.Channel_CHANNEL_WEB, Coins: 1, Prices: []*pb.Money{usd("1"), usd("2")}, FeeRate: "0.3", IdempotencyKey: "k"})
			return err
		}, "prices[1].asset"},
		{"pack: a price finer than its currency", func() error {
			_, err := e.catalog(t).AddCoinPack(ctx, &pb.AddCoinPackRequest{PackId: "x", Channel: pb.Channel_CHANNEL_WEB, Coins: 1, Prices: []*pb.Money{usd("0.999")}, FeeRate: "0.3", IdempotencyKey: "k"})
			return err
		}, "prices[0].amount"},
		{"purchase: more decimal places than any asset has", purchase(func(r *pb.PurchaseRequest) { r.AmountPaid = usd("0." + strings.Repeat("9", 19)) }), "amount_paid.amount"},
		{"transfer: more digits than an amount holds", transfer(func(r *pb.TransferRequest) { r.Amount = usd(strings.Repeat("9", 39)) }), "amount.amount"},
		{"transfer: empty key", transfer(func(r *pb.TransferRequest) { r.IdempotencyKey = "" }), "idempotency_key"},
		{"transfer: not a treasury account", transfer(func(r *pb.TransferRequest) { r.From = "COIN:issued" }), "from"},
		{"transfer: same account", transfer(func(r *pb.TransferRequest) { r.To = r.From }), "to"},
		{"transfer: zero", transfer(func(r *pb.TransferRequest) { r.Amount = usd("0") }), "amount"},
		{"transfer: too many decimals", transfer(func(r *pb.TransferRequest) { r.Amount = usd("1.001") }), "amount"},
		{"transfer: unknown asset", transfer(func(r *pb.TransferRequest) { r.Amount = &pb.Money{Amount: "1", Asset: "XYZ"} }), "amount.asset"},
		{"transfer: other asset than the accounts'", transfer(func(r *pb.TransferRequest) { r.Amount = &pb.Money{Amount: "1", Asset: "EUR"} }), "amount.asset"},
		{"transfer: oversized memo", transfer(func(r *pb.TransferRequest) { r.Memo = long }), "memo"},
		{"treasury account: no side", func() error {
			_, err := e.treasury(t).CreateAccount(ctx, &pb.CreateAccountRequest{Name: "Treasury:x", Asset: "USD"})
			return err
		}, "normal_side"},
		{"treasury account: outside the treasury", func() error {
			_, err := e.treasury(t).CreateAccount(ctx, &pb.CreateAccountRequest{Name: "COIN:wallet:x", Asset: "COIN", NormalSide: pb.Side_SIDE_CREDIT})
			return err
		}, "name"},
		{"treasury account: too many shards", func() error {
			_, err := e.treasury(t).CreateAccount(ctx, &pb.CreateAccountRequest{Name: "Treasury:x", Asset: "USD", NormalSide: pb.Side_SIDE_CREDIT, Shards: 65})
			return err
		}, "shards"},
		{"sale: negative amount", sale(func(r *pb.RecordSaleRequest) { r.Amount = usd("-5") }), "amount"},
		{"sale: unknown asset", sale(func(r *pb.RecordSaleRequest) { r.Amount = &pb.Money{Amount: "5", Asset: "XYZ"} }), "amount.asset"},
		{"sale: paid in coins", sale(func(r *pb.RecordSaleRequest) { r.Amount = &pb.Money{Amount: "5", Asset: "COIN"} }), "amount.asset"},
		{"treasury account: unknown asset", func() error {
			_, err := e.treasury(t).CreateAccount(ctx, &pb.CreateAccountRequest{Name: "Treasury:x", Asset: "XYZ", NormalSide: pb.Side_SIDE_CREDIT})
			return err
		}, "asset"},
		{"sale: no time", sale(func(r *pb.RecordSaleRequest) { r.SoldAt = nil }), "sold_at"},
		{"sale: bad order id", sale(func(r *pb.RecordSaleRequest) { r.OrderId = "a/b" }), "order_id"},
		{"live session: shares leave the seller nothing", func() error {
			_, err := e.catalog(t).AddLiveSession(ctx, &pb.AddLiveSessionRequest{SessionId: "s", Seller: "x", Partner: "p", PlatformRate: "0.5", PartnerShare: "0.5"})
			return err
		}, "partner_share"},
		{"gift catalog: no coins", func() error {
			_, err := e.catalog(t).AddGift(ctx, &pb.AddGiftRequest{GiftId: "g", IdempotencyKey: "k"})
			return err
		}, "coins"},
		{"gift catalog: oversized id", func() error {
			_, err := e.catalog(t).AddGift(ctx, &pb.AddGiftRequest{GiftId: long, Coins: 1, IdempotencyKey: "k"})
			return err
		}, "gift_id"},
		{"creator: none", func() error { _, err := e.catalog(t).RegisterCreator(ctx, &pb.RegisterCreatorRequest{}); return err }, "creator"},
		{"earnings: no earner", func() error {
			_, err := e.earnings(t).GetCreatorEarnings(ctx, &pb.GetCreatorEarningsRequest{})
			return err
		}, "earner"},
		{"earnings: oversized earner", func() error {
			_, err := e.earnings(t).GetCreatorEarnings(ctx, &pb.GetCreatorEarningsRequest{Earner: long})
			return err
		}, "earner"},
		{"accounts: page size", func() error {
			_, err := e.finance(t).ListAccounts(ctx, &pb.ListAccountsRequest{Prefix: "COIN:", PageSize: 5000})
			return err
		}, "page_size"},
		{"balance: no account", func() error { _, err := e.finance(t).GetBalance(ctx, &pb.GetBalanceRequest{}); return err }, "account"},
		{"balance: bad time", func() error {
			_, err := e.finance(t).GetBalance(ctx, &pb.GetBalanceRequest{Account: "COIN:issued", AsOf: &timestamppb.Timestamp{Nanos: -1}})
			return err
		}, "as_of"},
		{"refund reversal: no channel", func() error {
			_, err := e.purchases(t).ReverseRefund(ctx, &pb.ReverseRefundRequest{RefundId: "rf"})
			return err
		}, "channel"},
		{"refund reversal: no refund id", func() error {
			_, err := e.purchases(t).ReverseRefund(ctx, &pb.ReverseRefundRequest{Channel: pb.Channel_CHANNEL_APPLE})
			return err
		}, "refund_id"},
		{"entries: span ending before it starts", func() error {
			_, err := e.finance(t).ListEntries(ctx, &pb.ListEntriesRequest{Account: "COIN:issued", RecordedAfter: now,
				RecordedUntil: timestamppb.New(now.AsTime().Add(-time.Second))})
			return err
		}, "recorded_until"},
		{"entries: bad recorded_after", func() error {
			_, err := e.finance(t).ListEntries(ctx, &pb.ListEntriesRequest{Account: "COIN:issued", RecordedAfter: &timestamppb.Timestamp{Nanos: -1}})
			return err
		}, "recorded_after"},
		{"gift: unknown view", gift(func(r *pb.SendGiftRequest) { r.View = 7 }), "view"},
		{"balances: none named", func() error {
			_, err := e.finance(t).BatchGetBalances(ctx, &pb.BatchGetBalancesRequest{})
			return err
		}, "accounts"},
		{"balances: too many", func() error {
			_, err := e.finance(t).BatchGetBalances(ctx, &pb.BatchGetBalancesRequest{Accounts: make([]string, 1001)})
			return err
		}, "accounts"},
		{"balances: an empty name", func() error {
			_, err := e.finance(t).BatchGetBalances(ctx, &pb.BatchGetBalancesRequest{Accounts: []string{"COIN:issued", ""}})
			return err
		}, "accounts[1]"},
		{"balances: a malformed name", func() error {
			_, err := e.finance(t).BatchGetBalances(ctx, &pb.BatchGetBalancesRequest{Accounts: []string{"COIN:issued", "no spaces please"}})
			return err
		}, "accounts[1]"},
		{"balances: bad as_of", func() error {
			_, err := e.finance(t).BatchGetBalances(ctx, &pb.BatchGetBalancesRequest{Accounts: []string{"COIN:issued"}, AsOf: &timestamppb.Timestamp{Nanos: -1}})
			return err
		}, "as_of"},
		{"earnings: bad as_of", func() error {
			_, err := e.earnings(t).GetCreatorEarnings(ctx, &pb.GetCreatorEarningsRequest{Earner: "star", AsOf: &timestamppb.Timestamp{Seconds: -1 << 40}})
			return err
		}, "as_of"},
		{"pack lookup: no pack id", func() error {
			_, err := e.catalog(t).GetCoinPack(ctx, &pb.GetCoinPackRequest{Channel: pb.Channel_CHANNEL_APPLE})
			return err
		}, "pack_id"},
		{"pack lookup: no channel", func() error {
			_, err := e.catalog(t).GetCoinPack(ctx, &pb.GetCoinPackRequest{PackId: "p100"})
			return err
		}, "channel"},
		{"pack lookup: bad time", func() error {
			_, err := e.catalog(t).GetCoinPack(ctx, &pb.GetCoinPackRequest{PackId: "p100", Channel: pb.Channel_CHANNEL_APPLE, At: &timestamppb.Timestamp{Nanos: -1}})
			return err
		}, "at"},
		{"gift lookup: oversized gift id", func() error {
			_, err := e.catalog(t).GetGift(ctx, &pb.GetGiftRequest{GiftId: long})
			return err
		}, "gift_id"},
		{"share rule lookup: creator with a space", func() error {
			_, err := e.catalog(t).GetShareRule(ctx, &pb.GetShareRuleRequest{Creator: "a b"})
			return err
		}, "creator"},
		{"share rule: no holding period", func() error {
			_, err := e.catalog(t).AddShareRule(ctx, &pb.AddShareRuleRequest{Creator: "x", CreatorShare: "0.5", DiamondValue: usd("0.005"), IdempotencyKey: "k"})
			return err
		}, "holding_period"},
		{"block: empty user", func() error {
			_, err := e.admin(t).BlockViewer(ctx, &pb.BlockViewerRequest{IdempotencyKey: "k"})
			return err
		}, "user"},
		{"block: no key", func() error { _, err := e.admin(t).BlockViewer(ctx, &pb.BlockViewerRequest{User: "v1"}); return err }, "idempotency_key"},
		{"unblock: oversized user", func() error {
			_, err := e.admin(t).UnblockViewer(ctx, &pb.UnblockViewerRequest{User: long, IdempotencyKey: "k"})
			return err
		}, "user"},
		{"release: in the future", func() error {
			_, err := e.admin(t).ReleaseEarnings(ctx, &pb.ReleaseEarningsRequest{AsOf: timestamppb.New(time.Now().Add(24 * time.Hour))})
			return err
		}, "as_of"},
		{"release: bad time", func() error {
			_, err := e.admin(t).ReleaseEarnings(ctx, &pb.ReleaseEarningsRequest{AsOf: &timestamppb.Timestamp{Nanos: -1}})
			return err
		}, "as_of"},
		// Strings that reached a query unchecked failed in SQL as Internal
		// (found by FuzzRequests).
		{"wallet: a NUL in the user", func() error {
			_, err := e.gifts(t).GetWallet(ctx, &pb.GetWalletRequest{User: "v\x001"})
			return err
		}, "user"},
		{"wallet: a user with a space", func() error {
			_, err := e.gifts(t).GetWallet(ctx, &pb.GetWalletRequest{User: "v 1"})
			return err
		}, "user"},
		{"earnings: an earner with a space", func() error {
			_, err := e.earnings(t).GetCreatorEarnings(ctx, &pb.GetCreatorEarningsRequest{Earner: "st ar"})
			return err
		}, "earner"},
		{"earnings: an agency without an id", func() error {
			_, err := e.earnings(t).GetCreatorEarnings(ctx, &pb.GetCreatorEarningsRequest{Earner: "agency:"})
			return err
		}, "earner"},
		{"accounts: a page token that is not a name", func() error {
			_, err := e.finance(t).ListAccounts(ctx, &pb.ListAccountsRequest{PageToken: "-0"})
			return err
		}, "page_token"},
		{"accounts: a prefix no name starts with", func() error {
			_, err := e.finance(t).ListAccounts(ctx, &pb.ListAccountsRequest{Prefix: "COIN:\x00"})
			return err
		}, "prefix"},
		{"gift: a NUL in the stream id", gift(func(r *pb.SendGiftRequest) { r.StreamId = "s\x00" }), "stream_id"},
		{"purchase: a NUL in the currency", purchase(func(r *pb.PurchaseRequest) { r.AmountPaid.Asset = "US\x00" }), "amount_paid.asset"},
		{"balances: a NUL in the second name", func() error {
			_, err := e.finance(t).BatchGetBalances(ctx, &pb.BatchGetBalancesRequest{Accounts: []string{"COIN:issued", "COIN:\x00"}})
			return err
		}, "accounts[1]"},
		{"pack: a NUL in the second price", func() error {
			_, err := e.catalog(t).AddCoinPack(ctx, &pb.AddCoinPackRequest{PackId: "x", Channel: pb.Channel_CHANNEL_WEB, Coins: 1,
				Prices: []*pb.Money{usd("1"), {Amount: "1\x00", Asset: "EUR"}}, FeeRate: "0.3", IdempotencyKey: "k"})
			return err
		}, "prices[1].amount"},
		{"transaction: a NUL in the key", func() error {
			_, err := e.finance(t).GetTransaction(ctx, &pb.GetTransactionRequest{IdempotencyKey: "k\x00"})
			return err
		}, "idempotency_key"},
	}
	for _, tt := range tests {
		err := tt.call()
		if status.Code(err) != codes.InvalidArgument || fieldOf(err) != tt.field {
			t.Errorf("%s: got %v (field %q), want InvalidArgument on %s", tt.name, err, fieldOf(err), tt.field)
		}
		if op := domainOp(err); op != "" {
			t.Errorf("%s: the message names the domain's operation %s: %q", tt.name, op, status.Convert(err).Message())
		}
	}
}

func TestErrorCodes(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	ctx := context.Background()
	now := timestamppb.Now()
	e.buy(t, "v1", "tx-1")
	_, err := e.purchases(t).Refund(ctx, &pb.RefundRequest{Channel: pb.Channel_CHANNEL_APPLE, StoreTransactionId: "nope", RefundId: "rf", RefundedAt: now, Policy: pb.RefundPolicy_REFUND_POLICY_LOSS})
	wantCode(t, "refund of an unknown purchase", err, codes.NotFound)
	_, err = e.gifts(t).SendGift(ctx, &pb.SendGiftRequest{IdempotencyKey: "g", Viewer: "v1", Creator: "star", Coins: 500, StreamId: "s", SentAt: now})
	wantCode(t, "gift beyond the wallet", err, codes.FailedPrecondition)
	if _, err := e.gifts(t).SendGift(ctx, &pb.SendGiftRequest{IdempotencyKey: "g", Viewer: "v1", Creator: "star", Coins: 5, StreamId: "s", SentAt: now}); err != nil {
		t.Fatal(err)
	}
	_, err = e.gifts(t).SendGift(ctx, &pb.SendGiftRequest{IdempotencyKey: "g", Viewer: "v1", Creator: "star", Coins: 6, StreamId: "s", SentAt: now})
	wantCode(t, "gift key reused with other content", err, codes.AlreadyExists)
	_, err = e.gifts(t).SendGift(ctx, &pb.SendGiftRequest{IdempotencyKey: "g2", Viewer: "v1", Creator: "nobody", Coins: 5, StreamId: "s", SentAt: now})
	wantCode(t, "gift to an unknown creator", err, codes.NotFound)
	_, err = e.finance(t).GetBalance(ctx, &pb.GetBalanceRequest{Account: "no:such"})
	wantCode(t, "balance of an unknown account", err, codes.NotFound)
	_, err = e.finance(t).BatchGetBalances(ctx, &pb.BatchGetBalancesRequest{Accounts: []string{"COIN:issued", "no:such"}})
	wantCode(t, "balances naming an unknown account", err, codes.NotFound)
	_, err = e.treasury(t).Transfer(ctx, &pb.TransferRequest{IdempotencyKey: "t", From: "Treasury:float", To: "Treasury:nobody", Amount: usd("1")})
	wantCode(t, "transfer to an unknown account", err, codes.NotFound)
	_, err = e.shop(t).RecordSale(ctx, &pb.RecordSaleRequest{OrderId: "o", SessionId: "nope", Amount: usd("1"), SoldAt: now})
	wantCode(t, "sale in an unknown session", err, codes.NotFound)
	// A viewer who owes coins after a refund under the debt policy.
	if _, err := e.purchases(t).Refund(ctx, &pb.RefundRequest{Channel: pb.Channel_CHANNEL_APPLE, StoreTransactionId: "tx-1", RefundId: "rf-1",
		RefundedAt: now, Policy: pb.RefundPolicy_REFUND_POLICY_DEBT}); err != nil {
		t.Fatal(err)
	}
	_, err = e.gifts(t).SendGift(ctx, &pb.SendGiftRequest{IdempotencyKey: "g3", Viewer: "v1", Creator: "star", Coins: 5, StreamId: "s", SentAt: now})
	wantCode(t, "gift from a viewer in debt", err, codes.FailedPrecondition)
	// tx-2's coins repay the debt, and tx-2 is refunded under the loss
	// policy: rf-1's debt cannot be taken back until rf-2 is reversed.
	e.buy(t, "v1", "tx-2")
	if _, err := e.purchases(t).Refund(ctx, &pb.RefundRequest{Channel: pb.Channel_CHANNEL_APPLE, StoreTransactionId: "tx-2", RefundId: "rf-2",
		RefundedAt: now, Policy: pb.RefundPolicy_REFUND_POLICY_LOSS}); err != nil {
		t.Fatal(err)
	}
	_, err = e.purchases(t).ReverseRefund(ctx, &pb.ReverseRefundRequest{Channel: pb.Channel_CHANNEL_APPLE, RefundId: "rf-1"})
	wantCode(t, "reversal of a debt repaid with coins refunded since", err, codes.FailedPrecondition)
	if got := preconditionOf(err); got != "refund_id" {
		t.Errorf("reversal of a debt repaid with coins refunded since names %q, want refund_id: %v", got, err)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "drew on apple purchase tx-2, refunded by rf-2") {
		t.Errorf("reversal of a debt repaid with coins refunded since does not name the refund to reverse first: %s", msg)
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	wallet := func(token string) error {
		_, err := pb.NewGiftServiceClient(e.dial(t, token)).GetWallet(ctx, &pb.GetWalletRequest{User: "v1"})
		return err
	}
	send := func(token string) error {
		_, err := pb.NewGiftServiceClient(e.dial(t, token)).SendGift(ctx, &pb.SendGiftRequest{})
		return err
	}
	earnings := func(token string) error {
		_, err := pb.NewEarningsServiceClient(e.dial(t, token)).GetCreatorEarnings(ctx, &pb.GetCreatorEarningsRequest{Earner: "star"})
		return err
	}
	entries := func(token string) error {
		_, err := pb.NewLedgerServiceClient(e.dial(t, token)).ListAccounts(ctx, &pb.ListAccountsRequest{})
		return err
	}
	purchase := func(token string) error {
		_, err := pb.NewPurchaseServiceClient(e.dial(t, token)).Purchase(ctx, &pb.PurchaseRequest{})
		return err
	}
	admin := func(token string) error {
		_, err := pb.NewCatalogServiceClient(e.dial(t, token)).RegisterCreator(ctx, &pb.RegisterCreatorRequest{Creator: "c9"})
		return err
	}
	sale := func(token string) error {
		_, err := pb.NewLiveShoppingServiceClient(e.dial(t, token)).RecordSale(ctx, &pb.RecordSaleRequest{})
		return err
	}
	transfer := func(token string) error {
		_, err := pb.NewTreasuryServiceClient(e.dial(t, token)).Transfer(ctx, &pb.TransferRequest{})
		return err
	}
	verify := func(token string) error {
		_, err := pb.NewLedgerServiceClient(e.dial(t, token)).Verify(ctx, &pb.VerifyRequest{})
		return err
	}
	readCatalog := func(token string) error {
		_, err := pb.NewCatalogServiceClient(e.dial(t, token)).GetShareRule(ctx, &pb.GetShareRuleRequest{At: &timestamppb.Timestamp{Nanos: -1}})
		return err
	}
	block := func(token string) error {
		_, err := pb.NewAdminServiceClient(e.dial(t, token)).BlockViewer(ctx, &pb.BlockViewerRequest{})
		return err
	}
	const (
		iap, gifting, portal, fin, adm = "tok-iap-0123456789", "tok-gift-0123456789", "tok-portal-0123456789", "tok-fin-0123456789", "tok-admin-0123456789"
		shop, treasurer                = "tok-shop-0123456789", "tok-treasury-0123456789"
	)
	tests := []struct {
		name  string
		call  func(string) error
		token string
		code  codes.Code
	}{
		{"no token", wallet, "", codes.Unauthenticated},
		{"unknown token", wallet, "tok-unknown-0123456789", codes.Unauthenticated},
		{"gifting may read wallets", wallet, gifting, codes.OK},
		{"iap may read wallets", wallet, iap, codes.OK},
		{"finance may read wallets", wallet, fin, codes.OK},
		{"portal may not read wallets", wallet, portal, codes.PermissionDenied},
		{"iap may not gift", send, iap, codes.PermissionDenied},
		{"finance may not gift", send, fin, codes.PermissionDenied},
		{"gifting may gift (and is then validated)", send, gifting, codes.InvalidArgument},
		{"portal may read earnings", earnings, portal, codes.OK},
		{"finance may read earnings", earnings, fin, codes.OK},
		{"gifting may not read earnings", earnings, gifting, codes.PermissionDenied},
		{"finance may read the ledger", entries, fin, codes.OK},
		{"admin may not read the ledger", entries, adm, codes.PermissionDenied},
		{"gifting may not purchase", purchase, gifting, codes.PermissionDenied},
		{"iap may purchase (and is then validated)", purchase, iap, codes.InvalidArgument},
		{"admin may change reference data", admin, adm, codes.OK},
		{"finance may not change reference data", admin, fin, codes.PermissionDenied},
		{"finance may read reference data (and is then validated)", readCatalog, fin, codes.InvalidArgument},
		{"admin may read reference data (and is then validated)", readCatalog, adm, codes.InvalidArgument},
		{"gifting may not read reference data", readCatalog, gifting, codes.PermissionDenied},
		{"commerce may record sales (and is then validated)", sale, shop, codes.InvalidArgument},
		{"iap may not record sales", sale, iap, codes.PermissionDenied},
		{"treasury may transfer (and is then validated)", transfer, treasurer, codes.InvalidArgument},
		{"finance may not transfer", transfer, fin, codes.PermissionDenied},
		{"admin may not transfer", transfer, adm, codes.PermissionDenied},
		{"finance may verify", verify, fin, codes.OK},
		{"treasury may not read the ledger", verify, treasurer, codes.PermissionDenied},
		{"admin may block viewers (and is then validated)", block, adm, codes.InvalidArgument},
		{"gifting may not block viewers", block, gifting, codes.PermissionDenied},
		{"finance may not block viewers", block, fin, codes.PermissionDenied},
	}
	for _, tt := range tests {
		if got := status.Code(tt.call(tt.token)); got != tt.code {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.code)
		}
	}
	// The header by hand: exactly one value, and a bearer token in it.
	headers := []struct {
		name string
		md   metadata.MD
		code codes.Code
	}{
		{"one bearer token", metadata.Pairs("authorization", "Bearer "+gifting), codes.OK},
		{"another scheme", metadata.Pairs("authorization", "Basic "+gifting), codes.Unauthenticated},
		{"no scheme", metadata.Pairs("authorization", gifting), codes.Unauthenticated},
		{"two tokens", metadata.Pairs("authorization", "Bearer "+gifting, "authorization", "Bearer "+fin), codes.Unauthenticated},
	}
	bare := pb.NewGiftServiceClient(e.dial(t, ""))
	for _, h := range headers {
		_, err := bare.GetWallet(metadata.NewOutgoingContext(ctx, h.md), &pb.GetWalletRequest{User: "v1"})
		if got := status.Code(err); got != h.code {
			t.Errorf("%s: got %s, want %s", h.name, got, h.code)
		}
	}
	// Health answers without credentials.
	h, err := healthpb.NewHealthClient(e.dial(t, "")).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v %v", h, err)
	}
}

// An admin blocks a viewer, whose gifts are then refused with
// FailedPrecondition naming the viewer, and unblocks them; the release job
// runs on demand and reports what it did.
func TestAdmin(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	ctx := context.Background()
	now := timestamppb.Now()
	e.buy(t, "v1", "tx-1")
	gift := func(key string) error {
		_, err := e.gifts(t).SendGift(ctx, &pb.SendGiftRequest{IdempotencyKey: key, Viewer: "v1", Creator: "star", Coins: 5, StreamId: "s", SentAt: now})
		return err
	}
	for range 2 { // blocking twice is a no-op
		if _, err := e.admin(t).BlockViewer(ctx, &pb.BlockViewerRequest{User: "v1", IdempotencyKey: "block-v1"}); err != nil {
			t.Fatal(err)
		}
	}
	err := gift("g1")
	wantCode(t, "gift from a blocked viewer", err, codes.FailedPrecondition)
	if got := preconditionOf(err); got != "viewer" {
		t.Errorf("blocked viewer's gift: precondition on %q, want viewer", got)
	}
	e.buy(t, "v1", "tx-while-blocked") // what the store did is booked all the same
	w, err := e.gifts(t).GetWallet(ctx, &pb.GetWalletRequest{User: "v1"})
	if err != nil || w.Paid.Amount != "200" {
		t.Errorf("a blocked viewer's wallet still reads, with the coins bought meanwhile: %v %v", w, err)
	}
	if _, err := e.admin(t).UnblockViewer(ctx, &pb.UnblockViewerRequest{User: "v1", IdempotencyKey: "unblock-v1"}); err != nil {
		t.Fatal(err)
	}
	if err := gift("g1"); err != nil {
		t.Errorf("gift after unblocking: %v", err)
	}
	// The gift's diamonds are on hold for the share rule's holding period:
	// the job does not even read a day that is not over.
	rep, err := e.admin(t).ReleaseEarnings(ctx, &pb.ReleaseEarningsRequest{})
	if err != nil || rep.Scanned != 0 || rep.Released != 0 || rep.Diamonds.Amount != "0" || rep.Diamonds.Asset != economy.Diamond {
		t.Errorf("release now: %v %v", rep, err)
	}
}

// A response lost on the way back: the client retries with the same key and
// gets the original transaction; nothing is posted twice.
func TestRetryAfterLostResponse(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	e.buy(t, "v1", "tx-1")
	var lost sync.Once
	dropFirst := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		dropped := false
		lost.Do(func() { dropped = true })
		if dropped && err == nil {
			return status.Error(codes.Unavailable, "connection reset (simulated: the response was lost)")
		}
		return err
	}
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(api.Bearer{Token: "tok-gift-0123456789", Plaintext: true}), grpc.WithUnaryInterceptor(dropFirst))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewGiftServiceClient(conn)
	req := &pb.SendGiftRequest{IdempotencyKey: "g-lost", Viewer: "v1", Creator: "star", Coins: 10, StreamId: "s", SentAt: timestamppb.Now()}
	if _, err := client.SendGift(context.Background(), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("first attempt: %v", err)
	}
	r, err := client.SendGift(context.Background(), req)
	if err != nil || !r.Transaction.Replayed {
		t.Fatalf("retry: %v %v", r, err)
	}
	w, _ := e.gifts(t).GetWallet(context.Background(), &pb.GetWalletRequest{User: "v1"})
	if w.Paid.Amount != "90" {
		t.Errorf("wallet %s after one gift sent twice, want 90", w.Paid.Amount)
	}
}

// An earner's statement now is read in one snapshot: while gifts commit,
// every answer's payable is the value of exactly the diamonds it shows.
// Read one account kind at a time, a gift committing in between showed
// diamonds without their value, or value without its diamonds.
func TestEarningsInOneSnapshot(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	// 4 coins: 2 diamonds, one whole granule worth 0.01 USD.
	e.readEarningsUntil(t, e.giftStorm(t, "snap", 4, 25, 4))
}

// A server whose clock runs ahead of the database's stamps the accounts it
// opens later than the entries the database records in them: a statement as
// of an instant still shows what they held then. (It left out every account
// opened "after" the instant by the server's clock.)
func TestEarningsAsOfWithTheServerClockAhead(t *testing.T) {
	e := newEnvWith(t, ledger.Options{Clock: func() time.Time { return time.Now().Add(time.Hour) }})
	e.seed(t)
	e.buy(t, "v1", "tx-ahead")
	if _, err := e.gifts(t).SendGift(context.Background(), &pb.SendGiftRequest{IdempotencyKey: "ahead", Viewer: "v1", Creator: "star",
		Coins: 4, StreamId: "s", SentAt: timestamppb.Now()}); err != nil {
		t.Fatal(err)
	}
	got := e.earningsLine(t, &pb.GetCreatorEarningsRequest{Earner: "star", AsOf: timestamppb.Now()})
	if want := "pending 2, payable 0.01 USD, available 0"; got != want {
		t.Errorf("statement as of now: %s, want %s", got, want)
	}
}

// The same holds when the gifts open new accounts: each gift here lands in
// a release day of its own (the share rule's holding period grows by a day
// before each), whose pending account the gift creates. A read that listed
// the accounts before one was created, and read balances after its gift,
// showed the gift's value without its diamonds (this caught it in one run
// of three; TestBalancesOfSeesAccountsCreatedMeanwhile makes it happen).
func TestEarningsInOneSnapshotAcrossNewAccounts(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	e.buy(t, "v0", "tx-days")
	ctx := context.Background()
	cat, gifts := e.catalog(t), e.gifts(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for day := 1; day <= 25; day++ {
			if _, err := cat.AddShareRule(ctx, &pb.AddShareRuleRequest{IdempotencyKey: fmt.Sprintf("days-%d", day), Creator: "star", CreatorShare: "0.5",
				HoldingPeriod: durationpb.New(time.Duration(day) * 24 * time.Hour), DiamondValue: usd("0.005")}); err != nil {
				t.Error(err)
				return
			}
			if _, err := gifts.SendGift(ctx, &pb.SendGiftRequest{IdempotencyKey: fmt.Sprintf("days-%d", day), Viewer: "v0",
				Creator: "star", Coins: 4, StreamId: "s", SentAt: timestamppb.Now()}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	e.readEarningsUntil(t, done)
}

// A catalog Add retried after a lost answer publishes nothing new, even when
// it left the effective time to the server and another version was
// published in between, or when the time it gave has passed; its key with
// another request, or for another kind of version, is refused.
func TestCatalogAddRetries(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cat := e.catalog(t)
	rule := func(key, share string) *pb.AddShareRuleRequest {
		return &pb.AddShareRuleRequest{IdempotencyKey: key, Creator: "star", CreatorShare: share,
			HoldingPeriod: durationpb.New(time.Hour), DiamondValue: usd("0.005")}
	}
	first, err := cat.AddShareRule(ctx, rule("rule-a", "0.5"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cat.AddShareRule(ctx, rule("rule-b", "0.6")); err != nil {
		t.Fatal(err)
	}
	retry, err := cat.AddShareRule(ctx, rule("rule-a", "0.50"))
	if err != nil || !retry.EffectiveAt.AsTime().Equal(first.EffectiveAt.AsTime()) {
		t.Fatalf("retry: %v %v, want the first answer's effective time %v", retry, err, first.EffectiveAt.AsTime())
	}
	now, err := cat.GetShareRule(ctx, &pb.GetShareRuleRequest{Creator: "star"})
	if err != nil || now.Rule.CreatorShare != "0.6" {
		t.Fatalf("rule in force after the retry: %v %v, want the later 0.6", now, err)
	}

	other := rule("rule-a", "0.7")
	_, err = cat.AddShareRule(ctx, other)
	wantCode(t, "the key with other terms", err, codes.AlreadyExists)
	other = rule("rule-a", "0.5")
	other.EffectiveAt = timestamppb.New(time.Now().Add(time.Hour))
	_, err = cat.AddShareRule(ctx, other)
	wantCode(t, "the key with a time where the first left it to the server", err, codes.AlreadyExists)
	_, err = cat.AddGift(ctx, &pb.AddGiftRequest{IdempotencyKey: "rule-a", GiftId: "rose", Coins: 5})
	wantCode(t, "the key on another kind of version", err, codes.AlreadyExists)
	if !strings.Contains(status.Convert(err).Message(), "idempotency_key") {
		t.Errorf("the key on another kind of version: %v, want it to name idempotency_key", err)
	}

	at := time.Now().Add(200 * time.Millisecond)
	pack := &pb.AddCoinPackRequest{IdempotencyKey: "pack-a", PackId: "p10", Channel: pb.Channel_CHANNEL_WEB,
		EffectiveAt: timestamppb.New(at), Coins: 10, Prices: []*pb.Money{usd("0.99")}, FeeRate: "0.3"}
	if _, err := cat.AddCoinPack(ctx, pack); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(at) + 50*time.Millisecond)
	late, err := cat.AddCoinPack(ctx, pack)
	if err != nil || !late.EffectiveAt.AsTime().Equal(at.UTC().Truncate(time.Microsecond)) {
		t.Fatalf("retry once its time has passed: %v %v", late, err)
	}
	pack.IdempotencyKey = "pack-b"
	_, err = cat.AddCoinPack(ctx, pack)
	wantCode(t, "the same terms under a new key, effective in the past", err, codes.InvalidArgument)
}

// A health watcher (a client balancing over several servers) is told
// NOT_SERVING when the server shuts down, and its stream then ends: the
// drain does not wait for it until the deadline.
// Streams a client leaves open end when the server shuts down, instead of
// holding the drain to its deadline: a health watch once it has said
// NOT_SERVING, a reflection stream (as grpcurl opens) with Unavailable.
func TestShutdownEndsOpenStreams(t *testing.T) {
	tests := []struct {
		name string
		// open starts the stream and reads its first answer; last reads
		// what the stream says at shutdown.
		open func(t *testing.T, conn *grpc.ClientConn) (last func() error)
	}{
		{"health watch", func(t *testing.T, conn *grpc.ClientConn) func() error {
			watch, err := healthpb.NewHealthClient(conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("first status: %v %v", r, err)
			}
			return func() error {
				if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
					return fmt.Errorf("status at shutdown: %v %v, want NOT_SERVING", r, err)
				}
				return nil
			}
		}},
		{"reflection", func(t *testing.T, conn *grpc.ClientConn) func() error {
			stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			ask := &reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}
			if err := stream.Send(ask); err != nil {
				t.Fatal(err)
			}
			if r, err := stream.Recv(); err != nil || len(r.GetListServicesResponse().GetService()) == 0 {
				t.Fatalf("services: %v %v", r, err)
			}
			return func() error {
				if r, err := stream.Recv(); status.Code(err) != codes.Unavailable {
					return fmt.Errorf("reflection at shutdown: %v %v, want Unavailable", r, err)
				}
				return nil
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			last := tt.open(t, e.dial(t, "tok-fin-0123456789"))
			const drain = 10 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), drain)
			defer cancel()
			start := time.Now()
			stopped := make(chan time.Duration)
			go func() { e.srv.Shutdown(ctx); stopped <- time.Since(start) }()
			if err := last(); err != nil {
				t.Error(err)
			}
			if took := <-stopped; took > drain/2 {
				t.Errorf("shutdown took %s with a %s stream open (drain %s)", took, tt.name, drain)
			}
		})
	}
}

// Shutting down while gifts are in flight loses no acknowledged gift: every
// key a caller saw succeed is in the ledger.
func TestGracefulShutdown(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	for i := range 8 {
		e.buy(t, "v"+string(rune('a'+i)), "tx-"+string(rune('a'+i)))
	}
	client := e.gifts(t)
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			viewer := "v" + string(rune('a'+i))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				key := viewer + "-" + time.Now().Format("150405.000000") + "-" + string(rune('a'+n%26))
				_, err := client.SendGift(context.Background(), &pb.SendGiftRequest{IdempotencyKey: key, Viewer: viewer, Creator: "star", Coins: 1, StreamId: "s", SentAt: timestamppb.Now()})
				if err == nil {
					mu.Lock()
					acked = append(acked, key)
					mu.Unlock()
				} else if c := status.Code(err); c != codes.Unavailable && c != codes.Canceled {
					t.Errorf("gift during shutdown: %v", err)
					return
				}
			}
		}()
	}
	// Shut down mid-storm: once gifts are being acknowledged, however slow
	// the machine (a fixed 300 ms could pass before the first).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d gifts acknowledged in 30 s", n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	e.srv.Shutdown(ctx)
	cancel()
	close(stop)
	wg.Wait()
	if err := <-e.done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		t.Errorf("serve: %v", err)
	}
	if len(acked) == 0 {
		t.Fatal("no gift was acknowledged before the shutdown")
	}
	for _, k := range acked {
		if _, err := e.svc.TransactionByKey(context.Background(), "gift:"+k); err != nil {
			t.Errorf("acknowledged gift %s is not in the ledger: %v", k, err)
		}
	}
	t.Logf("%d gifts acknowledged before the shutdown, all in the ledger", len(acked))
}

// Requests over the message or header limits are refused before any handler
// runs; requests under them are served.
func TestSizeLimits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	wallets := e.gifts(t)
	_, err := wallets.SendGift(ctx, &pb.SendGiftRequest{IdempotencyKey: "big", Viewer: "v", Creator: "c", Coins: 1,
		StreamId: strings.Repeat("s", 2<<20), SentAt: timestamppb.Now()})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("2 MiB request: %v, want ResourceExhausted", err)
	}
	padded := func(n int) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "x-padding", strings.Repeat("p", n))
	}
	if _, err := wallets.GetWallet(padded(4<<10), &pb.GetWalletRequest{User: "v"}); err != nil {
		t.Errorf("4 KiB of metadata: %v", err)
	}
	if _, err := wallets.GetWallet(padded(64<<10), &pb.GetWalletRequest{User: "v"}); err == nil {
		t.Error("64 KiB of metadata was served")
	} else {
		t.Logf("64 KiB of metadata: %v", err)
	}
	// The connection is still good afterwards.
	if _, err := wallets.GetWallet(ctx, &pb.GetWalletRequest{User: "v"}); err != nil {
		t.Errorf("after the refusals: %v", err)
	}
}

// A connection has at most MaxStreams requests in flight: with one, the
// gifts of eight concurrent callers on one connection reach the ledger one
// at a time, each a commit batch of its own.
func TestStreamLimit(t *testing.T) {
	e := newEnv(t, func(c *api.Config) { c.MaxStreams = 1 })
	e.seed(t)
	const callers, giftsEach = 8, 4
	before := e.srv.CommitStats()
	<-e.giftStorm(t, "streams", callers, giftsEach, 5)
	after := e.srv.CommitStats()
	// Each viewer's purchase, then its gifts.
	if batches, requests := after.Batches-before.Batches, after.Requests-before.Requests; requests != callers*(1+giftsEach) || batches != requests {
		t.Errorf("%d requests in %d batches, want %d one a batch", requests, batches, callers*(1+giftsEach))
	}
}

// rawCodec sends bytes as they are, for a request no protobuf library
// would encode.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *v.(*[]byte) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

// A request that cannot be decoded is bad input, not a server fault: gRPC
// answers it Internal before any interceptor runs.
func TestUndecodableRequest(t *testing.T) {
	e := newEnv(t)
	conn := e.dial(t, "tok-gift-0123456789")
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"idempotency_key not UTF-8", []byte{0x0a, 0x02, 0xff, 0xfe}},
		{"truncated", []byte{0x0a, 0x05, 'a'}},
	} {
		var out []byte
		err := conn.Invoke(context.Background(), "/coinledger.v1.GiftService/SendGift", c.body, &out, grpc.ForceCodec(rawCodec{}))
		wantCode(t, c.name, err, codes.InvalidArgument)
	}
	rec := httptest.NewRecorder()
	e.srv.Metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := `coinledger_rpc_requests_total{method="/coinledger.v1.GiftService/SendGift",code="InvalidArgument"} 2`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics lack %s", want)
	}
}

// The metrics page counts RPCs by method and code, times them, and counts
// the ledger's commit batches and the requests they carried.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.seed(t)
	e.buy(t, "ann", "m-1")
	e.buy(t, "ann", "m-2")
	_, err := e.gifts(t).SendGift(context.Background(), &pb.SendGiftRequest{IdempotencyKey: "m-g", Viewer: "ann", Creator: "nobody", GiftId: "rose"})
	wantCode(t, "gift to an unknown creator", err, codes.InvalidArgument)
	page := func() string {
		rec := httptest.NewRecorder()
		e.srv.Metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	body := page()
	for _, want := range []string{
		`coinledger_rpc_requests_total{method="/coinledger.v1.PurchaseService/Purchase",code="OK"} 2`,
		`coinledger_rpc_requests_total{method="/coinledger.v1.GiftService/SendGift",code="InvalidArgument"} 1`,
		`coinledger_rpc_duration_seconds_count{method="/coinledger.v1.PurchaseService/Purchase"} 2`,
		`coinledger_rpc_duration_seconds_bucket{method="/coinledger.v1.PurchaseService/Purchase",le="+Inf"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	metric := func(body, name string) float64 {
		t.Helper()
		for line := range strings.Lines(body) {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					t.Fatal(err)
				}
				return f
			}
		}
		t.Fatalf("metrics lack %s", name)
		return 0
	}
	// A purchase by itself is one request in one batch.
	before := e.svc.CommitStats()
	e.buy(t, "bob", "m-3")
	after := page()
	stats := e.svc.CommitStats().Sub(before)
	if stats.Batches != 1 || stats.Requests != 1 || stats.Committing <= 0 {
		t.Errorf("one purchase alone: %+v, want one batch of one request", stats)
	}
	if b, r := metric(after, "coinledger_commit_batches_total"), metric(after, "coinledger_commit_batched_requests_total"); b < 3 || r < b {
		t.Errorf("commit batches %v carrying %v requests, want at least 3 carrying as many", b, r)
	}
	if s := metric(after, "coinledger_commit_seconds_total"); s <= 0 {
		t.Errorf("commit seconds %v", s)
	}
	if d, want := metric(after, "coinledger_commit_deferred_total"), e.svc.CommitStats().Deferred; d != float64(want) {
		t.Errorf("deferred %v on the page, %d counted", d, want)
	}
}
