package postgres_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range sources {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			src := fmt.Sprintf("src:%d", i)
			e.account(src, "USD", false, 1)
			if i < dests {
				e.account(fmt.Sprintf("dst:%d", i), "USD", false, destShards)
			}
			e.post(transfer("fund:"+src, "mint", src, "1000000"))
		}()
	}
	wg.Wait()
	runClosedLoop(b, 32, func(i int) error {
		_, err := e.svc.Post(ctx, transfer(fmt.Sprintf("b%d", i), fmt.Sprintf("src:%d", i%sources), fmt.Sprintf("dst:%d", i%dests), "0.01"))
		return err
	})
	e.verifyClean()
}

// runClosedLoop runs b.N calls of op from callers goroutines, each waiting for
// its answer before the next, and reports throughput and latency percentiles.
func runClosedLoop(b *testing.B, callers int, op func(i int) error) {
	var next atomic.Int64
	lat := make([][]time.Duration, callers)
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					failed.Add(1)
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "tx/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(all[len(all)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(0, "ns/op")
}
