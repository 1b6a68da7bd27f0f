package api

import (
	"bytes"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/coinledger/coinledger/ledger"
)

// Metrics counts RPCs by method and code and times them, and serves the
// counts, with the ledger's commit batches, in the Prometheus text format.
type Metrics struct {
	mu      sync.Mutex
	calls   map[[2]string]uint64  // method, code
	latency map[string]*histogram // by method
	commits func() ledger.CommitStats
}

// Latency buckets, seconds.
var buckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10}

type histogram struct {
	counts []uint64 // per bucket, not cumulative
	sum    float64
	n      uint64
}

func newMetrics(commits func() ledger.CommitStats) *Metrics {
	return &Metrics{calls: map[[2]string]uint64{}, latency: map[string]*histogram{}, commits: commits}
}

func (m *Metrics) observe(method string, code codes.Code, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[[2]string{method, code.String()}]++
	h := m.latency[method]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(buckets))}
		m.latency[method] = h
	}
	sec := d.Seconds()
	for i, b := range buckets {
		if sec <= b {
			h.counts[i]++
			break
		}
	}
	h.sum += sec
	h.n++
}

// ServeHTTP writes the metrics in the Prometheus text exposition format.
// The page is rendered under the lock and sent after it: every RPC takes the
// lock to count itself, and a scraper that stops reading must not stall them.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	var page bytes.Buffer
	m.render(&page)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	w.Write(page.Bytes())
}

func (m *Metrics) render(w *bytes.Buffer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintln(w, "# HELP coinledger_rpc_requests_total RPCs handled, by method and gRPC code.")
	fmt.Fprintln(w, "# TYPE coinledger_rpc_requests_total counter")
	keys := make([][2]string, 0, len(m.calls))
	for k := range m.calls {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	for _, k := range keys {
		fmt.Fprintf(w, "coinledger_rpc_requests_total{method=%q,code=%q} %d\n", k[0], k[1], m.calls[k])
	}
	fmt.Fprintln(w, "# HELP coinledger_rpc_duration_seconds RPC latency, by method.")
	fmt.Fprintln(w, "# TYPE coinledger_rpc_duration_seconds histogram")
	methods := make([]string, 0, len(m.latency))
	for k := range m.latency {
		methods = append(methods, k)
	}
	sort.Strings(methods)
	for _, method := range methods {
		h := m.latency[method]
		var cum uint64
		for i, b := range buckets {
			cum += h.counts[i]
			fmt.Fprintf(w, "coinledger_rpc_duration_seconds_bucket{method=%q,le=\"%g\"} %d\n", method, b, cum)
		}
		fmt.Fprintf(w, "coinledger_rpc_duration_seconds_bucket{method=%q,le=\"+Inf\"} %d\n", method, h.n)
		fmt.Fprintf(w, "coinledger_rpc_duration_seconds_sum{method=%q} %g\n", method, h.sum)
		fmt.Fprintf(w, "coinledger_rpc_duration_seconds_count{method=%q} %d\n", method, h.n)
	}
	c := m.commits()
	fmt.Fprintln(w, "# HELP coinledger_commit_batches_total Database transactions the commit lanes ran, each a batch of requests.")
	fmt.Fprintln(w, "# TYPE coinledger_commit_batches_total counter")
	fmt.Fprintf(w, "coinledger_commit_batches_total %d\n", c.Batches)
	fmt.Fprintln(w, "# HELP coinledger_commit_batched_requests_total Requests carried by those batches; divided by the batches, the mean batch size.")
	fmt.Fprintln(w, "# TYPE coinledger_commit_batched_requests_total counter")
	fmt.Fprintf(w, "coinledger_commit_batched_requests_total %d\n", c.Requests)
	fmt.Fprintln(w, "# HELP coinledger_commit_seconds_total Time the commit lanes spent committing batches.")
	fmt.Fprintln(w, "# TYPE coinledger_commit_seconds_total counter")
	fmt.Fprintf(w, "coinledger_commit_seconds_total %g\n", c.Committing.Seconds())
	fmt.Fprintln(w, "# HELP coinledger_commit_deferred_total Requests committed in a second round because their lots were in a currency the batch had not locked.")
	fmt.Fprintln(w, "# TYPE coinledger_commit_deferred_total counter")
	fmt.Fprintf(w, "coinledger_commit_deferred_total %d\n", c.Deferred)
}
