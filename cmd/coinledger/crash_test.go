package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/coinledger/coinledger/internal/pgembed"
	pb "github.com/coinledger/coinledger/proto/coinledger/v1"
)

// childEnv makes the test binary run main() instead of the tests, so that a
// test can start `coinledger serve` as a process of its own and kill it.
const childEnv = "COINLEDGER_TEST_RUN_MAIN"

const (
	crashViewers   = 20
	crashPackCoins = 100_000
	crashPromo     = 30
	crashGiftCoins = 5
)

// A server killed in the middle of a gift storm loses no acknowledged gift,
// and every gift whose answer was lost commits exactly once when its caller
// retries with the same key after the restart. Twice: killing only the
// server (its PostgreSQL keeps running, orphaned, and the restart must take
// the data directory back from it), then killing both (PostgreSQL recovers
// from its WAL).
func TestCrashLosesNoAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL clusters and server processes")
	}
	const token = "tok-crash-test-0123456789abcdef"
	data, tokens, addr := serveProcessSetUp(t, "all iap,gifting,creator-portal,finance,admin "+token)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gifts, ledgerc := pb.NewGiftServiceClient(conn), pb.NewLedgerServiceClient(conn)

	t.Cleanup(func() {
		// A failure between a kill and the restart leaves PostgreSQL
		// running without its server: stop it at once (SIGQUIT).
		pid, _, err := pgembed.Postmaster(data)
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && string(comm) == "postgres\n" {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
		}
	})
	srv := startServeProcess(t, data, addr, tokens, "warn", nil)
	waitServing(t, ctx, conn, srv.out, srv.out)
	storm := setUpCrashStorm(t, ctx, conn)

	acked := map[string]string{}   // gift key -> transaction id
	var lost []*pb.SendGiftRequest // gifts whose answer never came
	for round, killDatabase := range []bool{false, true} {
		pgPID, socketDir, err := pgembed.Postmaster(data)
		if err != nil {
			t.Fatal(err)
		}
		a, l := storm.runUntilKilled(t, ctx, gifts, round, 150, func() {
			if killDatabase {
				// The database dies first, under a server still answering:
				// whatever it acknowledged must have been durable at the
				// time. The postmaster leads its own process group; every
				// backend dies with it.
				if err := syscall.Kill(-pgPID, syscall.SIGKILL); err != nil {
					t.Fatalf("round %d: kill PostgreSQL: %v", round, err)
				}
				waitGone(t, pgPID)
				time.Sleep(100 * time.Millisecond) // callers meet the dead database
			}
			srv.kill(t, killDatabase)
			if !killDatabase {
				if err := syscall.Kill(pgPID, 0); err != nil {
					t.Fatalf("round %d: PostgreSQL (pid %d) did not outlive the killed server: %v", round, pgPID, err)
				}
			}
		})
		t.Logf("round %d (database killed too: %v): %d gifts acknowledged, %d answers lost", round, killDatabase, len(a), len(l))
		if len(a) < 150 {
			t.Fatalf("round %d: only %d gifts acknowledged before the kill", round, len(a))
		}
		for k, id := range a {
			acked[k] = id
		}
		lost = append(lost, l...)

		srv = startServeProcess(t, data, addr, tokens, "warn", nil)
		waitServing(t, ctx, conn, srv.out, srv.out)
		if _, err := os.Stat(socketDir); !os.IsNotExist(err) {
			t.Errorf("round %d: the old server's socket directory is left behind: %v", round, err)
		}
		for k, id := range acked {
			got, err := ledgerc.GetTransaction(ctx, &pb.GetTransactionRequest{Id: id})
			if err != nil || got.Transaction.IdempotencyKey != "gift:"+k {
				t.Fatalf("round %d: acknowledged gift %s (%s) after the restart: %v %v", round, k, id, got, err)
			}
		}
		// The caller retries with the same key and content: the gift commits
		// once, whether or not it had before the kill.
		for _, req := range l {
			first, err := gifts.SendGift(ctx, req)
			if err != nil {
				t.Fatalf("round %d: retrying gift %s after the restart: %v", round, req.IdempotencyKey, err)
			}
			again, err := gifts.SendGift(ctx, req)
			if err != nil || again.Transaction.Id != first.Transaction.Id {
				t.Fatalf("round %d: second retry of gift %s: %v %v, first %s", round, req.IdempotencyKey, again, err, first.Transaction.Id)
			}
		}
	}

	// Exactly once: the viewers hold what they bought, less every gift sent.
	var coins int64
	for i := range crashViewers {
		w, err := gifts.GetWallet(ctx, &pb.GetWalletRequest{User: storm.viewer(i)})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []*pb.Money{w.Paid, w.Promo} {
			n, err := strconv.ParseInt(m.Amount, 10, 64)
			if err != nil {
				t.Fatalf("wallet amount %q: %v", m.Amount, err)
			}
			coins += n
		}
	}
	sent := int64(len(acked) + len(lost))
	if want := crashViewers*(crashPackCoins+crashPromo) - sent*crashGiftCoins; coins != want {
		t.Errorf("viewers hold %d coins; %d gifts sent leave %d", coins, sent, want)
	}
	v, err := ledgerc.Verify(ctx, &pb.VerifyRequest{})
	if err != nil || len(v.Violations) > 0 {
		t.Fatalf("verify after the crashes: %v %v", v, err)
	}
	srv.stop(t)
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); !os.IsNotExist(err) {
		t.Errorf("PostgreSQL still running after serve stopped: %v", err)
	}
}

