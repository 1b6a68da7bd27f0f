package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/postgres"
)

// BenchmarkTransfer posts 1-unit transfers through the Go API from 32
// concurrent callers on a durable PostgreSQL (fsync on) on this machine.
//
//	go test -run '^$' -bench Transfer -benchtime 20000x -count 5 ./ledger/postgres/
func BenchmarkTransfer(b *testing.B) {
	cases := []struct {
		name       string
		dests      int
		destShards int
	}{
		{"spread-1000-to-1000", 1000, 1},
		{"hot-1000-to-1-sharded", 1, 8},
		{"hot-1000-to-1-unsharded", 1, 1},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { benchTransfers(b, c.dests, c.destShards, 0) })
	}
}

// BenchmarkTransferLanes compares commit-lane counts on the spread workload.
//
//	go test -run '^$' -bench TransferLanes -benchtime 20000x -count 5 ./ledger/postgres/
func BenchmarkTransferLanes(b *testing.B) {
	for _, lanes := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("lanes-%d", lanes), func(b *testing.B) { benchTransfers(b, 1000, 1, lanes) })
	}
}

// benchTransfers moves 0.01 USD from 1,000 funded sources to dests
// destinations (each spread over destShards balance rows).
func benchTransfers(b *testing.B, dests, destShards, lanes int) {
	e := newEnv(b, dbtest.Durable(b), ledger.Options{Lanes: lanes})
	ctx := context.Background()
	e.account("mint", "USD", true, 1)
	const sources = 1000
	dbtest.Fanout(sources, 32, func(i int) {
		src := fmt.Sprintf("src:%d", i)
		e.account(src, "USD", false, 1)
		if i < dests {
			e.account(fmt.Sprintf("dst:%d", i), "USD", false, destShards)
		}
		e.post(transfer("fund:"+src, "mint", src, "1000000"))
	})
	dbtest.ClosedLoop(b, 32, func(i int) error {
		_, err := e.svc.Post(ctx, transfer(fmt.Sprintf("b%d", i), fmt.Sprintf("src:%d", i%sources), fmt.Sprintf("dst:%d", i%dests), "0.01"))
		return err
	})
	e.verifyClean()
}

// BenchmarkGiftShape measures the ledger alone under a gift-like posting:
// 1,000 viewers, each holding a purchased lot, burn 1 coin each into one
// creator — coin burn with FIFO relief of deferred revenue into gift revenue,
// and a diamond minted into the creator's sharded pending account — 32
// concurrent callers, durable PostgreSQL. The full gift, through the economy,
// is BenchmarkSendGift in ledger/economy.
//
//	go test -run '^$' -bench GiftShape -benchtime 20000x -count 5 ./ledger/postgres/
func BenchmarkGiftShape(b *testing.B) {
	e := newEnv(b, dbtest.Durable(b), ledger.Options{})
	ctx := context.Background()
	if _, err := e.svc.CreateAsset(ctx, ledger.Asset{Code: "DIAMOND"}); err != nil {
		b.Fatal(err)
	}
	e.account("COIN:issued", "COIN", true, 8)
	e.account("DIAMOND:issued", "DIAMOND", true, 8)
	e.account("creator:pending", "DIAMOND", false, 8)
	e.account("cash", "JPY", true, 1)
	e.account("deferred", "JPY", true, 8)
	e.account("revenue", "JPY", true, 8)
	const viewers = 1000
	dbtest.Fanout(viewers, 32, func(i int) {
		w := fmt.Sprintf("wallet:%d", i)
		e.account(w, "COIN", false, 1)
		e.post(ledger.PostRequest{IdempotencyKey: "buy:" + w, Kind: "purchase", OpenLot: &ledger.LotOpen{UnitsPosting: 1, ValuePosting: 3},
			Postings: []ledger.PostingRequest{
				{Account: "COIN:issued", Side: ledger.Debit, Amount: decimal.NewFromInt(100000)},
				{Account: w, Side: ledger.Credit, Amount: decimal.NewFromInt(100000)},
				{Account: "cash", Side: ledger.Debit, Amount: decimal.NewFromInt(150000)},
				{Account: "deferred", Side: ledger.Credit, Amount: decimal.NewFromInt(150000)},
			}})
	})
	legs := map[string]ledger.ReliefLeg{"JPY": {From: "deferred", To: "revenue"}}
	one := decimal.NewFromInt(1)
	dbtest.ClosedLoop(b, 32, func(i int) error {
		w := fmt.Sprintf("wallet:%d", i%viewers)
		_, err := e.svc.Post(ctx, ledger.PostRequest{IdempotencyKey: fmt.Sprintf("g%d", i), Kind: "gift",
			Relieve: &ledger.Relief{Account: w, Units: one, Legs: legs},
			Postings: []ledger.PostingRequest{
				{Account: w, Side: ledger.Debit, Amount: one},
				{Account: "COIN:issued", Side: ledger.Credit, Amount: one},
				{Account: "DIAMOND:issued", Side: ledger.Debit, Amount: one},
				{Account: "creator:pending", Side: ledger.Credit, Amount: one},
			}})
		return err
	})
	e.verifyClean()
}

