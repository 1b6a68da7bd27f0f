package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/postgres"
)

// lotEnv: a coin wallet whose coins are bought in lots carrying deferred
// revenue in USD or EUR, and revenue accounts that relief moves value into.
func lotEnv(t *testing.T, b *dbtest.Backend) *env {
	e := newEnv(t, b, ledger.Options{})
	if _, err := e.svc.CreateAsset(context.Background(), ledger.Asset{Code: "EUR", Scale: 2}); err != nil {
		t.Fatal(err)
	}
	e.account("issued", "COIN", true, 4)
	e.account("wallet", "COIN", false, 1)
	e.account("burned", "COIN", true, 1)
	for _, cur := range []string{"USD", "EUR"} {
		e.account("cash:"+cur, cur, true, 1)
		e.account("deferred:"+cur, cur, true, 4)
		e.account("revenue:"+cur, cur, true, 4)
	}
	return e
}

func buyLot(key string, coins int64, cur, value string) ledger.PostRequest {
	return ledger.PostRequest{IdempotencyKey: key, Kind: "purchase", OpenLot: &ledger.LotOpen{UnitsPosting: 1, ValuePosting: 3},
		Postings: []ledger.PostingRequest{
			{Account: "issued", Side: ledger.Debit, Amount: decimal.NewFromInt(coins)},
			{Account: "wallet", Side: ledger.Credit, Amount: decimal.NewFromInt(coins)},
			{Account: "cash:" + cur, Side: ledger.Debit, Amount: decimal.RequireFromString(value)},
			{Account: "deferred:" + cur, Side: ledger.Credit, Amount: decimal.RequireFromString(value)},
		}}
}

var legs = map[string]ledger.ReliefLeg{
	"USD": {From: "deferred:USD", To: "revenue:USD"},
	"EUR": {From: "deferred:EUR", To: "revenue:EUR"},
}

func spend(key string, coins int64) ledger.PostRequest {
	n := decimal.NewFromInt(coins)
	return ledger.PostRequest{IdempotencyKey: key, Kind: "spend",
		Relieve: &ledger.Relief{Account: "wallet", Units: n, Legs: legs},
		Postings: []ledger.PostingRequest{
			{Account: "wallet", Side: ledger.Debit, Amount: n},
			{Account: "burned", Side: ledger.Credit, Amount: n},
		}}
}

// withLegs is a 1-coin spend relieved through other legs.
func withLegs(key string, l map[string]ledger.ReliefLeg) ledger.PostRequest {
	r := spend(key, 1)
	r.Relieve.Legs = l
	return r
}

// laterLegs name a USD revenue account created only after they were refused.
var laterLegs = map[string]ledger.ReliefLeg{"USD": {From: "deferred:USD", To: "later:USD"}, "EUR": legs["EUR"]}

