// Command probe measures what decides this machine's speed for a gift storm,
// so that benchmark figures from different days can be judged against it:
// a system call, a blocking wake-up of another thread, a page fault, a cache
// miss, a synchronous 8-kB write, and plain computation. Each figure is the
// median of five rounds. The last line is ordinary Go work (a small JSON
// round trip: allocation, reflection, branches) counted second by second for
// 20 s, because the speed a virtual CPU gives such code can change within
// seconds while sha256 (its own instructions) stays steady.
//
//	go run ./docs/scripts/probe [DIR]   # DIR: where to probe fsync (default: the temp dir)
package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"syscall"
	"time"
)

func main() {
	dir := os.TempDir()
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	fmt.Printf("system call (getppid)              %8.0f ns\n", median(syscallCost))
	fmt.Printf("wake-up of a blocked thread (pipe) %8.0f ns\n", median(wakeupCost))
	fmt.Printf("page fault (first touch, 4 kB)     %8.0f ns\n", median(pageFaultCost))
	fmt.Printf("cache miss (random loads, 64 MB)   %8.1f ns\n", median(cacheMissCost))
	fmt.Printf("8-kB write + fdatasync             %8.0f µs (in %s)\n", median(func() float64 { return fsyncCost(dir) })/1000, dir)
	fmt.Printf("sha256                             %8.0f MB/s\n", 1e9/median(sha256Cost))
	r := jsonEachSecond(20)
	slices.Sort(r)
	fmt.Printf("JSON round trips, each second, 20 s %8.0f k/s min, %.0f median, %.0f max\n", r[0], r[len(r)/2], r[len(r)-1])
}

// median runs probe five times; each returns nanoseconds per operation.
func median(probe func() float64) float64 {
	var r []float64
	for range 5 {
		r = append(r, probe())
	}
	slices.Sort(r)
	return r[2]
}

func perOp(start time.Time, n int) float64 {
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

func syscallCost() float64 {
	const n = 100_000
	start := time.Now()
	for range n {
		syscall.Getppid()
	}
	return perOp(start, n)
}

// wakeupCost is half a round trip between two OS threads over two pipes:
// each half blocks one thread in read and wakes it with the other's write.
func wakeupCost() float64 {
	var ab, ba [2]int
	must(syscall.Pipe(ab[:]))
	must(syscall.Pipe(ba[:]))
	defer func() {
		for _, fd := range []int{ab[0], ab[1], ba[0], ba[1]} {
			syscall.Close(fd)
		}
	}()
	const n = 20_000
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		b := make([]byte, 1)
		for range n {
			syscall.Read(ab[0], b)
			syscall.Write(ba[1], b)
		}
		close(done)
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b := make([]byte, 1)
	start := time.Now()
	for range n {
		syscall.Write(ab[1], b)
		syscall.Read(ba[0], b)
	}
	<-done
	return perOp(start, 2*n)
}

func pageFaultCost() float64 {
	const size = 64 << 20
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	must(err)
	defer syscall.Munmap(mem)
	start := time.Now()
	for i := 0; i < size; i += 4096 {
		mem[i] = 1
	}
	return perOp(start, size/4096)
}

func cacheMissCost() float64 {
	const n = 64 << 20 / 8
	next := make([]int, n)
	perm := rand.Perm(n)
	for i := range n {
		next[perm[i]] = perm[(i+1)%n]
	}
	const steps = 2_000_000
	p := 0
	start := time.Now()
	for range steps {
		p = next[p]
	}
	runtime.KeepAlive(p) // the loads are the measurement
	return perOp(start, steps)
}

func fsyncCost(dir string) float64 {
	f, err := os.CreateTemp(dir, "probe-fsync-")
	must(err)
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 8192)
	const n = 100
	start := time.Now()
	for i := range n {
		_, err := f.WriteAt(block, int64(i%16)*8192)
		must(err)
		must(syscall.Fdatasync(int(f.Fd())))
	}
	return perOp(start, n)
}

// sha256Cost is nanoseconds per MB hashed.
func sha256Cost() float64 {
	buf := make([]byte, 1<<20)
	const mb = 128
	start := time.Now()
	h := sha256.New()
	for range mb {
		h.Write(buf)
	}
	h.Sum(nil)
	return perOp(start, mb)
}

// jsonEachSecond encodes and decodes a gift-sized struct for n seconds and
// returns the thousands of round trips done in each.
func jsonEachSecond(n int) []float64 {
	type terms struct {
		Coins   int64  `json:"coins"`
		Creator string `json:"creator"`
		Share   string `json:"share"`
		SentAt  string `json:"sent_at"`
		Viewer  string `json:"viewer"`
	}
	in := terms{5, "star", "0.5", "2026-12-07T07:00:00Z", "v42"}
	var out []float64
	for range n {
		start, done := time.Now(), 0
		for time.Since(start) < time.Second {
			for range 100 {
				b, err := json.Marshal(in)
				must(err)
				var back terms
				must(json.Unmarshal(b, &back))
			}
			done += 100
		}
		out = append(out, float64(done)/1000/time.Since(start).Seconds())
	}
	return out
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}
