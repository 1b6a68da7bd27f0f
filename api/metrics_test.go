package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/coinledger/coinledger/ledger"
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