// BenchmarkLotReads times the statement a batch locks its reliefs' lots with:
// the oldest ledger.LotsRead of each holder (lockOldestLots, what a
// PostgreSQL batch runs) against every open lot (lockOpenLots, what a
// deferred round runs), for 13 holders (a gift batch's viewers) of 1 and of
// 1,000 open lots. Each read is one round trip of BEGIN, the batch's planner
// settings, the read and ROLLBACK, as a batch sends it; "none" is that round
// trip without the read.
//
//	go test -run '^$' -bench LotReads -count 5 ./ledger/postgres/
func BenchmarkLotReads(b *testing.B) {
	for _, lots := range []int{1, 1000} {
		b.Run(fmt.Sprintf("lots-%d", lots), func(b *testing.B) {
			e := newEnv(b, dbtest.Durable(b), ledger.Options{})
			ctx := context.Background()
			conn := e.owner()
			holders := make([]uuid.UUID, 13)
			for i := range holders {
				holders[i] = e.account(fmt.Sprintf("holder-%d", i), "COIN", false, 1).ID
				seedLots(b, conn, fmt.Sprintf("lots-%d-", i), holders[i], lots)
			}
			if _, err := conn.Exec(ctx, "VACUUM ANALYZE lots"); err != nil {
				b.Fatal(err)
			}
			for _, read := range []struct {
				name string
				sql  string
				args []any
				want int
			}{
				{"none", "", nil, 0},
				{"oldest", postgres.KeyedStatements["lockOldestLots"].SQL, []any{holders, ledger.LotsRead}, len(holders) * min(lots, ledger.LotsRead)},
				{"all", postgres.KeyedStatements["lockOpenLots"].SQL, []any{holders}, len(holders) * lots},
			} {
				b.Run(read.name, func(b *testing.B) {
					for b.Loop() {
						batch := &pgx.Batch{}
						batch.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
						batch.Queue(postgres.KeyedLookups)
						n := 0
						if read.sql != "" {
							batch.Queue(read.sql, read.args...).Query(func(rows pgx.Rows) error {
								for rows.Next() {
									n++
								}
								return rows.Err()
							})
						}
						batch.Queue("ROLLBACK")
						if err := conn.SendBatch(ctx, batch).Close(); err != nil {
							b.Fatal(err)
						}
						if n != read.want {
							b.Fatalf("read %d lots, want %d", n, read.want)
						}
					}
				})
			}
		})
	}
}

// BenchmarkBalanceAsOf reads a hot account's balance as of an hour, 12 hours
// and 23 hours ago, over a day of 200,000 entries (as of a gift storm's
// platform accounts): through Balance summing from the nearer end of the
// history, through Balance with a balance kept as of a minute later (by an
// earlier read), and by the forward sum alone (what Balance ran first, here
// planned for each instant as Balance's sums are).
//
//	go test -run '^$' -bench BalanceAsOf -count 5 ./ledger/postgres/
func BenchmarkBalanceAsOf(b *testing.B) {
	const entries = 200_000
	e := newEnv(b, dbtest.Durable(b), ledger.Options{})
	ctx := context.Background()
	hot := e.account("hot", "USD", true, 1)
	conn := e.owner()
	if _, err := conn.Exec(ctx, `
INSERT INTO entries (tx_id, idx, account_id, asset, side, amount, recorded_at, batch_seq)
SELECT gen_random_uuid(), 0, $1, 'USD', 'credit', 0.01, now() - make_interval(secs => g * 86400.0 / $2), 0
FROM generate_series(1, $2::int) g`, hot.ID, entries); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE balances SET balance = $2 WHERE account_id = $1`, hot.ID, decimal.New(entries, -2)); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE entries"); err != nil {
		b.Fatal(err)
	}
	balance := func(asOf time.Time) (decimal.Decimal, error) { return e.db.Balance(ctx, hot, asOf) }
	for _, ago := range []time.Duration{time.Hour, 12 * time.Hour, 23 * time.Hour} {
		asOf := time.Now().Add(-ago)
		forward := func() (decimal.Decimal, error) {
			var d decimal.Decimal
			var n int64
			err := conn.QueryRow(ctx, postgres.SumEntriesBetween, pgx.QueryExecModeExec, hot.ID, "credit", time.Unix(0, 0), asOf).Scan(&d, &n)
			return d, err
		}
		want, err := forward()
		if err != nil {
			b.Fatal(err)
		}
		for _, read := range []struct {
			name    string
			keep    bool // a balance kept as of a minute later
			balance func() (decimal.Decimal, error)
		}{
			{"nearer-end", false, func() (decimal.Decimal, error) { return balance(asOf) }},
			{"kept-a-minute-away", true, func() (decimal.Decimal, error) { return balance(asOf) }},
			{"forward", false, forward},
		} {
			if _, err := conn.Exec(ctx, "DELETE FROM balance_checkpoints"); err != nil {
				b.Fatal(err)
			}
			if read.keep {
				e.db.KeepBalancesAsOf(ledger.Settled, 1000)
				if _, err := balance(asOf.Add(time.Minute)); err != nil {
					b.Fatal(err)
				}
			}
			e.db.KeepBalancesAsOf(ledger.Settled, 1<<62) // the reads measured keep nothing
			b.Run(fmt.Sprintf("%s-ago/%s", strings.TrimSuffix(ago.String(), "0m0s"), read.name), func(b *testing.B) {
				for b.Loop() {
					if got, err := read.balance(); err != nil || !got.Equal(want) {
						b.Fatalf("balance %s, %v; want %s", got, err, want)
					}
				}
			})
		}
	}
}
