package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	neturl "net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coinledger/coinledger/internal/cpuclock"
	"github.com/coinledger/coinledger/internal/dbtest"
	"github.com/coinledger/coinledger/internal/pgembed"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		main() // a test's `coinledger` process (crash_test.go); exits
	}
	dbtest.Main(m)
}

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestDemoThenVerify(t *testing.T) {
	url := dbtest.Postgres().NewDatabase(t)
	code, out, stderr := runCmd(t, "demo", "--database-url", url, "--log-level", "warn", "--viewers", "20", "--gifts", "300", "-c", "8")
	if code != exitOK {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"20 purchases", "replayed=true", "promo key reused for 200 coins: refused, AlreadyExists",
		"gift storm: 300 hearts", "gift key reused with another viewer: refused, AlreadyExists", "gift of 1,000,000 coins: refused, FailedPrecondition",
		"gift to oneself: refused, InvalidArgument", "gift without a key: refused, InvalidArgument", "reversing it again: refused, FailedPrecondition",
		"1 clawback(s)", "pending, released", "their 20 wallets hold", ": OK ("} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"purchases [", "gifts [##############################] 300/300 100%"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("demo progress lacks %q:\n%s", want, stderr)
		}
	}
	// The demo runs again on the same ledger; at the default log level its
	// server does not log every request over the progress bars.
	if code, out, stderr := runCmd(t, "demo", "--database-url", url, "--viewers", "5", "--gifts", "20"); code != exitOK || strings.Contains(stderr, "msg=rpc") {
		t.Fatalf("second demo exit %d\n%s\n%s", code, out, stderr)
	}
	for _, args := range [][]string{{"--gifts", "0"}, {"--viewers", "2"}, {"--viewers", "3", "--gifts", "121"}} {
		if code, _, stderr := runCmd(t, append([]string{"demo", "--database-url", url}, args...)...); code != exitError || !strings.Contains(stderr, "--") {
			t.Errorf("demo %v: exit %d, %s", args, code, stderr)
		}
	}
	code, out, stderr = runCmd(t, "verify", "--database-url", url)
	if code != exitOK || !strings.Contains(out, "OK") || !strings.Contains(out, "OK: no closed release day holds pending diamonds") ||
		!strings.Contains(stderr, "check=release-closed") {
		t.Fatalf("verify exit %d: %s\n%s", code, out, stderr)
	}
	// A database without the schema (the cluster's maintenance database) is
	// refused as such, not halfway through the checks on a missing table.
	bare, _ := neturl.Parse(url)
	bare.Path = "/postgres"
	if code, _, stderr := runCmd(t, "verify", "--database-url", bare.String()); code != exitError || !strings.Contains(stderr, "run coinledger migrate") {
		t.Errorf("verify of a database without the schema: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "check=trial-balance step=1/") {
		t.Errorf("verify shows no progress:\n%s", stderr)
	}

	// Corrupt the ledger behind the service's back: verify lists it and exits 1.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE balances SET balance = balance + 1 WHERE account_id = (SELECT id FROM accounts WHERE name = 'COIN:issued') AND shard = 0`); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = runCmd(t, "verify", "--database-url", url)
	if code != exitViolations || !strings.Contains(out, "stored-balance") || !strings.Contains(out, "COIN:issued") {
		t.Fatalf("verify of a corrupted ledger: exit %d\n%s\n%s", code, out, stderr)
	}
}

// With no database URL the binary starts, uses and stops its own PostgreSQL,
// and finds its data again on the next run.
func TestEmbeddedDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	dir := serverTempDir(t)
	data := filepath.Join(dir, "pg")
	t.Setenv("DATABASE_URL", "")
	// Verify of a data directory nothing set up: a mistyped --data-dir must
	// not get a new, empty ledger that verifies clean.
	refusedBeforeSetUp(t, "verify", nil, "no ledger in ")
	if code, out, stderr := runCmd(t, "migrate", "--data-dir", data); code != exitOK {
		t.Fatalf("migrate exit %d\n%s\n%s", code, out, stderr)
	}
	if code, out, stderr := runCmd(t, "verify", "--data-dir", data); code != exitOK || !strings.Contains(out, "0 transactions") {
		t.Fatalf("verify exit %d\n%s\n%s", code, out, stderr)
	}
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("server still running after the command: %v", err)
	}
}