// serveProcess is `coinledger serve` running as a child process.
type serveProcess struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed once it has exited; err is then its Wait's
	err  error
	data string // its PostgreSQL's data directory
}

// serveProcessSetUp makes a data directory's path, a tokens file holding
// line and a free address for a server process.
func serveProcessSetUp(t *testing.T, line string) (data, tokens, addr string) {
	t.Helper()
	dir := serverTempDir(t)
	tokens = filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "pg"), tokens, freeAddr(t)
}

// startServeProcess starts serve logging at level into logTo, or into its
// out buffer when logTo is nil.
func startServeProcess(t *testing.T, data, addr, tokens, level string, logTo *os.File) *serveProcess {
	t.Helper()
	p := &serveProcess{out: &syncBuffer{}, done: make(chan struct{}), data: data}
	p.cmd = exec.Command(os.Args[0], "serve", "--data-dir", data, "--listen", addr, "--metrics-listen", "",
		"--tokens-file", tokens, "--log-level", level)
	p.cmd.Env = append(os.Environ(), childEnv+"=1", "DATABASE_URL=")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if logTo != nil {
		p.cmd.Stdout, p.cmd.Stderr = logTo, logTo
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		// A failed test must not leave a server or its PostgreSQL behind.
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(30 * time.Second):
				_ = p.cmd.Process.Kill()
			}
		}
	})
	return p
}

// kill SIGKILLs the server. After its private PostgreSQL was killed
// (dbKilled) the server may have stopped already: it stops by itself when
// that database exits (cmdServe), and must have said why.
func (p *serveProcess) kill(t *testing.T, dbKilled bool) {
	t.Helper()
	err := p.cmd.Process.Kill()
	<-p.done
	switch {
	case err == nil:
	case errors.Is(err, os.ErrProcessDone) && dbKilled:
		if !strings.Contains(p.out.String(), "stopped unexpectedly") {
			t.Fatalf("serve stopped before it was killed, not for its database (%v):\n%s", p.err, p.out.String())
		}
	default:
		pgLog, _ := os.ReadFile(filepath.Join(p.data, "coinledger-server.log"))
		t.Fatalf("kill serve: %v; it had exited: %v\n%s\nits PostgreSQL's log:\n%s", err, p.err, p.out.String(), pgLog)
	}
}

func (p *serveProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("serve after SIGTERM: %v\n%s", p.err, p.out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not stop on SIGTERM\n%s", p.out.String())
	}
}