func legsOf(tx *ledger.Transaction) string {
	var out []string
	for _, p := range tx.Postings[2:] {
		out = append(out, fmt.Sprintf("%s %s %s", p.Side, p.Account, p.Amount))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

func TestLotsFIFO(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := lotEnv(t, b)
		ctx := context.Background()
		lotA := e.post(buyLot("buy-a", 3, "USD", "1.00"))
		e.post(buyLot("buy-b", 10, "EUR", "5.00"))
		if !lotA.MovesLots {
			t.Fatal("a lot-opening transaction must say it moves lots")
		}
		steps := []struct {
			coins int64
			legs  string
		}{
			// 1 of A's 3 units: 1.00 x 1/3 = 0.333 -> 0.33.
			{1, "credit revenue:USD 0.33; debit deferred:USD 0.33"},
			// 1 of 2 left: 0.67 x 1/2 = 0.335 -> 0.34 (half up).
			{1, "credit revenue:USD 0.34; debit deferred:USD 0.34"},
			// A's last unit takes what is left (0.33), then 2 of B's 10: 5.00 x 2/10 = 1.00.
			{3, "credit revenue:EUR 1; credit revenue:USD 0.33; debit deferred:EUR 1; debit deferred:USD 0.33"},
		}
		for i, s := range steps {
			tx := e.post(spend(fmt.Sprintf("spend-%d", i), s.coins))
			if got := legsOf(tx); got != s.legs {
				t.Errorf("step %d:\n got %s\nwant %s", i, got, s.legs)
			}
		}
		e.wantBalance("deferred:USD", "0")
		e.wantBalance("revenue:USD", "1")
		e.wantBalance("deferred:EUR", "4")
		e.wantBalance("wallet", "8")

		// A replay answers with the original legs.
		again := e.post(spend("spend-2", 3))
		if !again.Replayed || legsOf(again) != steps[2].legs {
			t.Errorf("replayed relief: %v %s", again.Replayed, legsOf(again))
		}
		refusals := []struct {
			name  string
			req   ledger.PostRequest
			is    error
			field string
		}{
			// The holder's balance is checked before its lots: it is the reason.
			{"more than the lots hold", spend("over", 9), ledger.ErrInsufficientFunds, "postings[0].account"},
			{"units differ from the debit", func() ledger.PostRequest {
				r := spend("mismatch", 2)
				r.Relieve.Units = decimal.NewFromInt(1)
				return r
			}(), nil, "relieve.units"},
			{"no leg for the lot's asset", func() ledger.PostRequest {
				r := spend("no-eur", 1)
				r.Relieve.Legs = map[string]ledger.ReliefLeg{"USD": legs["USD"]}
				return r
			}(), nil, "relieve.legs"},
			// Legs are checked on every request, whatever legs came before.
			{"a leg between other assets", withLegs("cross", map[string]ledger.ReliefLeg{
				"USD": {From: "deferred:EUR", To: "revenue:EUR"}, "EUR": legs["EUR"]}), nil, "relieve.legs[USD]"},
			{"a leg to an unknown account", withLegs("unknown", laterLegs), ledger.ErrAccountNotFound, "relieve.legs[USD].to"},
			{"open and relieve at once", func() ledger.PostRequest {
				r := spend("both", 1)
				r.OpenLot = &ledger.LotOpen{UnitsPosting: 1, ValuePosting: 1}
				return r
			}(), nil, "open_lot"},
			{"lot value in the units' asset", func() ledger.PostRequest {
				r := buyLot("bad-open", 1, "USD", "1")
				r.OpenLot.ValuePosting = 1
				return r
			}(), nil, "open_lot.value_posting"},
		}
		for _, r := range refusals {
			_, err := e.svc.Post(ctx, r.req)
			if ledger.FieldOf(err) != r.field || (r.is != nil && !errors.Is(err, r.is)) || (r.is == nil && ledger.KindOf(err) != ledger.Invalid) {
				t.Errorf("%s: %v (field %q)", r.name, err, ledger.FieldOf(err))
			}
		}
		// A refusal is not remembered: once the account exists, the same legs resolve.
		e.account("later:USD", "USD", true, 1)
		if tx := e.post(withLegs("later", laterLegs)); legsOf(tx) != "credit revenue:EUR 0.5; debit deferred:EUR 0.5" {
			t.Errorf("relief through legs refused before: %s", legsOf(tx))
		}
		if _, err := e.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: "undo-a", TransactionID: lotA.ID}); ledger.KindOf(err) != ledger.FailedPrecondition {
			t.Errorf("reversing a lot-opening transaction: %v", err)
		}
		e.verifyClean()
	})
}

// A relief locks only the legs of the currencies its holder's lots were in
// when a batch last read them, plus those of lots bought through the same
// service since. A lot bought elsewhere (another process) in another
// currency defers the relief once, to a batch with every leg.
func TestReliefGuessesLotCurrencies(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := lotEnv(t, b)
		deferred := func() uint64 { return e.svc.CommitStats().Deferred }
		e.post(buyLot("buy-usd", 3, "USD", "3.00"))
		e.post(spend("s1", 1)) // nothing guessed yet: every leg; learns USD
		elsewhere := ledger.NewService(e.db, ledger.Options{})
		defer elsewhere.Close()
		if _, err := elsewhere.Post(context.Background(), buyLot("buy-eur", 10, "EUR", "5.00")); err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			key      string
			coins    int64
			legs     string
			deferred uint64
		}{
			// USD guessed, the EUR lot is reached: deferred, then posted whole.
			{"s2", 3, "credit revenue:EUR 0.5; credit revenue:USD 2; debit deferred:EUR 0.5; debit deferred:USD 2", 1},
			// That batch read the EUR lot: guessed right.
			{"s3", 1, "credit revenue:EUR 0.5; debit deferred:EUR 0.5", 1},
		}
		for _, s := range steps {
			tx := e.post(spend(s.key, s.coins))
			if got := legsOf(tx); got != s.legs || deferred() != s.deferred {
				t.Errorf("%s: %s, %d deferred\nwant %s, %d deferred", s.key, got, deferred(), s.legs, s.deferred)
			}
		}
		// A lot bought through this service joins the guess.
		e.post(buyLot("buy-usd-2", 2, "USD", "2.00"))
		if got := legsOf(e.post(spend("s4", 9))); got != "credit revenue:EUR 4; credit revenue:USD 1; debit deferred:EUR 4; debit deferred:USD 1" || deferred() != 1 {
			t.Errorf("s4: %s, %d deferred", got, deferred())
		}
		if again := e.post(spend("s2", 3)); !again.Replayed || legsOf(again) != steps[0].legs {
			t.Errorf("replay of the deferred spend: %v %s", again.Replayed, legsOf(again))
		}
		e.wantBalance("deferred:USD", "1") // one unit of buy-usd-2 is left
		e.wantBalance("deferred:EUR", "0")
		e.verifyClean()
	})
}

