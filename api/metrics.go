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
	"github.com/coinledger/coinledger/ledger/economy"
)

// Metrics counts RPCs by method and code and times them, and serves the
// counts, with the ledger's commit batches, in the Prometheus text format.
type Metrics struct {
	mu      sync.Mutex
	calls   map[[2]string]uint64  // method, code
	latency map[string]*histogram // by method
	commits func() ledger.CommitStats
	release releaseCounts
	creds   credentialCounts
	dbUp    *bool            // nil: not watched
	pool    func() PoolStats // nil: not shown
}

// PoolStats are the database connection pool's counts (the storage's, as
// they are: postgres.PoolStats converts to it).
type PoolStats struct {
	Max, Total, Idle, Acquired int32
	// Acquires counts connections handed out; EmptyAcquires those a caller
	// waited for, none being idle; AcquireWait is the time spent acquiring.
	Acquires, EmptyAcquires int64
	AcquireWait             time.Duration
}

// DatabaseUp records whether the last ping reached the database.
func (m *Metrics) DatabaseUp(up bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dbUp = &up
}

// credentialCounts are the server's credentials: when those in use were
// read, and the reloads that replaced them or were refused.
type credentialCounts struct {
	reloaded, failed uint64
	loaded           time.Time
	certExpiry       time.Time // zero: the listener speaks plaintext
}

// CredentialsLoaded records credentials read at at, and their TLS
// certificate's expiry (zero without TLS): at start, or by a reload that
// replaced them (reload true).
func (m *Metrics) CredentialsLoaded(at, certExpiry time.Time, reload bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if reload {
		m.creds.reloaded++
	}
	m.creds.loaded, m.creds.certExpiry = at, certExpiry
}

// CredentialsReloadFailed counts a reload that was refused, the credentials
// in use kept.
func (m *Metrics) CredentialsReloadFailed() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.creds.failed++
}

// releaseCounts are the earnings release job's runs in this process.
type releaseCounts struct {
	ok, failed  uint64
	accounts    uint64
	diamonds    float64   // for a rate on a dashboard; the ledger has the exact sums
	lastSuccess time.Time // zero: none yet
}

// ObserveRelease counts one run of the earnings release job, so that a job
// that keeps failing, or has stopped running, shows on the metrics page.
func (m *Metrics) ObserveRelease(rep economy.ReleaseReport, err error, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.release.failed++
		return
	}
	m.release.ok++
	m.release.accounts += uint64(rep.Released)
	m.release.diamonds += rep.Diamonds.InexactFloat64()
	m.release.lastSuccess = at
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
	help(w, "coinledger_rpc_requests_total", "counter", "RPCs handled, by method and gRPC code.")
	keys := make([][2]string, 0, len(m.calls))
	for k := range m.calls {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	for _, k := range keys {
		fmt.Fprintf(w, "coinledger_rpc_requests_total{method=%q,code=%q} %d\n", k[0], k[1], m.calls[k])
	}
	help(w, "coinledger_rpc_duration_seconds", "histogram", "RPC latency, by method.")
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
	single(w, "coinledger_commit_batches_total", "counter", "Database transactions the commit lanes ran, each a batch of requests.", c.Batches)
	single(w, "coinledger_commit_batched_requests_total", "counter", "Requests carried by those batches; divided by the batches, the mean batch size.", c.Requests)
	single(w, "coinledger_commit_seconds_total", "counter", "Time the commit lanes spent committing batches.", c.Committing.Seconds())
	single(w, "coinledger_commit_deferred_total", "counter", "Requests committed in a second round because their lots were in a currency the batch had not locked.", c.Deferred)
	r := m.release
	help(w, "coinledger_release_runs_total", "counter", "Runs of the earnings release job in this process, by outcome.")
	fmt.Fprintf(w, "coinledger_release_runs_total{outcome=\"ok\"} %d\n", r.ok)
	fmt.Fprintf(w, "coinledger_release_runs_total{outcome=\"failed\"} %d\n", r.failed)
	single(w, "coinledger_release_accounts_total", "counter", "Pending accounts whose diamonds the job released.", r.accounts)
	single(w, "coinledger_release_diamonds_total", "counter", "Diamonds the job released.", r.diamonds)
	if !r.lastSuccess.IsZero() {
		single(w, "coinledger_release_last_success_timestamp_seconds", "gauge", "When the job last finished a run without error (Unix time).", r.lastSuccess.Unix())
	}
	cr := m.creds
	help(w, "coinledger_credentials_reloads_total", "counter", "Reloads of the bearer tokens and TLS files (SIGHUP), by outcome; a failed one keeps those in use.")
	fmt.Fprintf(w, "coinledger_credentials_reloads_total{outcome=\"ok\"} %d\n", cr.reloaded)
	fmt.Fprintf(w, "coinledger_credentials_reloads_total{outcome=\"failed\"} %d\n", cr.failed)
	if !cr.loaded.IsZero() {
		single(w, "coinledger_credentials_loaded_timestamp_seconds", "gauge", "When the credentials in use were read (Unix time).", cr.loaded.Unix())
	}
	if !cr.certExpiry.IsZero() {
		single(w, "coinledger_tls_certificate_expiry_timestamp_seconds", "gauge", "When the listener's TLS certificate expires (Unix time).", cr.certExpiry.Unix())
	}
	if m.dbUp != nil {
		up := 0
		if *m.dbUp {
			up = 1
		}
		single(w, "coinledger_database_up", "gauge", "Whether the server's last ping reached its database (1) or not (0); health reports NOT_SERVING after two in a row do not.", up)
	}
	if m.pool != nil {
		p := m.pool()
		help(w, "coinledger_db_pool_connections", "gauge", "Database connections in the pool, by state.")
		fmt.Fprintf(w, "coinledger_db_pool_connections{state=\"acquired\"} %d\n", p.Acquired)
		fmt.Fprintf(w, "coinledger_db_pool_connections{state=\"idle\"} %d\n", p.Idle)
		single(w, "coinledger_db_pool_max_connections", "gauge", "The most connections the pool opens.", p.Max)
		single(w, "coinledger_db_pool_acquires_total", "counter", "Connections handed out by the pool.", p.Acquires)
		single(w, "coinledger_db_pool_waited_acquires_total", "counter", "Acquires that waited for a connection, none being idle.", p.EmptyAcquires)
		single(w, "coinledger_db_pool_acquire_seconds_total", "counter", "Time spent acquiring connections, waits included.", p.AcquireWait.Seconds())
	}
}

// single writes a metric of one unlabelled series: its HELP and TYPE lines
// and its value.
func single(w *bytes.Buffer, name, kind, text string, value any) {
	help(w, name, kind, text)
	fmt.Fprintln(w, name, value)
}

// help writes a metric's HELP and TYPE lines.
func help(w *bytes.Buffer, name, kind, text string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, kind)
}