// waitGone waits for a killed process that is not our child to disappear.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d still there 3 s after SIGKILL", pid)
}

// crashStorm is the gift storm of the crash test: viewers with a purchase
// and promo coins gifting one creator.
type crashStorm struct {
	creator string
	sentAt  *timestamppb.Timestamp
}

func (s *crashStorm) viewer(i int) string { return fmt.Sprintf("crash-v%d", i) }

func (s *crashStorm) gift(key string, caller int) *pb.SendGiftRequest {
	return &pb.SendGiftRequest{IdempotencyKey: key, Viewer: s.viewer(caller % crashViewers), Creator: s.creator,
		Coins: crashGiftCoins, StreamId: "crash", SentAt: s.sentAt}
}

func setUpCrashStorm(t *testing.T, ctx context.Context, conn *grpc.ClientConn) *crashStorm {
	t.Helper()
	catalog, purchases := pb.NewCatalogServiceClient(conn), pb.NewPurchaseServiceClient(conn)
	s := &crashStorm{creator: "crash-star"}
	usd := func(a string) *pb.Money { return &pb.Money{Amount: a, Asset: "USD"} }
	pack, err := catalog.AddCoinPack(ctx, &pb.AddCoinPackRequest{PackId: "crash-pack", Channel: pb.Channel_CHANNEL_WEB,
		Coins: crashPackCoins, Prices: []*pb.Money{usd("999.99")}, FeeRate: "0.029", IdempotencyKey: "crash-pack"})
	if err != nil {
		t.Fatal(err)
	}
	rule, err := catalog.AddShareRule(ctx, &pb.AddShareRuleRequest{Creator: s.creator, CreatorShare: "0.5",
		HoldingPeriod: durationpb.New(7 * 24 * time.Hour), DiamondValue: usd("0.005"), IdempotencyKey: "crash-share"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.RegisterCreator(ctx, &pb.RegisterCreatorRequest{Creator: s.creator}); err != nil {
		t.Fatal(err)
	}
	// Reference data takes effect after the server's lead time.
	for _, at := range []*timestamppb.Timestamp{pack.EffectiveAt, rule.EffectiveAt} {
		time.Sleep(time.Until(at.AsTime()) + 50*time.Millisecond)
	}
	for i := range crashViewers {
		if _, err := purchases.Purchase(ctx, &pb.PurchaseRequest{Channel: pb.Channel_CHANNEL_WEB, StoreTransactionId: fmt.Sprintf("crash-buy-%d", i),
			User: s.viewer(i), PackId: "crash-pack", AmountPaid: usd("999.99"), PurchasedAt: timestamppb.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := purchases.GrantPromo(ctx, &pb.GrantPromoRequest{IdempotencyKey: fmt.Sprintf("crash-promo-%d", i),
			User: s.viewer(i), Coins: crashPromo, Reason: "crash test"}); err != nil {
			t.Fatal(err)
		}
	}
	s.sentAt = timestamppb.Now()
	return s
}

// runUntilKilled sends gifts from 16 callers until at least ackBeforeKill
// are acknowledged, then calls kill while they go on sending; each caller
// stops at its first failed call, which must come after the kill and be
// Unavailable. It returns the acknowledged gifts (key ->
// transaction id) and the requests whose answers were lost.
func (s *crashStorm) runUntilKilled(t *testing.T, ctx context.Context, gifts pb.GiftServiceClient, round, ackBeforeKill int, kill func()) (map[string]string, []*pb.SendGiftRequest) {
	t.Helper()
	const callers = 16
	var (
		mu      sync.Mutex
		acked   = map[string]string{}
		lost    []*pb.SendGiftRequest
		killed  atomic.Bool
		wg      sync.WaitGroup
		reached = make(chan struct{})
		once    sync.Once
	)
	for w := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				req := s.gift(fmt.Sprintf("crash-r%d-w%d-%d", round, w, n), w)
				r, err := gifts.SendGift(ctx, req)
				mu.Lock()
				if err != nil {
					// Unavailable either way: the server gone (the
					// transport's code) or its database (the server's).
					if !killed.Load() || status.Code(err) != codes.Unavailable {
						t.Errorf("round %d: gift %s (killed: %v): %v", round, req.IdempotencyKey, killed.Load(), err)
					}
					lost = append(lost, req)
					mu.Unlock()
					once.Do(func() { close(reached) }) // not enough acks: the errors say why
					return
				}
				acked[req.IdempotencyKey] = r.Transaction.Id
				if len(acked) >= ackBeforeKill {
					once.Do(func() { close(reached) })
				}
				mu.Unlock()
			}
		}()
	}
	<-reached
	killed.Store(true)
	kill()
	wg.Wait()
	return acked, lost
}

// A server whose log pipe breaks (a log collector restarting) keeps
// serving, and still stops cleanly with its PostgreSQL: Go would otherwise
// end it at its next log line with SIGPIPE, leaving PostgreSQL orphaned.
func TestServeOutlivesItsLogPipe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a server process")
	}
	const token = "tok-pipe-test-0123456789abcdef"
	data, tokens, addr := serveProcessSetUp(t, "finance finance "+token)
	logs, logWriter, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Without the fix serve dies at its first log line and leaves its
		// PostgreSQL running.
		if pid, _, err := pgembed.Postmaster(data); err == nil {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
		}
	})
	p := startServeProcess(t, data, addr, tokens, "info", logWriter)
	logWriter.Close()
	// Read its log until it serves, then break the pipe.
	buf := make([]byte, 64<<10)
	for !strings.Contains(p.out.String(), "serving gRPC") {
		n, err := logs.Read(buf)
		if err != nil {
			t.Fatalf("serve's log ended before it served: %v\n%s", err, p.out.String())
		}
		p.out.Write(buf[:n])
	}
	logs.Close()

	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 3 { // each is logged, into the broken pipe
		if _, err := pb.NewLedgerServiceClient(conn).ListAccounts(ctx, &pb.ListAccountsRequest{PageSize: 1}); err != nil {
			t.Fatalf("request %d after the log pipe broke: %v", i, err)
		}
	}
	p.stop(t)
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); !os.IsNotExist(err) {
		t.Errorf("PostgreSQL still running after serve stopped: %v", err)
	}
}