// A batch reads a holder's oldest ledger.LotsRead open lots, not all of them:
// a relief that needs more is deferred to a round that reads sixteen times as
// many, as often as it takes, and still takes them oldest first. (On CockroachDB a batch reads every open
// lot, so nothing is deferred there.)
func TestReliefReadsOldestLots(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := lotEnv(t, b)
		ctx := context.Background()
		deferred := func() uint64 { return e.svc.CommitStats().Deferred }
		lots := ledger.LotsRead + 6
		ids := make([]uuid.UUID, lots)
		for i := range lots { // one coin each, worth i+1 cents
			ids[i] = e.post(buyLot(fmt.Sprintf("buy-%d", i), 1, "USD", decimal.New(int64(i+1), -2).String())).ID
		}
		steps := []struct {
			key      string
			coins    int64
			legs     string
			deferred uint64
		}{
			// Lots 1-3, all among the oldest read.
			{"s1", 3, "credit revenue:USD 0.06; debit deferred:USD 0.06", 0},
			// Lots 4 to LotsRead+4, one more than a batch reads: deferred.
			{"s2", int64(ledger.LotsRead) + 1, sumCents(4, ledger.LotsRead+4), 1},
			// The two left.
			{"s3", 2, sumCents(ledger.LotsRead+5, ledger.LotsRead+6), 1},
		}
		var s2 *ledger.Transaction
		for _, s := range steps {
			if b.Name == "cockroach" {
				s.deferred = 0
			}
			tx := e.post(spend(s.key, s.coins))
			if got := legsOf(tx); got != s.legs || deferred() != s.deferred {
				t.Errorf("%s: %s, %d deferred\nwant %s, %d deferred", s.key, got, deferred(), s.legs, s.deferred)
			}
			if s.key == "s2" {
				s2 = tx
			}
		}
		// Undoing s2 reopens its lots, more than a batch reads: spending them
		// again is deferred again and takes them oldest first.
		if _, err := e.svc.Reverse(ctx, ledger.ReverseRequest{IdempotencyKey: "undo-s2", TransactionID: s2.ID}); err != nil {
			t.Fatal(err)
		}
		want, wantDeferred := sumCents(4, ledger.LotsRead+4), uint64(2)
		if b.Name == "cockroach" {
			wantDeferred = 0
		}
		if got := legsOf(e.post(spend("s2-again", int64(ledger.LotsRead)+1))); got != want || deferred() != wantDeferred {
			t.Errorf("s2-again: %s, %d deferred\nwant %s, %d deferred", got, deferred(), want, wantDeferred)
		}
		for i, id := range ids {
			l, err := e.svc.Lot(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if !l.UnitsLeft.IsZero() || !l.ValueLeft.IsZero() {
				t.Errorf("lot %d: %s units and %s value left", i+1, l.UnitsLeft, l.ValueLeft)
			}
		}
		if _, err := e.svc.Post(ctx, spend("s4", 1)); !errors.Is(err, ledger.ErrInsufficientFunds) {
			t.Errorf("spend from an empty wallet: %v", err)
		}
		// A relief needing more than the widened read is deferred again:
		// 300 lots, one read of 16, one of 256, then one of 4,096.
		for i := range 300 {
			e.post(buyLot(fmt.Sprintf("small-%d", i), 1, "USD", "0.01"))
		}
		want, wantDeferred = "credit revenue:USD 2.6; debit deferred:USD 2.6", wantDeferred+2
		if b.Name == "cockroach" {
			wantDeferred = 0
		}
		if got := legsOf(e.post(spend("s5", 260))); got != want || deferred() != wantDeferred {
			t.Errorf("s5: %s, %d deferred\nwant %s, %d deferred", got, deferred(), want, wantDeferred)
		}
		e.verifyClean()
	})
}

