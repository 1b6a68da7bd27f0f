// Command lanetrace reads a Go execution trace of a load
// (`coinledger bench --trace FILE`) and shows where the goroutines running a
// given function spent their time: running, runnable (waiting for a P),
// in a system call, or blocked, with where they blocked. By default it looks
// at the commit lanes, so it answers what bounds their cycle: the database
// (network), the requests (select), Go's scheduler (runnable) or their own work.
//
//	cd docs/scripts/lanetrace && go run . [-func SUBSTRING] TRACE
//
// A goroutine belongs to the set once a stack it blocked or was preempted
// with contains the function; its time before that is counted too.
// It is a module of its own so that the trace parser
// (golang.org/x/exp/trace) is not a dependency of coinledger.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

func main() {
	fn := flag.String("func", "ledger.(*Service).runLane", "count goroutines whose stack contains this")
	depth := flag.Int("depth", 3, "frames of coinledger or library code shown where a goroutine blocked")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: lanetrace [-func SUBSTRING] [-depth N] TRACE")
		os.Exit(2)
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fail(err)
	}
	defer f.Close()
	states, n, span, err := tally(f, *fn, *depth)
	if err != nil {
		fail(err)
	}
	if n == 0 {
		fail(fmt.Errorf("no goroutine's stack contains %q", *fn))
	}
	var total time.Duration
	keys := make([]string, 0, len(states))
	for k, d := range states {
		keys = append(keys, k)
		total += d
	}
	slices.SortFunc(keys, func(a, b string) int { return int(states[b] - states[a]) })
	fmt.Printf("%d goroutines with %s, %.2f s of trace, %.2f goroutine-seconds:\n", n, *fn, span.Seconds(), total.Seconds())
	for _, k := range keys {
		fmt.Printf("%5.1f%%  %9.1f ms  %s\n", 100*float64(states[k])/float64(total), float64(states[k])/1e6, k)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "lanetrace:", err)
	os.Exit(1)
}

// tally sums, over the goroutines matching fn, the time spent in each state;
// a blocked or syscall state is keyed by where it began.
func tally(r io.Reader, fn string, depth int) (map[string]time.Duration, int, time.Duration, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, 0, 0, err
	}
	type current struct {
		key   string
		since trace.Time
	}
	now := map[trace.GoID]current{}
	perG := map[trace.GoID]map[string]time.Duration{}
	matched := map[trace.GoID]bool{}
	var first, last trace.Time
	for {
		ev, err := tr.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, 0, err
		}
		if first == 0 {
			first = ev.Time()
		}
		last = ev.Time()
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		// The stack is the goroutine's own only when it leaves the running state.
		var where []string
		if from == trace.GoRunning {
			for f := range st.Stack.Frames() {
				if strings.Contains(f.Func, fn) {
					matched[id] = true
				}
				if len(where) < depth && !runtimeFrame(f.Func) {
					where = append(where, fmt.Sprintf("%s:%d", shortName(f.Func), f.Line))
				}
			}
		}
		if c, ok := now[id]; ok {
			if perG[id] == nil {
				perG[id] = map[string]time.Duration{}
			}
			perG[id][c.key] += time.Duration(ev.Time() - c.since)
		}
		key := to.String()
		switch to {
		case trace.GoWaiting:
			key += " (" + st.Reason + ")"
			fallthrough
		case trace.GoSyscall:
			if len(where) > 0 {
				key += " at " + strings.Join(where, " < ")
			}
		}
		now[id] = current{key, ev.Time()}
	}
	out := map[string]time.Duration{}
	for id, states := range perG {
		if matched[id] {
			for k, d := range states {
				out[k] += d
			}
		}
	}
	return out, len(matched), time.Duration(last - first), nil
}

func runtimeFrame(fn string) bool {
	for _, p := range []string{"runtime.", "internal/", "syscall.", "net.", "os.", "io.", "bufio."} {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// shortName drops a function's import path, keeping its package.
func shortName(fn string) string {
	if i := strings.LastIndex(fn, "/"); i >= 0 {
		return fn[i+1:]
	}
	return fn
}
