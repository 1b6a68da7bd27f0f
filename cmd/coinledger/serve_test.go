package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/coinledger/coinledger/internal/dbtest"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// serve starts, answers health without a token and a wallet read with one,
// refuses a call without one, runs the demo of a caller with the scopes it
// needs and refuses one without, keeps tokens out of its logs, and stops
// cleanly on interrupt.
func TestServe(t *testing.T) {
	url := dbtest.Postgres().NewDatabase(t)
	const secret = "tok-finance-serve-test-0123456789"
	const demoSecret = "tok-demo-serve-test-0123456789"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("finance finance "+secret+"\ndemo iap,gifting,creator-portal,finance,admin "+demoSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"serve", "--database-url", url, "--listen", addr, "--metrics-listen", "", "--tokens-file", tokens, "--log-level", "debug"}, &out, &errOut)
	}()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitServing(t, ctx, conn, &out, &errOut)
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
	cancel()
	select {
	case code := <-exited:
		if code != exitOK || !strings.Contains(out.String(), "stopped") {
			t.Errorf("serve exit %d\n%s\n%s", code, out.String(), errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if strings.Contains(errOut.String()+out.String(), secret) || strings.Contains(errOut.String()+out.String(), demoSecret) {
		t.Error("the bearer token appears in the server's output")
	}
	if !strings.Contains(errOut.String(), "method=/coinledger.v1.GiftService/GetWallet") {
		t.Errorf("no request log:\n%s", errOut.String())
	}
}
