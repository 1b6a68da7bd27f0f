// Package loadgen drives a coinledger server over gRPC with a closed-loop
// workload, measures throughput and latency, and afterwards checks that the
// ledger verifies clean and holds every request it acknowledged.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/coinledger/coinledger/internal/par"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

// Workloads.
const (
	TransferSpread = "transfer-spread" // transfers between random pairs of many accounts
	TransferHot    = "transfer-hot"    // transfers from many accounts into one
	GiftHot        = "gift-hot"        // many viewers gift one creator
	Mixed          = "mixed"           // purchases, gifts, refunds and reads
)

// Workloads lists them in the order help shows them.
var Workloads = []string{TransferSpread, TransferHot, GiftHot, Mixed}

// CheckWorkload refuses a name that is not one of Workloads.
func CheckWorkload(name string) error {
	if slices.Contains(Workloads, name) {
		return nil
	}
	return fmt.Errorf("unknown workload %q (want one of %s)", name, strings.Join(Workloads, ", "))
}

// VerifyTimeout bounds the after-check's Verify, which reads the whole
// ledger (about 2.5 million entries in 4 s on the project's machine). A server
// caps every request at its own maximum: the one bench starts in its own
// process allows this much; another needs a --max-deadline as long for a
// ledger that large.
const VerifyTimeout = 10 * time.Minute

// Config says what to run. The caller's token needs the scopes iap, gifting,
// creator-portal, finance, admin and treasury.
type Config struct {
	Conn        grpc.ClientConnInterface
	Workload    string
	Concurrency int
	Requests    int           // stop after this many requests; 0: run for Duration
	Duration    time.Duration // used when Requests is 0
	Viewers     int           // gift-hot and mixed; 0 means 1,000
	Accounts    int           // transfers; 0 means 1,000
	// RunID prefixes every name and key the run creates, so that runs
	// against one server never collide; empty: derived from the clock.
	RunID    string
	Progress io.Writer // progress lines while it runs; nil: none
	Timeout  time.Duration
	// Measure, when set, is called as the measured load starts, and what it
	// returns as the load ends (before the after-check): e.g. a CPU profile
	// of the load alone.
	Measure func() (end func())
}

// Report is what a run measured and found.
type Report struct {
	Workload    string
	Concurrency int
	Elapsed     time.Duration
	OK          int                // requests answered OK
	Refused     map[codes.Code]int // refusals the workload expects (mixed: spent wallets)
	Failed      map[codes.Code]int // anything else
	FirstError  error
	Latency                        // of the requests answered OK
	ByOp        map[string]Latency // per kind of request, when the workload mixes them
	Missing     int                // acknowledged writes the ledger does not hold
	Verify      *pb.VerifyResponse
	acks        []ack // writes acknowledged
	checked     bool  // the after-check looked every acknowledged write up
}

// Answered is how many requests the server answered during the load, OK or
// not.
func (r *Report) Answered() int {
	n := r.OK
	for _, m := range []map[codes.Code]int{r.Refused, r.Failed} {
		for _, k := range m {
			n += k
		}
	}
	return n
}

// Acked is how many writes the server acknowledged.
func (r *Report) Acked() int { return len(r.acks) }

// Latency summarizes the latencies of requests answered OK.
type Latency struct {
	N             int
	P50, P99, Max time.Duration
}

func latencyOf(lat []time.Duration) Latency {
	if len(lat) == 0 {
		return Latency{}
	}
	slices.Sort(lat)
	return Latency{N: len(lat), P50: lat[len(lat)/2], P99: lat[(len(lat)*99)/100], Max: lat[len(lat)-1]}
}

// Throughput is requests answered OK per second.
func (r *Report) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// Clean reports whether nothing failed, nothing acknowledged is missing and
// the ledger verified clean.
func (r *Report) Clean() bool {
	return len(r.Failed) == 0 && r.Missing == 0 && r.Verify != nil && len(r.Verify.Violations) == 0 && r.Verify.ViolationsOmitted == 0
}

