package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/coinledger/coinledger/internal/pgembed"
	"github.com/coinledger/coinledger/ledger"
	"github.com/coinledger/coinledger/ledger/economy"
	"github.com/coinledger/coinledger/ledger/postgres"
)

const usage = `coinledger — the double-entry money core of the coin economy.

Usage:
  coinledger <command> [flags]

Commands:
  migrate   apply the embedded schema migrations
  verify    check every ledger invariant; exit 1 listing violations
            (migrates only the private PostgreSQL, never a --database-url)
  demo      run a small livestream economy through the gRPC server (with no
            --addr it starts one) and print a short report and verify
            (coinledger demo --help for its flags)
  serve     run the gRPC server (coinledger serve --help for its flags)
  bench     load a server over gRPC and check the ledger afterwards; with no
            --addr it starts a private PostgreSQL and a server itself
            (coinledger bench --help for its flags)
  help      this list (with no command it is printed as an error, exit 2)

Common flags (every command):
  --database-url URL   PostgreSQL or CockroachDB URL (env DATABASE_URL); when
                       absent, a private PostgreSQL is started in --data-dir
  --data-dir DIR       the private PostgreSQL's data directory
                       (default %s)
  --log-level LEVEL    debug, info, warn or error (default info)
`

// Exit codes.
const (
	exitOK         = 0
	exitViolations = 1 // verify found broken invariants
	exitError      = 2 // bad usage or the command could not run
)

type common struct {
	databaseURL string
	dataDir     string // empty: a temporary one, removed afterwards
	log         *slog.Logger
	level       slog.Level
	stderr      io.Writer       // progress
	linger      time.Duration   // the longest a commit lane waits to fill a batch
	embedded    *pgembed.Server // the private PostgreSQL, when this command started one
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 { // a script's empty $COMMAND must not pass for success
		fmt.Fprintf(stderr, usage, pgembed.DefaultDataDir())
		return exitError
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(stdout, usage, pgembed.DefaultDataDir())
		return exitOK
	}
	cmd, args := args[0], args[1:]
	commands := map[string]func(context.Context, *common, []string, io.Writer) (int, error){
		"migrate": cmdMigrate,
		"verify":  cmdVerify,
	}
	var demo demoOptions
	commands["demo"] = func(ctx context.Context, c *common, args []string, out io.Writer) (int, error) {
		return cmdDemo(ctx, c, &demo, args, out)
	}
	var serve serveOptions
	commands["serve"] = func(ctx context.Context, c *common, _ []string, out io.Writer) (int, error) {
		return cmdServe(ctx, c, &serve, out)
	}
	var bench benchOptions
	commands["bench"] = func(ctx context.Context, c *common, args []string, out io.Writer) (int, error) {
		return cmdBench(ctx, c, &bench, args, out)
	}
	f, ok := commands[cmd]
	if !ok {
		fmt.Fprintf(stderr, "coinledger: unknown command %q\n\n", cmd)
		fmt.Fprintf(stderr, usage, pgembed.DefaultDataDir())
		return exitError
	}
	if cmd != "serve" { // a server's lost log line is no reason to stop serving
		var stop context.CancelFunc
		ctx, stop = context.WithCancel(ctx)
		defer stop()
		stdout, stderr = stopOnBrokenPipe{stdout, stop}, stopOnBrokenPipe{stderr, stop}
	}
	fs := flag.NewFlagSet("coinledger "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &common{stderr: stderr, linger: ledger.DefaultLinger}
	secretFlag(fs, &c.databaseURL, "database-url", "DATABASE_URL", "PostgreSQL or CockroachDB `URL`; empty starts a private PostgreSQL")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	switch cmd {
	case "serve", "bench", "demo":
		fs.DurationVar(&c.linger, "commit-linger", ledger.DefaultLinger, "the longest a commit lane waits for more requests before committing a batch that is not full (it waits a fifth of its recent commits' time, up to this); 0: not at all (bench and demo: for the server they start)")
	}
	switch cmd {
	case "serve":
		serve.register(fs)
	case "bench":
		bench.register(fs)
	case "demo":
		demo.register(fs)
	}
	dataDir := pgembed.DefaultDataDir()
	if cmd == "bench" {
		dataDir = "" // a fresh one per run, so that a figure does not depend on earlier runs
	}
	fs.StringVar(&c.dataDir, "data-dir", dataDir, "data directory of the private PostgreSQL")
	if err := fs.Parse(args); err != nil {
		return exitError
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "coinledger: --log-level: %v\n", err)
		return exitError
	}
	c.level = lv
	c.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	code, err := f(ctx, c, fs.Args(), stdout)
	if err != nil {
		fmt.Fprintf(stderr, "coinledger %s: %v\n", cmd, err)
		if code == exitOK {
			code = exitError
		}
	}
	return code
}

// stopOnBrokenPipe stops a command once a write finds its reader gone:
// nobody reads what it would print.
type stopOnBrokenPipe struct {
	w    io.Writer
	stop context.CancelFunc
}

// Unwrap lets the progress bar see a terminal behind it.
func (s stopOnBrokenPipe) Unwrap() io.Writer { return s.w }

func (s stopOnBrokenPipe) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if errors.Is(err, syscall.EPIPE) {
		s.stop()
	}
	return n, err
}

// secretFlag registers a string flag that, when not given, takes the value
// of the environment variable env. That value is not the flag's default: the
// flag package prints defaults in its usage, which a mistyped flag sends to
// the log, and a database URL or a token must not go there.
func secretFlag(fs *flag.FlagSet, p *string, name, env, usage string) {
	*p = os.Getenv(env)
	fs.Func(name, usage+" (env "+env+")", func(v string) error { *p = v; return nil })
}