// sumCents is the relief legs of lots first to last (1-based), lot i being
// worth i cents.
func sumCents(first, last int) string {
	v := decimal.New(int64((first+last)*(last-first+1)/2), -2)
	return fmt.Sprintf("credit revenue:USD %s; debit deferred:USD %s", v, v)
}

// Concurrent spends from one wallet while more lots are bought: every unit is
// relieved once, each lot's value exactly once in all, and verify's lot
// checks hold.
func TestLotsUnderConcurrency(t *testing.T) {
	e := lotEnv(t, dbtest.Postgres())
	e.post(buyLot("buy-0", 7, "USD", "2.99"))
	var wg sync.WaitGroup
	var mu sync.Mutex
	spent, refused := 0, 0
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 12 {
				if w == 0 && i%3 == 0 {
					e.post(buyLot(fmt.Sprintf("buy-%d", i+1), 5, []string{"USD", "EUR"}[i%2], "1.01"))
					continue
				}
				_, err := e.svc.Post(context.Background(), spend(fmt.Sprintf("s-%d-%d", w, i), 1))
				mu.Lock()
				switch {
				case err == nil:
					spent++
				case ledger.KindOf(err) == ledger.InsufficientFunds:
					refused++
				default:
					t.Errorf("spend: %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	bought := 7 + 4*5
	t.Logf("%d coins spent, %d spends refused", spent, refused)
	if spent > bought {
		t.Fatalf("spent %d of %d coins bought, %d refused", spent, bought, refused)
	}
	e.wantBalance("wallet", fmt.Sprint(bought-spent))
	e.verifyClean()
	// Spend the rest: every lot's whole value ends up in revenue.
	if rest := bought - spent; rest > 0 {
		e.post(spend("rest", int64(rest)))
	}
	e.wantBalance("deferred:USD", "0")
	e.wantBalance("deferred:EUR", "0")
	e.wantBalance("revenue:USD", "5.01") // 2.99 + 2 x 1.01
	e.wantBalance("revenue:EUR", "2.02")
	e.verifyClean()
}

func TestVerifyDetectsLotTampering(t *testing.T) {
	e := lotEnv(t, dbtest.Postgres())
	e.post(buyLot("buy", 10, "USD", "5.00"))
	e.post(spend("spend", 4))
	e.verifyClean()
	ctx := context.Background()
	owner := e.owner()
	if _, err := owner.Exec(ctx, "UPDATE lots SET units_left = units_left + 1, value_left = value_left + 0.5"); err != nil {
		t.Fatal(err)
	}
	r, err := e.svc.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, v := range r.Violations {
		found[v.Check] = true
	}
	for _, c := range []string{ledger.CheckLotUnits, ledger.CheckLotValue, ledger.CheckLotRelief} {
		if !found[c] {
			t.Errorf("verify did not report %s: %+v", c, r.Violations)
		}
	}
}

// giftFrom burns coins from promo first, spilling onto the paid wallet, whose
// lots are relieved for exactly the part that spilled.
func giftFrom(key string, coins int64) ledger.PostRequest {
	n := decimal.NewFromInt(coins)
	return ledger.PostRequest{IdempotencyKey: key, Kind: "gift",
		Relieve: &ledger.Relief{Account: "wallet", Legs: legs},
		Postings: []ledger.PostingRequest{
			{Account: "promo", Side: ledger.Debit, Amount: n, SpillTo: "wallet"},
			{Account: "burned", Side: ledger.Credit, Amount: n},
		}}
}

func TestSpillPromoFirst(t *testing.T) {
	dbtest.Backends(t, func(t *testing.T, b *dbtest.Backend) {
		e := lotEnv(t, b)
		ctx := context.Background()
		e.account("promo", "COIN", false, 1)
		e.post(transfer("promo-30", "issued", "promo", "30"))
		e.post(buyLot("buy", 100, "USD", "10.00"))
		for _, step := range []struct {
			key      string
			coins    int64
			postings string
		}{
			// 30 from promo, 20 spill onto the wallet: 20 of the lot's 100 units, 2.00.
			{"g1", 50, "credit burned 50; credit revenue:USD 2; debit deferred:USD 2; debit promo 30; debit wallet 20"},
			// Promo is empty: the whole debit moves to the wallet.
			{"g2", 10, "credit burned 10; credit revenue:USD 1; debit deferred:USD 1; debit wallet 10"},
		} {
			tx := e.post(giftFrom(step.key, step.coins))
			var got []string
			for _, p := range tx.Postings {
				got = append(got, fmt.Sprintf("%s %s %s", p.Side, p.Account, p.Amount))
			}
			sort.Strings(got)
			if strings.Join(got, "; ") != step.postings {
				t.Errorf("%s:\n got %s\nwant %s", step.key, strings.Join(got, "; "), step.postings)
			}
			if again := e.post(giftFrom(step.key, step.coins)); !again.Replayed || len(again.Postings) != len(tx.Postings) {
				t.Errorf("%s replayed: %+v", step.key, again)
			}
		}
		// Promo covers it all: no paid coins, no relief.
		e.post(transfer("promo-5", "issued", "promo", "5"))
		if tx := e.post(giftFrom("g3", 5)); len(tx.Postings) != 2 {
			t.Errorf("all-promo gift posted %+v", tx.Postings)
		}
		e.wantBalance("wallet", "70")
		e.wantBalance("deferred:USD", "7")
		if _, err := e.svc.Post(ctx, giftFrom("g4", 71)); ledger.KindOf(err) != ledger.InsufficientFunds {
			t.Errorf("gift beyond promo and lots: %v", err)
		}
		bad := giftFrom("g5", 1)
		bad.Relieve.Units = decimal.NewFromInt(1)
		if _, err := e.svc.Post(ctx, bad); ledger.FieldOf(err) != "relieve.units" {
			t.Errorf("explicit units with a spill: %v", err)
		}
		bad = giftFrom("g6", 1)
		bad.Postings[0].Side, bad.Postings[1].Side = ledger.Credit, ledger.Debit
		if _, err := e.svc.Post(ctx, bad); ledger.FieldOf(err) != "postings[0].spill_to" {
			t.Errorf("spill on a credit: %v", err)
		}
		e.verifyClean()
	})
}

// Concurrent gifts by one viewer never refuse while promo and lots together
// still hold enough, and spend exactly what there was.
func TestSpillUnderConcurrency(t *testing.T) {
	e := lotEnv(t, dbtest.Postgres())
	e.account("promo", "COIN", false, 1)
	e.post(transfer("promo-30", "issued", "promo", "30"))
	e.post(buyLot("buy-1", 60, "USD", "6.00"))
	e.post(buyLot("buy-2", 40, "EUR", "4.00"))
	var wg sync.WaitGroup
	errs := make([]error, 26)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.svc.Post(context.Background(), giftFrom(fmt.Sprintf("g%d", i), 5))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("gift %d of 26 x 5 = 130 coins held: %v", i, err)
		}
	}
	e.wantBalance("promo", "0")
	e.wantBalance("wallet", "0")
	e.wantBalance("revenue:USD", "6")
	e.wantBalance("revenue:EUR", "4")
	if _, err := e.svc.Post(context.Background(), giftFrom("one-more", 1)); ledger.KindOf(err) != ledger.InsufficientFunds {
		t.Errorf("gift with nothing left: %v", err)
	}
	e.verifyClean()
}

// The write path's lookups run while a batch holds its balance locks, so
// they must be keyed: no scan of a whole table, no hash or merge join over
// one, and no JIT compilation — in the generic plans the batch uses.
// Regression: the lot lookup by id was an OR over a subquery, which
// PostgreSQL can only answer by scanning every lot; forced off the scan, its
// cost passed jit_above_cost and each refund batch compiled for ~100 ms under
// its locks.
func TestWritePathPlansAreKeyed(t *testing.T) {
	e := newEnv(t, dbtest.Postgres(), ledger.Options{})
	ctx := context.Background()
	holder := e.account("plan:holder", "USD", false, 1)
	conn := e.owner()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, postgres.KeyedLookups); err != nil {
		t.Fatal(err)
	}
	// Enough lots that the planner's statistics are not empty.
	seedLots(t, tx, "plan-", holder.ID, 5000)
	if _, err := tx.Exec(ctx, `ANALYZE lots`); err != nil {
		t.Fatal(err)
	}
	// The batch's statements run with generic plans (KeyedLookups forces
	// them); EXPLAIN EXECUTE of a prepared statement shows that plan.
	for name, st := range postgres.KeyedStatements {
		if _, err := tx.Exec(ctx, "PREPARE "+name+" AS "+st.SQL); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		args := make([]string, len(st.Args))
		for i, a := range st.Args {
			args[i] = "'" + a + "'"
		}
		rows, err := tx.Query(ctx, "EXPLAIN (COSTS OFF) EXECUTE "+name+"("+strings.Join(args, ", ")+")", pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		text := strings.Join(plan, "\n")
		for _, bad := range []string{"Seq Scan on lots", "Seq Scan on balances", "Seq Scan on transactions", "Seq Scan on lot_reliefs", "Seq Scan on accounts", "Hash Join", "Merge Join", "JIT"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s: %s in its plan:\n%s", name, bad, text)
			}
		}
		// The holder's 5,000 lots: the oldest are read in index order and
		// the read stops at the limit, rather than sorting them all.
		if name == "lockOldestLots" && !regexp.MustCompile(`Limit\n(\s+->  LockRows\n)?\s+->  Index (Only )?Scan using lots_open_by_account`).MatchString(text) {
			t.Errorf("%s: its plan does not stop at the limit in index order:\n%s", name, text)
		}
	}
}

