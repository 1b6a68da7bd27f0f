package economy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
	"github.com/coinledger/coinledger/ledger/postgres"
)

func TestLiveShoppingSale(t *testing.T) {
	db, _ := dbtest.Postgres().Open(t, postgres.Config{})
	clock := func() time.Time { return t0 }
	svc := ledger.NewService(db, ledger.Options{Clock: clock})
	t.Cleanup(svc.Close)
	cat := economy.NewCatalog(db, clock)
	eco := economy.New(svc, cat, clock)
	ctx := context.Background()
	if err := eco.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	session := economy.LiveSession{ID: "s1", Seller: "shop-9", Partner: "tsl", PlatformRate: dec("0.08"), PartnerShare: dec("0.10")}
	if _, err := cat.AddLiveSession(ctx, session); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.AddLiveSession(ctx, session); err != nil {
		t.Fatalf("same terms again: %v", err)
	}
	other := session
	other.PartnerShare = dec("0.2")
	if _, err := cat.AddLiveSession(ctx, other); !errors.Is(err, economy.ErrVersionExists) || ledger.FieldOf(err) != "session_id" {
		t.Fatalf("other terms for a session: %v", err)
	}
	noPartner := economy.LiveSession{ID: "s2", Seller: "shop-9", PlatformRate: dec("0.05")}
	if _, err := cat.AddLiveSession(ctx, noPartner); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		req  economy.LiveSaleRequest
		want string
	}{
		{"8% platform, 10% partner of 49.99: 4.00 and 5.00, seller 40.99", economy.LiveSaleRequest{OrderID: "o1", SessionID: "s1", Amount: dec("49.99"), Currency: "USD", SoldAt: t0},
			"credit Liability:PartnerPayable:tsl:USD 5; credit Liability:SellerPayable:shop-9:USD 40.99; credit Revenue:LiveShopping:USD 4; debit Clearing:PSP:stripe:USD 49.99"},
		{"JPY, scale 0: 8% of 1,999 is 159.92 -> 160, 10% is 199.9 -> 200", economy.LiveSaleRequest{OrderID: "o2", SessionID: "s1", Amount: dec("1999"), Currency: "JPY", SoldAt: t0},
			"credit Liability:PartnerPayable:tsl:JPY 200; credit Liability:SellerPayable:shop-9:JPY 1639; credit Revenue:LiveShopping:JPY 160; debit Clearing:PSP:stripe:JPY 1999"},
		{"no partner", economy.LiveSaleRequest{OrderID: "o3", SessionID: "s2", Amount: dec("10.00"), Currency: "USD", SoldAt: t0},
			"credit Liability:SellerPayable:shop-9:USD 9.5; credit Revenue:LiveShopping:USD 0.5; debit Clearing:PSP:stripe:USD 10"},
	}
	for _, tt := range tests {
		tx, err := eco.RecordLiveSale(ctx, tt.req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := postings(tx); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
	again, err := eco.RecordLiveSale(ctx, tests[0].req)
	if err != nil || !again.Replayed {
		t.Fatalf("repeated order: %+v %v", again, err)
	}
	for _, bad := range []struct {
		req   economy.LiveSaleRequest
		kind  ledger.Kind
		field string
	}{
		{economy.LiveSaleRequest{OrderID: "o9", SessionID: "nope", Amount: dec("1"), Currency: "USD", SoldAt: t0}, ledger.NotFound, "session_id"},
		// A NUL reached the session's query and failed there (FuzzRequests).
		{economy.LiveSaleRequest{OrderID: "o9", SessionID: "s\x00", Amount: dec("1"), Currency: "USD", SoldAt: t0}, ledger.Invalid, "session_id"},
		{economy.LiveSaleRequest{OrderID: "o9", SessionID: "s1", Amount: dec("1.001"), Currency: "USD", SoldAt: t0}, ledger.Invalid, "amount"},
		{economy.LiveSaleRequest{OrderID: "o9", SessionID: "s1", Amount: dec("1"), Currency: "XXX", SoldAt: t0}, ledger.Invalid, "currency"},
		{economy.LiveSaleRequest{OrderID: "o9", SessionID: "s1", Amount: dec("100"), Currency: economy.Coin, SoldAt: t0}, ledger.Invalid, "currency"},
		{economy.LiveSaleRequest{OrderID: "o9", SessionID: "s1", Amount: dec("100"), Currency: economy.Diamond, SoldAt: t0}, ledger.Invalid, "currency"},
		{economy.LiveSaleRequest{OrderID: "o9", SessionID: "s1", Amount: dec("1"), Currency: "USD"}, ledger.Invalid, "sold_at"},
		{economy.LiveSaleRequest{OrderID: "o1", SessionID: "s1", Amount: dec("50"), Currency: "USD", SoldAt: t0}, ledger.Conflict, "idempotency_key"},
	} {
		if _, err := eco.RecordLiveSale(ctx, bad.req); ledger.KindOf(err) != bad.kind || ledger.FieldOf(err) != bad.field {
			t.Errorf("%+v: got %v (kind %v, field %q)", bad.req, err, ledger.KindOf(err), ledger.FieldOf(err))
		}
	}
	for _, bad := range []struct {
		s     economy.LiveSession
		field string
	}{
		{economy.LiveSession{ID: "x", Seller: "a", PlatformRate: dec("0.5"), Partner: "p", PartnerShare: dec("0.5")}, "partner_share"},
		{economy.LiveSession{ID: "x", Seller: "a", PartnerShare: dec("0.1")}, "partner_share"},
		{economy.LiveSession{ID: "x", Seller: "", PlatformRate: dec("0.1")}, "seller"},
		{economy.LiveSession{ID: "x", Seller: "a", PlatformRate: dec("-0.1")}, "platform_rate"},
	} {
		if _, err := cat.AddLiveSession(ctx, bad.s); ledger.KindOf(err) != ledger.Invalid || ledger.FieldOf(err) != bad.field {
			t.Errorf("%+v: got %v", bad.s, err)
		}
	}
	if r, err := svc.Verify(ctx); err != nil || !r.Clean() {
		t.Fatalf("verify: %v %+v", err, r)
	}
}