// database returns the URL to use, starting the private PostgreSQL when no
// URL was given, and migrates it (a given database only when migrate is set:
// verify must not change the schema it checks). Without migrate it opens only
// a ledger that exists: a new, empty one in a mistyped --data-dir would
// verify clean, an OK about nothing, and an unmigrated database would fail
// on a missing table halfway through. stop releases what it started.
func (c *common) database(ctx context.Context, migrate bool) (url string, stop func(), err error) {
	stop = func() {}
	url = c.databaseURL
	if !migrate {
		if err := c.ledgerExists(ctx); err != nil {
			return "", stop, err
		}
	}
	if url == "" {
		dir, removeDir := c.dataDir, func() {}
		if dir == "" {
			pgembed.RemoveAbandoned(filepath.Join(os.TempDir(), "coinledger-run-*")) // left by a killed bench
			tmp, err := pgembed.MkdirTemp("coinledger-run-")
			if err != nil {
				return "", stop, err
			}
			dir, removeDir = filepath.Join(tmp, "data"), func() { os.RemoveAll(tmp) }
		}
		srv, err := pgembed.Start(ctx, pgembed.Config{DataDir: dir, Logger: c.log})
		if err != nil {
			removeDir()
			return "", stop, err
		}
		stop = func() {
			if err := srv.Stop(); err != nil {
				c.log.Error("stopping embedded PostgreSQL", "err", err)
			}
			removeDir()
		}
		if err := srv.CreateDatabase(ctx, "coinledger"); err != nil {
			stop()
			return "", func() {}, err
		}
		url = srv.URL("coinledger")
		c.embedded = srv
		c.log.Info("embedded PostgreSQL running", "data_dir", dir)
		migrate = true
	}
	if !migrate {
		return url, stop, nil
	}
	if _, err := postgres.Migrate(ctx, url, c.log); err != nil {
		stop()
		return "", func() {}, err
	}
	return url, stop, nil
}

// ledgerExists refuses a private data directory that no command set up, and
// a database that lacks some of the schema's migrations.
func (c *common) ledgerExists(ctx context.Context) error {
	if c.databaseURL == "" {
		if !pgembed.Initialized(c.dataDir) {
			return fmt.Errorf("no ledger in %s: give the --data-dir that serve, demo or migrate set up, or a --database-url", c.dataDir)
		}
		return nil
	}
	pending, err := postgres.Pending(ctx, c.databaseURL)
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		return fmt.Errorf("the database lacks %d of coinledger's schema migrations (the first: %s): run coinledger migrate with the same --database-url first",
			len(pending), pending[0])
	}
	return nil
}

// open returns the ledger service and its store on the database; close
// releases everything.
func (c *common) open(ctx context.Context, migrate bool) (*ledger.Service, *postgres.DB, func(), error) {
	url, stop, err := c.database(ctx, migrate)
	if err != nil {
		return nil, nil, nil, err
	}
	db, err := postgres.Open(ctx, url, postgres.Config{Logger: c.log})
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	linger := c.linger
	if linger <= 0 {
		linger = -1 // none; the zero Options value means the default
	}
	svc := ledger.NewService(db, ledger.Options{Logger: c.log, Linger: linger})
	return svc, db, func() { svc.Close(); db.Close(); stop() }, nil
}

func cmdMigrate(ctx context.Context, c *common, args []string, stdout io.Writer) (int, error) {
	if len(args) > 0 {
		return exitError, fmt.Errorf("unexpected arguments %q", args)
	}
	_, stop, err := c.database(ctx, true)
	if err != nil {
		return exitError, err
	}
	stop()
	fmt.Fprintln(stdout, "schema is up to date")
	return exitOK, nil
}

func cmdVerify(ctx context.Context, c *common, args []string, stdout io.Writer) (int, error) {
	if len(args) > 0 {
		return exitError, fmt.Errorf("unexpected arguments %q", args)
	}
	svc, db, closeAll, err := c.open(ctx, false)
	if err != nil {
		return exitError, err
	}
	defer closeAll()
	return verifyReport(ctx, c, svc, economy.New(svc, economy.NewCatalog(db, nil), nil), stdout)
}

// verifyReport prints the verify report, the ledger's checks and then the
// economy's, and turns it into an exit code; progress goes to the log,
// since the checks scan whole tables.
func verifyReport(ctx context.Context, c *common, svc *ledger.Service, eco *economy.Economy, stdout io.Writer) (int, error) {
	r, err := svc.VerifyWithProgress(ctx, func(check string, n, of int) {
		c.log.Info("verifying", "check", check, "step", fmt.Sprintf("%d/%d", n, of))
	})
	if err != nil {
		return exitError, err
	}
	c.log.Info("verifying", "check", economy.CheckReleaseClosed)
	economic, omitted, err := eco.Verify(ctx, func(read int) {
		c.log.Info("verifying", "check", economy.CheckReleaseClosed, "pending_accounts_read", read)
	})
	if err != nil {
		return exitError, err
	}
	r.Violations, r.Omitted = append(r.Violations, economic...), r.Omitted+omitted
	if _, err := r.WriteTo(stdout); err != nil {
		return exitError, err
	}
	if !r.Clean() {
		return exitViolations, errors.New("ledger invariants are violated")
	}
	fmt.Fprintln(stdout, "OK: no closed release day holds pending diamonds")
	return exitOK, nil
}