// WriteTo prints the report for people.
func (r *Report) WriteTo(w io.Writer) (int64, error) {
	var b []byte
	b = fmt.Appendf(b, "workload     %s, %d concurrent callers\n", r.Workload, r.Concurrency)
	b = fmt.Appendf(b, "requests     %d ok in %.1fs: %.0f/s\n", r.OK, r.Elapsed.Seconds(), r.Throughput())
	b = fmt.Appendf(b, "latency      p50 %s  p99 %s  max %s\n", ms(r.P50), ms(r.P99), ms(r.Max))
	if len(r.ByOp) > 1 {
		var ops []string
		for op := range r.ByOp {
			ops = append(ops, op)
		}
		slices.Sort(ops)
		for _, op := range ops {
			l := r.ByOp[op]
			b = fmt.Appendf(b, "  %-10s %7d ok  p50 %s  p99 %s  max %s\n", op, l.N, ms(l.P50), ms(l.P99), ms(l.Max))
		}
	}
	if len(r.Refused) > 0 {
		b = fmt.Appendf(b, "refused      %s (expected by the workload)\n", codeCounts(r.Refused))
	}
	if len(r.Failed) > 0 {
		b = fmt.Appendf(b, "FAILED       %s; first: %v\n", codeCounts(r.Failed), r.FirstError)
	}
	if r.checked {
		b = fmt.Appendf(b, "acknowledged %d writes, %d missing from the ledger\n", r.Acked(), r.Missing)
	} else {
		b = fmt.Appendf(b, "acknowledged %d writes, NOT CHECKED against the ledger (the run stopped first)\n", r.Acked())
	}
	if v := r.Verify; v != nil {
		b = fmt.Appendf(b, "verify       %d transactions, %d entries, %d accounts: %d violations\n", v.Transactions, v.Entries, v.Accounts,
			int64(len(v.Violations))+v.ViolationsOmitted)
		for _, x := range v.Violations {
			b = fmt.Appendf(b, "  %s %s: %s\n", x.Check, x.Subject, x.Detail)
		}
	}
	n, err := w.Write(b)
	return int64(n), err
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + "ms" }

func codeCounts(m map[codes.Code]int) string {
	var keys []codes.Code
	for c := range m {
		keys = append(keys, c)
	}
	slices.Sort(keys)
	s := ""
	for i, c := range keys {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%d %s", m[c], c)
	}
	return s
}

// ack is a write the server acknowledged.
type ack struct{ id, key string }

// workload sets up its accounts and reference data, then issues one request
// per call. A write returns what the server acknowledged; a read returns a
// zero ack. expected reports whether a refusal is one the workload may meet.
type workload interface {
	setup(ctx context.Context, g *gen) error
	do(ctx context.Context, w *worker) (ack, error)
	expected(codes.Code) bool
}

// gen holds what every workload shares.
type gen struct {
	cfg Config
	run string
	rpc clients
}

type clients struct {
	purchases pb.PurchaseServiceClient
	gifts     pb.GiftServiceClient
	earnings  pb.EarningsServiceClient
	ledger    pb.LedgerServiceClient
	catalog   pb.CatalogServiceClient
	treasury  pb.TreasuryServiceClient
}

// worker is one closed-loop caller.
type worker struct {
	gen  *gen
	id   int
	rng  *rand.Rand
	seq  int
	acks []ack
	op   string // what the last request was
	lat  map[string][]time.Duration
	// mixed: purchases this worker made and has not refunded yet
	bought []string
}

// key returns a fresh idempotency key for this worker.
func (w *worker) key(g *gen, what string) string {
	w.seq++
	return fmt.Sprintf("%s-%s-w%d-%d", g.run, what, w.id, w.seq)
}

// Check fills in cfg's defaults and refuses what Run cannot run, so that a
// command can refuse its flags before it starts a database and a server.
func (cfg *Config) Check() error {
	if err := CheckWorkload(cfg.Workload); err != nil {
		return err
	}
	if cfg.Concurrency < 1 {
		return errors.New("concurrency must be at least 1")
	}
	if cfg.Requests < 0 || (cfg.Requests == 0 && cfg.Duration <= 0) {
		return errors.New("give a positive request count or duration")
	}
	if cfg.Viewers == 0 {
		cfg.Viewers = 1000
	}
	if cfg.Accounts == 0 {
		cfg.Accounts = 1000
	}
	if cfg.Viewers < 1 || cfg.Accounts < 2 {
		return errors.New("viewers must be at least 1 and accounts at least 2")
	}
	return nil
}

