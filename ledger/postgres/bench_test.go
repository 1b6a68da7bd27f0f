package postgres_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
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
