package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/coinledger/coinledger/internal/dbtest"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

// hangUp sends this process SIGHUP, which the in-process serve reloads its
// credentials on, and waits until the metrics page at addr shows line.
func hangUp(t *testing.T, addr, line string) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		page, err := httpGet("http://" + addr + "/metrics")
		if err == nil && strings.Contains(page, line+"\n") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP the metrics page never showed %q: %v\n%s", line, err, page)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// On SIGHUP serve reads its tokens file again: a token removed from it is
// refused on a connection opened before, a token added works. A file that
// cannot be read as tokens keeps those in use, says so in the log without
// quoting a token, and counts as a failed reload.
func TestServeReloadsTokensOnHangUp(t *testing.T) {
	url := dbtest.Postgres().NewDatabase(t)
	const old, added = "tok-reload-old-0123456789", "tok-reload-added-0123456789"
	tokens := filepath.Join(t.TempDir(), "tokens")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(tokens, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("finance finance " + old + "\n")
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	srv := startServe(t, "--database-url", url, "--listen", addr, "--metrics-listen", metricsAddr, "--tokens-file", tokens, "--log-level", "info",
		"--release-every", "0")
	conn := srv.dialServing(t, addr)
	verify := func(token string) error {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
		_, err := pb.NewLedgerServiceClient(conn).Verify(ctx, &pb.VerifyRequest{})
		return err
	}
	if err := verify(old); err != nil {
		t.Fatalf("the first token: %v", err)
	}
	page, err := httpGet("http://" + metricsAddr + "/metrics")
	if err != nil || !strings.Contains(page, "coinledger_credentials_loaded_timestamp_seconds ") || strings.Contains(page, "coinledger_tls_certificate_expiry") {
		t.Errorf("before any reload, the page: %v\n%s", err, page)
	}

	write("finance finance " + added + "\n")
	hangUp(t, metricsAddr, `coinledger_credentials_reloads_total{outcome="ok"} 1`)
	if err := verify(old); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the removed token after the reload: %v", err)
	}
	if err := verify(added); err != nil {
		t.Errorf("the added token after the reload: %v", err)
	}

	const leaked = "tok-in-the-scope-field-0123456789"
	write("finance " + leaked + " " + old + "\n")
	hangUp(t, metricsAddr, `coinledger_credentials_reloads_total{outcome="failed"} 1`)
	if err := verify(added); err != nil {
		t.Errorf("the token in use after a failed reload: %v", err)
	}
	if err := verify(old); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a token of the refused file: %v", err)
	}
	const warning = "other users may read the tokens file"
	if strings.Contains(srv.errOut.String(), warning) {
		t.Errorf("a warning of a file only its owner reads:\n%s", srv.errOut.String())
	}
	write("finance finance " + added + "\n")
	if err := os.Chmod(tokens, 0o644); err != nil {
		t.Fatal(err)
	}
	hangUp(t, metricsAddr, `coinledger_credentials_reloads_total{outcome="ok"} 2`)
	srv.stop(t)
	logged := srv.out.String() + srv.errOut.String()
	if !strings.Contains(logged, warning) || !strings.Contains(logged, "mode=0644") {
		t.Errorf("no warning of a tokens file others may read:\n%s", logged)
	}
	if !strings.Contains(logged, "credentials reloaded") || !strings.Contains(logged, "callers=1") || !strings.Contains(logged, "credentials not reloaded; those in use stay") {
		t.Errorf("the reloads are not in the log:\n%s", logged)
	}
	for _, secret := range []string{old, added, leaked} {
		if strings.Contains(logged, secret) {
			t.Errorf("a token appears in the log:\n%s", logged)
		}
	}
}

// On SIGHUP serve reads its certificate, key and client CA again: a new
// handshake gets the new certificate and must present a certificate the
// new CA signed; the expiry on the metrics page follows. A certificate
// expiring within two weeks is warned of (the first, for an hour), one
// that does not is not (the second, for a month).
func TestServeRotatesTLSOnHangUp(t *testing.T) {
	url := dbtest.Postgres().NewDatabase(t)
	first, second := newTestPKI(t), newTestPKIValidFor(t, 30*24*time.Hour)
	const secret = "tok-rotate-tls-0123456789"
	t.Setenv("COINLEDGER_TOKENS", "finance finance "+secret)
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	srv := startServe(t, "--database-url", url, "--listen", addr, "--metrics-listen", metricsAddr, "--release-every", "0",
		"--tls-cert", first.certFile, "--tls-key", first.keyFile, "--client-ca", first.caFile, "--log-level", "warn")
	healthOver := func(p *testPKI) error {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(
			&tls.Config{RootCAs: p.ca, Certificates: []tls.Certificate{p.client}, MinVersion: tls.VersionTLS12})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); healthOver(first) != nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve never answered over TLS:\n%s\n%s", srv.out.String(), srv.errOut.String())
		}
	}
	if err := healthOver(second); err == nil {
		t.Fatal("a client of the second CA was served before the rotation")
	}
	expiry := func(p *testPKI) string {
		return fmt.Sprintf("coinledger_tls_certificate_expiry_timestamp_seconds %d", p.serverExpiry.Unix())
	}
	if page, err := httpGet("http://" + metricsAddr + "/metrics"); err != nil || !strings.Contains(page, expiry(first)+"\n") {
		t.Errorf("the first certificate's expiry is not on the page: %v\n%s", err, page)
	}
	for from, to := range map[string]string{second.certFile: first.certFile, second.keyFile: first.keyFile, second.caFile: first.caFile} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hangUp(t, metricsAddr, expiry(second))
	if err := healthOver(second); err != nil {
		t.Errorf("a client of the second CA after the rotation: %v", err)
	}
	if err := healthOver(first); err == nil {
		t.Error("a client of the first CA was served after the rotation")
	}
	srv.stop(t)
	if n := strings.Count(srv.errOut.String(), "the TLS certificate expires soon"); n != 1 {
		t.Errorf("%d warnings of a certificate expiring soon, want 1 (the first's, at start):\n%s", n, srv.errOut.String())
	}
}