// Every gift relieves a lot. On PostgreSQL that update is in place (HOT):
// no index of lots covers what a relief changes, and the table leaves room
// on its pages. The balance rows every batch updates get room too. Checked
// on a relief done by hand and rolled back, counted by the database.
func TestReliefsUpdateLotsInPlace(t *testing.T) {
	e := lotEnv(t, dbtest.Postgres())
	ctx := context.Background()
	lot := e.post(buyLot("buy", 10, "USD", "1.00"))
	e.post(spend("spend", 1))
	owner := e.owner()
	for table, want := range map[string]string{"lots": "fillfactor=70", "balances": "fillfactor=20"} {
		var opts []string
		if err := owner.QueryRow(ctx, "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = to_regclass($1)", table).Scan(&opts); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(opts, want) {
			t.Errorf("%s: storage options %v, want %s", table, opts, want)
		}
	}
	tx, err := owner.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "UPDATE lots SET units_left = units_left - 1, value_left = value_left - 0.1 WHERE id = $1", lot.ID); err != nil {
		t.Fatal(err)
	}
	var updated, inPlace int
	if err := tx.QueryRow(ctx, "SELECT pg_stat_get_xact_tuples_updated('lots'::regclass), pg_stat_get_xact_tuples_hot_updated('lots'::regclass)").Scan(&updated, &inPlace); err != nil {
		t.Fatal(err)
	}
	if updated != 1 || inPlace != 1 {
		t.Fatalf("a relief updated %d lot rows, %d of them in place; want 1 and 1", updated, inPlace)
	}
}

