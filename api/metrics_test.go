package api

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"google.golang.org/grpc/codes"

	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
)

// stalledWriter is a scraper that stopped reading: its first write blocks
// until released.
type stalledWriter struct {
	http.ResponseWriter
	release chan struct{}
}

func (w stalledWriter) Write(b []byte) (int, error) {
	<-w.release
	return w.ResponseWriter.Write(b)
}

// A scraper that stops reading the metrics page must not stall the RPCs,
// which count themselves under the same lock.
func TestStalledScraperDoesNotBlockRPCs(t *testing.T) {
	m := newMetrics(func() ledger.CommitStats { return ledger.CommitStats{} })
	m.observe("/coinledger.v1.GiftService/SendGift", codes.OK, time.Millisecond)
	w := stalledWriter{ResponseWriter: httptest.NewRecorder(), release: make(chan struct{})}
	served := make(chan struct{})
	go func() {
		defer close(served)
		m.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	}()
	observed := make(chan struct{})
	go func() {
		time.Sleep(50 * time.Millisecond) // the page is being written by now
		m.observe("/coinledger.v1.GiftService/SendGift", codes.OK, time.Millisecond)
		close(observed)
	}()
	select {
	case <-observed:
	case <-time.After(5 * time.Second):
		t.Error("an RPC waited on a stalled metrics scraper")
	}
	close(w.release)
	<-served
	<-observed
}

// The release job's runs are counted by outcome, with what they released and
// when the last one succeeded.
func TestReleaseMetrics(t *testing.T) {
	m := newMetrics(func() ledger.CommitStats { return ledger.CommitStats{} })
	page := func() string { return renderPage(m) }
	if p := page(); !strings.Contains(p, "coinledger_release_runs_total{outcome=\"ok\"} 0\n") || strings.Contains(p, "last_success") {
		t.Errorf("before any run:\n%s", p)
	}
	at := time.Unix(1_796_000_000, 0)
	m.ObserveRelease(economy.ReleaseReport{Scanned: 3, Released: 2, Diamonds: decimal.RequireFromString("500.5")}, nil, at)
	m.ObserveRelease(economy.ReleaseReport{}, errors.New("database gone"), at.Add(time.Hour))
	p := page()
	for _, want := range []string{
		"coinledger_release_runs_total{outcome=\"ok\"} 1\n",
		"coinledger_release_runs_total{outcome=\"failed\"} 1\n",
		"coinledger_release_accounts_total 2\n",
		"coinledger_release_diamonds_total 500.5\n",
		"coinledger_release_last_success_timestamp_seconds 1796000000\n",
	} {
		if !strings.Contains(p, want) {
			t.Errorf("missing %q in:\n%s", want, p)
		}
	}
}

// The credentials' lines: reloads by outcome, when those in use were read,
// and the certificate's expiry only while the listener has one.
func TestCredentialMetrics(t *testing.T) {
	m := newMetrics(func() ledger.CommitStats { return ledger.CommitStats{} })
	page := func() string { return renderPage(m) }
	if p := page(); !strings.Contains(p, "coinledger_credentials_reloads_total{outcome=\"ok\"} 0\n") || strings.Contains(p, "loaded_timestamp") || strings.Contains(p, "expiry") {
		t.Errorf("before any credentials:\n%s", p)
	}
	at, expiry := time.Unix(1_796_000_000, 0), time.Unix(1_800_000_000, 0)
	m.CredentialsLoaded(at, expiry, false)
	m.CredentialsReloadFailed()
	m.CredentialsLoaded(at.Add(time.Hour), expiry.Add(time.Hour), true)
	p := page()
	for _, want := range []string{
		"coinledger_credentials_reloads_total{outcome=\"ok\"} 1\n",
		"coinledger_credentials_reloads_total{outcome=\"failed\"} 1\n",
		"coinledger_credentials_loaded_timestamp_seconds 1796003600\n",
		"coinledger_tls_certificate_expiry_timestamp_seconds 1800003600\n",
	} {
		if !strings.Contains(p, want) {
			t.Errorf("missing %q in:\n%s", want, p)
		}
	}
	m.CredentialsLoaded(at, time.Time{}, false)
	if p := page(); strings.Contains(p, "expiry") {
		t.Errorf("an expiry without TLS:\n%s", p)
	}
}

func renderPage(m *Metrics) string {
	var b bytes.Buffer
	m.render(&b)
	return b.String()
}

// The pool's lines, when the server is given its counts.
func TestPoolMetrics(t *testing.T) {
	m := newMetrics(func() ledger.CommitStats { return ledger.CommitStats{} })
	if p := renderPage(m); strings.Contains(p, "db_pool") {
		t.Errorf("pool lines without a pool:\n%s", p)
	}
	m.pool = func() PoolStats {
		return PoolStats{Max: 16, Total: 5, Idle: 2, Acquired: 3, Acquires: 1200, EmptyAcquires: 7, AcquireWait: 1500 * time.Millisecond}
	}
	p := renderPage(m)
	for _, want := range []string{
		"coinledger_db_pool_connections{state=\"acquired\"} 3\n",
		"coinledger_db_pool_connections{state=\"idle\"} 2\n",
		"coinledger_db_pool_max_connections 16\n",
		"coinledger_db_pool_acquires_total 1200\n",
		"coinledger_db_pool_waited_acquires_total 7\n",
		"coinledger_db_pool_acquire_seconds_total 1.5\n",
	} {
		if !strings.Contains(p, want) {
			t.Errorf("missing %q in:\n%s", want, p)
		}
	}
}