// Ctrl-C during the demo: the command ends and the private server is stopped.
func TestInterruptStopsEmbeddedServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	dir := serverTempDir(t)
	data := filepath.Join(dir, "pg")
	t.Setenv("DATABASE_URL", "")
	// Initialise first so that the interrupt lands in the demo itself.
	if code, _, stderr := runCmd(t, "migrate", "--data-dir", data); code != exitOK {
		t.Fatalf("migrate: %s", stderr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the server is up (its pid file exists).
		for i := 0; i < 400; i++ {
			if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
				time.Sleep(50 * time.Millisecond)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"demo", "--data-dir", data, "--log-level", "warn"}, &out, &errOut)
	t.Logf("demo exit %d: %s", code, strings.TrimSpace(errOut.String()))
	cancel()
	if code != exitOK && code != exitError {
		t.Errorf("interrupted demo: exit %d, %s", code, errOut.String())
	}
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("server still running after the interrupted command: %v", err)
	}
}

// serverTempDir is a temporary directory the embedded server's user can enter.
// refusedBeforeSetUp runs command with args on a fresh --data-dir and
// checks that it fails saying want without having set a database up there.
func refusedBeforeSetUp(t *testing.T, command string, args []string, want string) {
	t.Helper()
	dataDir := filepath.Join(t.TempDir(), "pg")
	code, _, stderr := runCmd(t, append([]string{command, "--data-dir", dataDir}, args...)...)
	if code != exitError || !strings.Contains(stderr, want) {
		t.Errorf("%s %v: exit %d, want %q\n%s", command, args, code, want, stderr)
	}
	if _, err := os.Stat(dataDir); err == nil {
		t.Errorf("%s %v set a database up before refusing", command, args)
	}
}

func serverTempDir(t *testing.T) string {
	t.Helper()
	dir, err := pgembed.MkdirTemp("coinledger-cmd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestUsage(t *testing.T) {
	if code, out, _ := runCmd(t, "help"); code != exitOK || !strings.Contains(out, "Commands:") {
		t.Fatalf("help: %d %s", code, out)
	}
	if code, out, stderr := runCmd(t); code != exitError || out != "" || !strings.Contains(stderr, "Commands:") {
		t.Fatalf("no command: %d %q %s", code, out, stderr)
	}
	if code, _, stderr := runCmd(t, "frobnicate"); code != exitError || !strings.Contains(stderr, "unknown command") {
		t.Fatalf("unknown command: %d %s", code, stderr)
	}
	if code, _, _ := runCmd(t, "verify", "--log-level", "loud"); code != exitError {
		t.Fatalf("bad log level: %d", code)
	}
}

// The commands wrap stdout and stderr to stop on a broken pipe; the demo's
// progress bar must still find the terminal behind stderr to draw in place.
func TestBrokenPipeWrapperShowsTheTerminal(t *testing.T) {
	var w io.Writer = stopOnBrokenPipe{os.Stderr, func() {}}
	if u, ok := w.(interface{ Unwrap() io.Writer }); !ok || u.Unwrap() != os.Stderr {
		t.Error("stopOnBrokenPipe hides the writer it wraps from the progress bar")
	}
}

// A database URL or token given in the environment is used and never
// printed: the flag package prints flags' defaults in its usage, which a
// mistyped flag sends to the log.
func TestSecretsFromTheEnvironmentStayOutOfUsage(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://u:s3cretpw@127.0.0.1:1/db")
	t.Setenv("COINLEDGER_TOKEN", "tok-secret-0123456789")
	leaks := func(s string) bool { return strings.Contains(s, "s3cretpw") || strings.Contains(s, "tok-secret") }
	for _, cmd := range []string{"migrate", "verify", "serve", "demo", "bench"} {
		code, out, stderr := runCmd(t, cmd, "--no-such-flag")
		if code != exitError || !strings.Contains(stderr, "-database-url URL") || leaks(out+stderr) {
			t.Errorf("%s with a mistyped flag: exit %d\n%s%s", cmd, code, out, stderr)
		}
	}
	// Still used: the URL's database refuses the connection, and the token
	// lets the demo call a server it names (which is not there).
	if code, out, stderr := runCmd(t, "migrate"); code != exitError || !strings.Contains(stderr, "127.0.0.1:1") || leaks(out+stderr) {
		t.Errorf("migrate on DATABASE_URL: exit %d\n%s%s", code, out, stderr)
	}
	if code, out, stderr := runCmd(t, "demo", "--addr", "127.0.0.1:1"); code != exitError || !strings.Contains(stderr, "Unavailable") || leaks(out+stderr) {
		t.Errorf("demo with COINLEDGER_TOKEN: exit %d\n%s%s", code, out, stderr)
	}
}

// bench with no --addr starts its own private PostgreSQL (in a temporary
// directory, removed afterwards) and server, and reports a clean check.
func TestWriteCPU(t *testing.T) {
	second := cpuclock.Reading{Busy: 1500 * time.Millisecond, Idle: 500 * time.Millisecond, Self: 700 * time.Millisecond, Tree: 800 * time.Millisecond}
	tests := []struct {
		name     string
		cpu      cpuclock.Reading
		err      error
		requests int
		embedded bool
		want     string
	}{
		{"embedded", second, nil, 5000, true, "cpu          300 µs a request on the machine (this process 140, PostgreSQL 160), cores 25% idle\n"},
		{"a database elsewhere", second, nil, 5000, false, "cpu          300 µs a request on the machine (this process 140), cores 25% idle\n"},
		{"no /proc", cpuclock.Reading{}, errors.New("open /proc/stat: no such file"), 5000, true, "cpu          not measured: open /proc/stat: no such file\n"},
		{"no requests", second, nil, 0, true, ""},
		{"under a tick", cpuclock.Reading{}, nil, 10, true, ""},
	}
	for _, tt := range tests {
		var b strings.Builder
		writeCPU(&b, tt.cpu, tt.err, tt.requests, tt.embedded)
		if b.String() != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, b.String(), tt.want)
		}
	}
}