// Lot reliefs have no foreign keys (migration 0007); verify is what reports a
// relief whose transaction or lot is gone.
func TestVerifyDetectsOrphanRelief(t *testing.T) {
	const missing = "00000000-0000-0000-0000-0000000000bb"
	for _, tc := range []struct {
		name, tamper, subject string // {spend} stands for the spend's id
	}{
		{"transaction missing", "UPDATE lot_reliefs SET tx_id = '" + missing + "' WHERE tx_id = '{spend}'", missing},
		{"lot missing", "INSERT INTO lot_reliefs (tx_id, lot_id, units, value) VALUES ('{spend}', '" + missing + "', 1, 0)", "{spend}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := lotEnv(t, dbtest.Postgres())
			e.post(buyLot("buy", 10, "USD", "5.00"))
			spent := e.post(spend("spend", 4))
			e.verifyClean()
			ctx := context.Background()
			withSpend := strings.NewReplacer("{spend}", spent.ID.String())
			if _, err := e.owner().Exec(ctx, withSpend.Replace(tc.tamper)); err != nil {
				t.Fatal(err)
			}
			r, err := e.svc.Verify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := ledger.Violation{Check: ledger.CheckOrphanRelief, Subject: withSpend.Replace(tc.subject)}
			if len(r.Violations) != 1 || r.Violations[0].Check != want.Check || r.Violations[0].Subject != want.Subject {
				t.Fatalf("violations %+v, want one %s of %s", r.Violations, want.Check, want.Subject)
			}
		})
	}
}
