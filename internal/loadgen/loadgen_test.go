package loadgen

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/coinledger/coinledger/api"
	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
	"github.com/coinledger/coinledger/ledger/postgres"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// server starts the API on a fresh database and returns a client connection
// with every scope the workloads need.
func server(t *testing.T) *grpc.ClientConn {
	t.Helper()
	db, _ := dbtest.Postgres().Open(t, postgres.Config{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := ledger.NewService(db, ledger.Options{Logger: quiet})
	cat := economy.NewCatalog(db, nil)
	eco := economy.New(svc, cat, nil)
	if err := eco.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	const token = "tok-bench-0123456789"
	toks, err := api.ParseTokens(strings.NewReader("bench iap,gifting,creator-portal,finance,admin,treasury " + token))
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(svc, eco, cat, api.Config{Tokens: toks, Logger: quiet})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(api.Bearer{Token: token, Plaintext: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		svc.Close()
	})
	return conn
}

// Each workload runs to its request count against one server (distinct run
// ids keep them apart), every acknowledged write is found, and the ledger
// verifies clean.
func TestWorkloads(t *testing.T) {
	conn := server(t)
	for _, w := range Workloads {
		t.Run(w, func(t *testing.T) {
			rep, err := Run(context.Background(), Config{Conn: conn, Workload: w, Concurrency: 4, Requests: 300,
				Viewers: 20, Accounts: 20, RunID: "t-" + w})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Clean() || rep.OK+countOf(rep.Refused) != 300 || rep.Acked() == 0 {
				var b strings.Builder
				rep.WriteTo(&b)
				t.Fatalf("report:\n%s", b.String())
			}
			if w != Mixed && (rep.Acked() != 300 || len(rep.ByOp) != 1) {
				t.Errorf("%s: %d acknowledged, ops %v; want 300 writes of one kind", w, rep.Acked(), rep.ByOp)
			}
			if w == Mixed && len(rep.ByOp) < 4 {
				t.Errorf("mixed ran only %v", rep.ByOp)
			}
			if rep.P50 <= 0 || rep.P99 < rep.P50 || rep.Max < rep.P99 || rep.Throughput() <= 0 {
				t.Errorf("latency %+v, throughput %f", rep.Latency, rep.Throughput())
			}
		})
	}
}

// A run stopped during its load reports what was acknowledged as not
// checked, never as "0 missing".
func TestInterruptedRunSaysNotChecked(t *testing.T) {
	conn := server(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rep, err := Run(ctx, Config{Conn: conn, Workload: TransferHot, Concurrency: 4, Duration: time.Minute, Accounts: 20, RunID: "t-stop",
		Measure: func() func() {
			time.AfterFunc(300*time.Millisecond, cancel)
			return func() {}
		}})
	if !errors.Is(err, context.Canceled) || rep == nil {
		t.Fatalf("stopped run: %v, %v", rep, err)
	}
	var b strings.Builder
	rep.WriteTo(&b)
	if rep.Acked() == 0 || !strings.Contains(b.String(), "NOT CHECKED") || strings.Contains(b.String(), "missing") || rep.Clean() {
		t.Errorf("stopped run's report:\n%s", b.String())
	}
}

func countOf(m map[codes.Code]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// The check counts an acknowledged write the ledger does not hold, and one
// it holds under another key.
func TestCheckAcksFindsMissing(t *testing.T) {
	conn := server(t)
	rep, err := Run(context.Background(), Config{Conn: conn, Workload: TransferHot, Concurrency: 2, Requests: 10, Accounts: 3, RunID: "t-acks"})
	if err != nil || !rep.Clean() {
		t.Fatalf("%v %+v", err, rep)
	}
	g := &gen{cfg: Config{Concurrency: 2, Progress: io.Discard, Workload: "check"}, rpc: clients{ledger: pb.NewLedgerServiceClient(conn)}}
	real := rep.acks[0]
	missing, err := g.checkAcks(context.Background(), []ack{
		real,
		{id: uuid.NewString(), key: "never-posted"},
		{id: real.id, key: "another-key"},
	})
	if err != nil || missing != 2 {
		t.Fatalf("missing %d (%v), want 2", missing, err)
	}
}