func TestBenchEmbedded(t *testing.T) {
	// A temporary directory of its own for the bench to make its cluster in,
	// so that another process's run (another test binary's bench, say) is
	// not taken for one this bench left behind. Reachable by the postgres
	// user when the tests run as root.
	tmp, err := pgembed.MkdirTemp("coinledger-bench-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	t.Setenv("TMPDIR", tmp)
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "coinledger-run-*"))
	profile := filepath.Join(t.TempDir(), "cpu.pprof")
	traceFile := filepath.Join(t.TempDir(), "bench.trace")
	code, out, stderr := runCmd(t, "bench", "-workload", "transfer-hot", "-c", "4", "-n", "200", "--accounts", "10", "--log-level", "warn", "--cpu-profile", profile, "--trace", traceFile, "--commit-linger", "0")
	if code != exitOK {
		t.Fatalf("bench exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"transfer-hot, 4 concurrent callers", "requests     200 ok", "acknowledged 200 writes, 0 missing", ": 0 violations"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr, "set up accounts 10 of 10") {
		t.Errorf("bench shows no set-up progress:\n%s", stderr)
	}
	if runtime.GOOS == "linux" && !regexp.MustCompile(`(?m)^cpu +\d+ µs a request on the machine \(this process \d+, PostgreSQL \d+\), cores \d+% idle$`).MatchString(out) {
		t.Errorf("bench output lacks the CPU a request:\n%s", out)
	}
	if p, err := os.ReadFile(profile); err != nil || len(p) < 2 || p[0] != 0x1f || p[1] != 0x8b {
		t.Errorf("--cpu-profile wrote no gzipped profile: %d bytes, %v", len(p), err)
	}
	if tr, err := os.ReadFile(traceFile); err != nil || !bytes.HasPrefix(tr, []byte("go 1.")) {
		t.Errorf("--trace wrote no execution trace: %.20q, %v", tr, err)
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "coinledger-run-*"))
	if len(after) > len(before) {
		t.Errorf("bench left temporary directories behind: %v (before %v)", after, before)
	}
	// Flags that cannot run are refused before a database is started.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-workload", "nope", "-n", "1"}, `unknown workload "nope"`},
		{[]string{"-c", "0"}, "concurrency must be at least 1"},
		{[]string{"-n", "0", "-d", "-5s"}, "positive request count or duration"},
		{[]string{"-viewers", "-1"}, "viewers must be at least 1"},
	} {
		refusedBeforeSetUp(t, "bench", tc.args, tc.want)
	}
	code, _, stderr = runCmd(t, "bench", "--addr", "127.0.0.1:1")
	if code != exitError || !strings.Contains(stderr, "--token") {
		t.Errorf("--addr without a token: exit %d\n%s", code, stderr)
	}
}