// Run sets the workload up, runs it and checks the ledger.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.RunID == "" {
		cfg.RunID = "bench-" + strconv.FormatInt(time.Now().UnixMilli(), 36)
	}
	var wl workload
	switch cfg.Workload {
	case TransferSpread:
		wl = &transfers{}
	case TransferHot:
		wl = &transfers{hot: true}
	case GiftHot:
		wl = &gifting{}
	case Mixed:
		wl = &gifting{mixed: true}
	}
	g := &gen{cfg: cfg, run: cfg.RunID, rpc: clients{
		purchases: pb.NewPurchaseServiceClient(cfg.Conn),
		gifts:     pb.NewGiftServiceClient(cfg.Conn),
		earnings:  pb.NewEarningsServiceClient(cfg.Conn),
		ledger:    pb.NewLedgerServiceClient(cfg.Conn),
		catalog:   pb.NewCatalogServiceClient(cfg.Conn),
		treasury:  pb.NewTreasuryServiceClient(cfg.Conn),
	}}
	fmt.Fprintf(cfg.Progress, "%s: setting up (run %s)\n", cfg.Workload, g.run)
	if err := wl.setup(ctx, g); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	end := func() {}
	if cfg.Measure != nil {
		end = cfg.Measure()
	}
	rep := g.load(ctx, wl)
	end()
	for _, w := range rep.workers {
		rep.acks = append(rep.acks, w.acks...)
	}
	if ctx.Err() != nil {
		return &rep.Report, ctx.Err()
	}
	missing, err := g.checkAcks(ctx, rep.acks)
	if err != nil {
		return &rep.Report, fmt.Errorf("checking acknowledged writes: %w", err)
	}
	rep.Missing, rep.checked = missing, true
	fmt.Fprintf(cfg.Progress, "%s: verifying the ledger\n", cfg.Workload)
	vctx, cancel := context.WithTimeout(ctx, VerifyTimeout)
	defer cancel()
	if rep.Verify, err = g.rpc.ledger.Verify(vctx, &pb.VerifyRequest{}); err != nil {
		return &rep.Report, fmt.Errorf("verify: %w", err)
	}
	return &rep.Report, nil
}

type loadResult struct {
	Report
	workers []*worker
}

// load runs the closed loop: each caller sends its next request as soon as
// the previous one is answered.
func (g *gen) load(ctx context.Context, wl workload) *loadResult {
	cfg := g.cfg
	res := &loadResult{Report: Report{Workload: cfg.Workload, Concurrency: cfg.Concurrency,
		Refused: map[codes.Code]int{}, Failed: map[codes.Code]int{}}}
	var (
		next, ok atomic.Int64
		mu       sync.Mutex
		wg       sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	stop := make(chan struct{})
	go g.progress(stop, start, &ok)
	for id := range cfg.Concurrency {
		w := &worker{gen: g, id: id, lat: map[string][]time.Duration{}, rng: rand.New(rand.NewPCG(uint64(id), uint64(start.UnixNano())))}
		res.workers = append(res.workers, w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if cfg.Requests > 0 {
					if next.Add(1) > int64(cfg.Requests) {
						return
					}
				} else if time.Now().After(deadline) {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
				t0 := time.Now()
				a, err := wl.do(rctx, w)
				lat := time.Since(t0)
				cancel()
				if err == nil {
					ok.Add(1)
					w.lat[w.op] = append(w.lat[w.op], lat)
					if a.id != "" {
						w.acks = append(w.acks, a)
					}
					continue
				}
				if ctx.Err() != nil {
					return
				}
				code := status.Code(err)
				mu.Lock()
				if wl.expected(code) {
					res.Refused[code]++
				} else {
					res.Failed[code]++
					if res.FirstError == nil {
						res.FirstError = err
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	close(stop)
	var all []time.Duration
	byOp := map[string][]time.Duration{}
	for _, w := range res.workers {
		for op, lat := range w.lat {
			all = append(all, lat...)
			byOp[op] = append(byOp[op], lat...)
		}
	}
	res.Latency, res.OK = latencyOf(all), len(all)
	res.ByOp = map[string]Latency{}
	for op, lat := range byOp {
		res.ByOp[op] = latencyOf(lat)
	}
	return res
}

func (g *gen) progress(stop <-chan struct{}, start time.Time, ok *atomic.Int64) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			el := now.Sub(start).Seconds()
			n := ok.Load()
			line := fmt.Sprintf("%s: %5.1fs %8d ok %7.0f/s", g.cfg.Workload, el, n, float64(n)/el)
			if g.cfg.Requests > 0 {
				line += fmt.Sprintf("  (%d%% of %d)", int(100*n)/g.cfg.Requests, g.cfg.Requests)
			}
			fmt.Fprintln(g.cfg.Progress, line)
		}
	}
}

// checkAcks looks every acknowledged write up by its id and counts those the
// ledger does not hold under the key it was acknowledged with.
func (g *gen) checkAcks(ctx context.Context, acks []ack) (int, error) {
	var missing, done atomic.Int64
	err := par.Each(ctx, len(acks), g.cfg.Concurrency, func(ctx context.Context, i int) error {
		a := acks[i]
		r, err := g.rpc.ledger.GetTransaction(ctx, &pb.GetTransactionRequest{Id: a.id})
		switch {
		case status.Code(err) == codes.NotFound || (err == nil && r.Transaction.IdempotencyKey != a.key):
			missing.Add(1)
		case err != nil:
			return err
		}
		if n := done.Add(1); n%20000 == 0 {
			fmt.Fprintf(g.cfg.Progress, "%s: checked %d of %d acknowledged writes\n", g.cfg.Workload, n, len(acks))
		}
		return nil
	})
	return int(missing.Load()), err
}