// A command other than serve whose output pipe closes (`coinledger verify |
// head`) stops, as if interrupted, and stops its private PostgreSQL: Go
// would otherwise end it with SIGPIPE at that write, leaving PostgreSQL
// running.
func TestCommandsStopOnBrokenPipe(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and command processes")
	}
	for _, tt := range []struct {
		name   string
		args   []string
		stdout bool // the pipe that closes: stdout, else stderr
	}{
		{"verify's report", []string{"verify"}, true},
		{"demo's log", []string{"demo", "--viewers", "5", "--gifts", "50"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(serverTempDir(t), "pg")
			if code, _, stderr := runCmd(t, "migrate", "--data-dir", data); code != exitOK {
				t.Fatalf("migrate: %d\n%s", code, stderr)
			}
			t.Cleanup(func() {
				if pid, _, err := pgembed.Postmaster(data); err == nil {
					_ = syscall.Kill(pid, syscall.SIGQUIT)
				}
			})
			read, closed, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			read.Close()
			defer closed.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var out syncBuffer
			cmd := exec.CommandContext(ctx, os.Args[0], append(tt.args, "--data-dir", data)...)
			cmd.Env = append(os.Environ(), childEnv+"=1", "DATABASE_URL=")
			cmd.Stdout, cmd.Stderr = &out, closed
			if tt.stdout {
				cmd.Stdout, cmd.Stderr = closed, &out
			}
			err = cmd.Run()
			if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != exitError {
				t.Errorf("%v: %v, want exit %d\n%s", tt.args, err, exitError, out.String())
			}
			if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); !os.IsNotExist(err) {
				t.Errorf("PostgreSQL still running after %v stopped: %v", tt.args, err)
			}
		})
	}
}
