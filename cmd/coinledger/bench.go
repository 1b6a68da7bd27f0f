package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"

	"github.com/coinledger/coinledger/internal/cpuclock"
	"github.com/coinledger/coinledger/internal/loadgen"
	"github.com/coinledger/coinledger/ledger"
)

type benchOptions struct {
	client            clientOptions
	workload          string
	concurrency       int
	requests          int
	duration          time.Duration
	viewers, accounts int
	cpuProfile        string
	trace             string
}

func (o *benchOptions) register(fs *flag.FlagSet) {
	o.client.register(fs, "iap, gifting, creator-portal, finance, admin and treasury")
	fs.StringVar(&o.workload, "workload", loadgen.GiftHot, strings.Join(loadgen.Workloads, ", "))
	fs.IntVar(&o.concurrency, "c", 32, "concurrent callers")
	fs.IntVar(&o.requests, "n", 0, "stop after this many requests (0: run for -d)")
	fs.DurationVar(&o.duration, "d", 30*time.Second, "how long to run when -n is 0")
	fs.IntVar(&o.viewers, "viewers", 1000, "gift-hot, mixed: viewers, each buying coins before the run")
	fs.IntVar(&o.accounts, "accounts", 1000, "transfer workloads: accounts, each funded before the run")
	fs.StringVar(&o.cpuProfile, "cpu-profile", "", "write a CPU profile of the measured load (this process: the load generator and, with no --addr, the server) to this file")
	fs.StringVar(&o.trace, "trace", "", "write a Go execution trace of the measured load (this process, as for --cpu-profile) to this file; docs/scripts/lanetrace reads it")
}

// alongside measures the load with next as well as with measure (which may be
// nil); next starts last and stops first.
func alongside(measure, next func() func()) func() func() {
	if measure == nil {
		return next
	}
	return func() func() {
		stopMeasure := measure()
		stopNext := next()
		return func() {
			stopNext()
			stopMeasure()
		}
	}
}

// cmdBench runs a workload against a server, prints what it measured, and
// exits 1 if a request failed, an acknowledged write is missing or the ledger
// does not verify.
func cmdBench(ctx context.Context, c *common, o *benchOptions, args []string, stdout io.Writer) (int, error) {
	if len(args) > 0 {
		return exitError, fmt.Errorf("unexpected arguments %q", args)
	}
	cfg := loadgen.Config{Workload: o.workload, Concurrency: o.concurrency, Requests: o.requests,
		Duration: o.duration, Viewers: o.viewers, Accounts: o.accounts, Progress: c.stderr}
	if err := cfg.Check(); err != nil {
		return exitError, err
	}
	if o.client.addr == "" && c.databaseURL != "" {
		c.log.Warn("bench: the server runs on --database-url; the figure includes whatever else that database does")
	}
	conn, local, closeAll, err := c.dial(ctx, &o.client)
	if err != nil {
		return exitError, err
	}
	defer closeAll()
	cfg.Conn = conn
	recorders := []struct {
		flag, path string
		start      func(io.Writer) error
		stop       func()
	}{
		{"--cpu-profile", o.cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile},
		{"--trace", o.trace, trace.Start, trace.Stop},
	}
	for _, r := range recorders {
		if r.path == "" {
			continue
		}
		f, err := os.Create(r.path)
		if err != nil {
			return exitError, fmt.Errorf("%s: %w", r.flag, err)
		}
		defer f.Close()
		cfg.Measure = alongside(cfg.Measure, func() func() {
			if err := r.start(f); err != nil {
				c.log.Error(r.flag, "err", err)
			}
			return r.stop
		})
	}
	// The server in this process reports its commit batches during the load:
	// their mean size is what a request's cost turns on. And the CPU the
	// load took, split between this process and the database: a slower
	// machine moves both parts, a change to the Go code only one.
	var batches ledger.CommitStats
	var cpu cpuclock.Reading
	var cpuErr error
	if local != nil {
		db := 0
		if c.embedded != nil {
			db = c.embedded.PID()
		}
		cfg.Measure = alongside(cfg.Measure, func() func() {
			start := local.CommitStats()
			startCPU, startErr := cpuclock.Read(db)
			return func() {
				batches = local.CommitStats().Sub(start)
				endCPU, endErr := cpuclock.Read(db)
				cpu, cpuErr = endCPU.Sub(startCPU), errors.Join(startErr, endErr)
			}
		})
	}
	rep, err := loadgen.Run(ctx, cfg)
	if rep != nil {
		rep.WriteTo(stdout)
	}
	if batches.Batches > 0 {
		n := float64(batches.Batches)
		fmt.Fprintf(stdout, "batches      %d commits during the load, %.1f requests and %.2f ms each on average; %d deferred to a second round\n",
			batches.Batches, float64(batches.Requests)/n, batches.Committing.Seconds()*1000/n, batches.Deferred)
	}
	if local != nil && rep != nil {
		writeCPU(stdout, cpu, cpuErr, rep.Answered(), c.embedded != nil)
	}
	if err != nil {
		return exitError, err
	}
	if !rep.Clean() {
		return exitViolations, errors.New("requests failed, acknowledged writes are missing or the ledger does not verify")
	}
	return exitOK, nil
}

// writeCPU prints the CPU a request cost during the load: the machine's,
// split into this process (load generator and server) and the embedded
// PostgreSQL when there is one, and how idle the cores were.
func writeCPU(w io.Writer, cpu cpuclock.Reading, err error, requests int, embedded bool) {
	if err != nil || requests == 0 || cpu.Busy+cpu.Idle <= 0 {
		if err != nil {
			fmt.Fprintf(w, "cpu          not measured: %v\n", err)
		}
		return
	}
	per := func(d time.Duration) int64 { return d.Microseconds() / int64(requests) }
	split := fmt.Sprintf("this process %d", per(cpu.Self))
	if embedded {
		split += fmt.Sprintf(", PostgreSQL %d", per(cpu.Tree))
	}
	fmt.Fprintf(w, "cpu          %d µs a request on the machine (%s), cores %d%% idle\n",
		per(cpu.Busy), split, 100*cpu.Idle/(cpu.Busy+cpu.Idle))
}
