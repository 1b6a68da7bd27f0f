package api_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/coinledger/coinledger/api"
)

// Health follows the database: NOT_SERVING while a ping cannot reach it,
// SERVING once one does again, and the metrics page says which.
func TestHealthFollowsTheDatabase(t *testing.T) {
	var down atomic.Bool
	e := newEnv(t, func(c *api.Config) {
		c.DatabasePingEvery = 20 * time.Millisecond
		c.DatabasePing = func(context.Context) error {
			if down.Load() {
				return errors.New("connection refused")
			}
			return nil
		}
	})
	health := healthpb.NewHealthClient(e.dial(t, "tok-fin-0123456789"))
	await := func(want healthpb.HealthCheckResponse_ServingStatus, metric string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			h, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
			rec := httptest.NewRecorder()
			e.srv.Metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			if err == nil && h.Status == want && strings.Contains(rec.Body.String(), metric+"\n") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("health %v (%v), want %v with %q on the metrics page", h, err, want, metric)
			}
		}
	}
	await(healthpb.HealthCheckResponse_SERVING, "coinledger_database_up 1")
	down.Store(true)
	await(healthpb.HealthCheckResponse_NOT_SERVING, "coinledger_database_up 0")
	down.Store(false)
	await(healthpb.HealthCheckResponse_SERVING, "coinledger_database_up 1")
}

// One failed ping (a connection the database dropped when it restarted)
// leaves health SERVING; the second in a row turns it NOT_SERVING.
func TestHealthSurvivesOneFailedPing(t *testing.T) {
	var pings atomic.Int32
	release := make(chan struct{})
	e := newEnv(t, func(c *api.Config) {
		c.DatabasePingEvery = 20 * time.Millisecond
		c.DatabasePing = func(context.Context) error {
			switch pings.Add(1) {
			case 1:
				return errors.New("connection reset by peer")
			case 2:
				<-release // holds the watcher until the test has looked
			}
			return nil
		}
	})
	for pings.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	h, err := healthpb.NewHealthClient(e.dial(t, "tok-fin-0123456789")).Check(context.Background(), &healthpb.HealthCheckRequest{})
	close(release)
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("after one failed ping: %v %v, want SERVING", h, err)
	}
}
