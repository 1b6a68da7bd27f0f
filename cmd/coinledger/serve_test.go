package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/internal/pgembed"
	"github.com/coinledger/coinledger/internal/syncbuf"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

type syncBuffer = syncbuf.Buffer

// waitServing waits up to 30 s for the server behind conn to report SERVING,
// failing with the server's output.
func waitServing(t *testing.T, ctx context.Context, conn *grpc.ClientConn, out, errOut *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && h.Status == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not serving: %v\n%s\n%s", err, out.String(), errOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// httpGet returns the body of a GET of url.
func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// inProcessServe is `coinledger serve` running in the test's own process.
type inProcessServe struct {
	out, errOut syncBuffer
	exited      chan int
	cancel      context.CancelFunc
}

// startServe runs `coinledger serve ARGS...` until stop (or the test's end).
func startServe(t *testing.T, args ...string) *inProcessServe {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &inProcessServe{exited: make(chan int, 1), cancel: cancel}
	go func() { s.exited <- run(ctx, append([]string{"serve"}, args...), &s.out, &s.errOut) }()
	return s
}

// dialServing connects to a plaintext server and waits until it serves.
func (s *inProcessServe) dialServing(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	waitServing(t, context.Background(), conn, &s.out, &s.errOut)
	return conn
}

// stop interrupts the server as Ctrl-C would and checks that it exits 0.
func (s *inProcessServe) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.exited:
		if code != exitOK {
			t.Errorf("serve exit %d\n%s\n%s", code, s.out.String(), s.errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// serve starts, answers health without a token and a wallet read with one,
// refuses a call without one, runs the demo of a caller with the scopes it
// needs and refuses one without, keeps tokens out of its logs, runs the
// earnings release job, and stops cleanly on interrupt.
func TestServe(t *testing.T) {
	url := dbtest.Postgres().NewDatabase(t)
	const secret = "tok-finance-serve-test-0123456789"
	const demoSecret = "tok-demo-serve-test-0123456789"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("finance finance "+secret+"\ndemo iap,gifting,creator-portal,finance,admin "+demoSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	ctx := context.Background()
	srv := startServe(t, "--database-url", url, "--listen", addr, "--metrics-listen", metricsAddr, "--tokens-file", tokens, "--log-level", "debug",
		"--release-every", "20ms")
	conn := srv.dialServing(t, addr)
	// The release job's runs show on the metrics page (it runs at once on start).
	for deadline := time.Now().Add(10 * time.Second); ; {
		page, err := httpGet("http://" + metricsAddr + "/metrics")
		if err == nil && strings.Contains(page, `coinledger_release_runs_total{outcome="ok"} `) && !strings.Contains(page, `coinledger_release_runs_total{outcome="ok"} 0`) &&
			strings.Contains(page, "coinledger_release_last_success_timestamp_seconds ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no release run on the metrics page: %v\n%s", err, page)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The pool's counts show there too: the release run acquired connections.
	if page, err := httpGet("http://" + metricsAddr + "/metrics"); err != nil || !strings.Contains(page, "coinledger_db_pool_acquires_total ") ||
		strings.Contains(page, "coinledger_db_pool_acquires_total 0\n") || !strings.Contains(page, "coinledger_db_pool_max_connections 16\n") {
		t.Errorf("no pool counts on the metrics page: %v\n%s", err, page)
	}
	wallets := pb.NewGiftServiceClient(conn)
	if _, err := wallets.GetWallet(ctx, &pb.GetWalletRequest{User: "v1"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v", err)
	}
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
	w, err := wallets.GetWallet(authed, &pb.GetWalletRequest{User: "v1"})
	if err != nil || w.Paid.Amount != "0" {
		t.Errorf("wallet: %v %v", w, err)
	}
	code, demoOut, demoErr := runCmd(t, "demo", "--addr", addr, "--token", demoSecret, "--viewers", "6", "--gifts", "30", "-c", "4", "--log-level", "warn")
	if code != exitOK || !strings.Contains(demoOut, "gift storm: 30 hearts") || !strings.Contains(demoOut, ": OK (") {
		t.Errorf("demo against serve: exit %d\n%s\n%s", code, demoOut, demoErr)
	}
	code, _, demoErr = runCmd(t, "demo", "--addr", addr, "--token", secret)
	if code != exitError || !strings.Contains(demoErr, "PermissionDenied") {
		t.Errorf("demo with a finance-only token: exit %d\n%s", code, demoErr)
	}
	if strings.Contains(demoOut+demoErr, secret) || strings.Contains(demoOut+demoErr, demoSecret) {
		t.Error("a bearer token appears in the demo's output")
	}
	srv.stop(t)
	out, errOut := srv.out.String(), srv.errOut.String()
	if !strings.Contains(out, "stopped") {
		t.Errorf("serve did not say it stopped:\n%s", out)
	}
	if strings.Contains(errOut+out, secret) || strings.Contains(errOut+out, demoSecret) {
		t.Error("the bearer token appears in the server's output")
	}
	if !strings.Contains(errOut, "method=/coinledger.v1.GiftService/GetWallet") {
		t.Errorf("no request log:\n%s", errOut)
	}
	// The release job ran, found the demo's earnings still on hold, and was
	// stopped with the server. (What it releases: TestRunReleases.)
	if !strings.Contains(errOut, "earnings release found nothing due") || strings.Contains(errOut, "earnings release failed") {
		t.Errorf("no release job in the log:\n%s", errOut)
	}
	if code, _, errText := runCmd(t, "serve", "--database-url", url, "--release-every", "-1s"); code != exitError || !strings.Contains(errText, "--release-every") {
		t.Errorf("negative --release-every: exit %d\n%s", code, errText)
	}
}

// A listen address that is mistyped or taken, and a flag it cannot run
// with, are refused before a private PostgreSQL is initialised, started and
// migrated.
func TestServeRefusesBadFlagsFirst(t *testing.T) {
	t.Setenv("COINLEDGER_TOKENS", "finance finance tok-finance-ports-test-0123456789")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no port", []string{"--listen", "nonsense"}, "--listen"},
		{"taken", []string{"--listen", taken.Addr().String()}, "--listen"},
		{"metrics: no port", []string{"--listen", "127.0.0.1:0", "--metrics-listen", "nonsense"}, "--metrics-listen"},
		{"metrics: taken", []string{"--listen", "127.0.0.1:0", "--metrics-listen", taken.Addr().String()}, "--metrics-listen"},
		{"negative drain", []string{"--drain", "-1s"}, "--drain"},
		{"negative connection age", []string{"--max-connection-age", "-1s"}, "--max-connection-age"},
		{"a certificate without its key", []string{"--tls-cert", "cert.pem"}, "--tls-cert and --tls-key go together"},
	} {
		t.Run(tc.name, func(t *testing.T) { refusedBeforeSetUp(t, "serve", tc.args, tc.want) })
	}
}

// --max-deadline caps every request, whatever deadline the caller set.
func TestServeMaxDeadline(t *testing.T) {
	url := dbtest.Postgres().NewDatabase(t)
	const secret = "tok-finance-deadline-test-0123456789"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("finance finance "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	srv := startServe(t, "--database-url", url, "--listen", addr, "--metrics-listen", "", "--tokens-file", tokens, "--log-level", "warn",
		"--max-deadline", "1ns")
	conn := srv.dialServing(t, addr)
	authed, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+secret), time.Minute)
	defer cancel()
	if _, err := pb.NewLedgerServiceClient(conn).Verify(authed, &pb.VerifyRequest{}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("Verify under a 1-ns cap, asked for a minute: %v", err)
	}
	srv.stop(t)
	for _, d := range []string{"0s", "13h"} {
		if code, _, errText := runCmd(t, "serve", "--database-url", url, "--max-deadline", d); code != exitError || !strings.Contains(errText, "--max-deadline") {
			t.Errorf("--max-deadline %s: exit %d\n%s", d, code, errText)
		}
	}
}

// Another command on the data directory of a serving embedded database is
// refused, and the server keeps its database: it used to stop the running
// PostgreSQL, taking it for one a killed process had left.
func TestSecondCommandOnServingDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	data := filepath.Join(serverTempDir(t), "pg")
	t.Setenv("DATABASE_URL", "")
	const secret = "tok-finance-datadir-test-0123456789"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("finance finance "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	srv := startServe(t, "--data-dir", data, "--listen", addr, "--metrics-listen", "", "--tokens-file", tokens, "--log-level", "warn")
	conn := srv.dialServing(t, addr)

	code, _, stderr := runCmd(t, "verify", "--data-dir", data)
	if code != exitError || !strings.Contains(stderr, "used by another coinledger process") || !strings.Contains(stderr, "--database-url") {
		t.Errorf("verify beside serve on one data directory: exit %d\n%s", code, stderr)
	}
	authed := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+secret)
	if _, err := pb.NewGiftServiceClient(conn).GetWallet(authed, &pb.GetWalletRequest{User: "v1"}); err != nil {
		t.Errorf("serve after the refused verify: %v\n%s", err, srv.errOut.String())
	}
	srv.stop(t)
	// Released with the server: the next command runs.
	if code, out, stderr := runCmd(t, "verify", "--data-dir", data); code != exitOK {
		t.Errorf("verify after serve stopped: exit %d\n%s\n%s", code, out, stderr)
	}
}

// serve on its private PostgreSQL stops, with an error naming the database's
// log, when that PostgreSQL dies: every call would fail from then on, and a
// supervisor restarting the process brings the database back.
func TestServeStopsWhenItsDatabaseDies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	data := filepath.Join(serverTempDir(t), "pg")
	t.Setenv("DATABASE_URL", "")
	t.Setenv("COINLEDGER_TOKENS", "finance finance tok-finance-dies-test-0123456789")
	addr := freeAddr(t)
	srv := startServe(t, "--data-dir", data, "--listen", addr, "--metrics-listen", "", "--log-level", "warn")
	srv.dialServing(t, addr)
	pid, _, err := pgembed.Postmaster(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-srv.exited:
		if errOut := srv.errOut.String(); code != exitError || !strings.Contains(errOut, "stopped unexpectedly") || !strings.Contains(errOut, "coinledger-server.log") {
			t.Errorf("serve after its database died: exit %d\n%s", code, errOut)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve still running 30 s after its database died\n%s", srv.errOut.String())
	}
}

// serve --max-connection-age tells a connection that old GOAWAY.
func TestServeMaxConnectionAge(t *testing.T) {
	url := dbtest.Postgres().NewDatabase(t)
	t.Setenv("COINLEDGER_TOKENS", "finance finance tok-connection-age-0123456789")
	addr := freeAddr(t)
	srv := startServe(t, "--database-url", url, "--listen", addr, "--metrics-listen", "", "--release-every", "0", "--log-level", "warn",
		"--max-connection-age", "300ms")
	srv.dialServing(t, addr)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fr := http2.NewFramer(conn, conn)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY from a connection past --max-connection-age: %v", err)
		}
		if away, ok := f.(*http2.GoAwayFrame); ok {
			if away.ErrCode != http2.ErrCodeNo {
				t.Errorf("GOAWAY %v, want NO_ERROR", away.ErrCode)
			}
			break
		}
	}
	srv.stop(t)
}

// serve on a database it reaches by URL answers health NOT_SERVING once
// that database stops, so that a load balancer sends callers elsewhere;
// it keeps running (the database may come back, and a supervisor
// restarting serve would not bring it back).
func TestServeHealthFollowsItsDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	ctx := context.Background()
	pg, err := pgembed.Start(ctx, pgembed.Config{DataDir: filepath.Join(serverTempDir(t), "data"), Throwaway: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop() })
	if err := pg.CreateDatabase(ctx, "ledger"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("COINLEDGER_TOKENS", "finance finance tok-finance-health-test-0123456789")
	addr, metricsAddr := freeAddr(t), freeAddr(t)
	srv := startServe(t, "--database-url", pg.URL("ledger"), "--listen", addr, "--metrics-listen", metricsAddr, "--release-every", "0", "--log-level", "warn")
	conn := srv.dialServing(t, addr)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		page, _ := httpGet("http://" + metricsAddr + "/metrics")
		if err == nil && h.Status == healthpb.HealthCheckResponse_NOT_SERVING && strings.Contains(page, "coinledger_database_up 0\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health %v (%v) 20 s after the database stopped\n%s", h, err, srv.errOut.String())
		}
	}
	if errOut := srv.errOut.String(); !strings.Contains(errOut, "database unreachable") {
		t.Errorf("no log of the unreachable database:\n%s", errOut)
	}
	srv.stop(t)
}
