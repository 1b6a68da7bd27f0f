// Package gctune sets the Go garbage collector for a ledger process.
//
// The write path's live heap is small (tens of MB) but it allocates tens of
// KB per gift, so at the default GOGC=100 the collector runs many times a
// second and took a third of the process's CPU in BenchmarkSendGift. A larger
// GOGC trades a few hundred MB of heap, which a ledger host has, for that CPU;
// a memory limit keeps the trade bounded.
package gctune

import (
	"os"
	"runtime/debug"
)

// GOGC is the collector target Apply sets. BenchmarkSendGift measured 400 at
// about 1.3× the throughput of 100 on the 2-core machine; through gRPC, 1000
// took a further 4-5% off the Go process's CPU a gift (docs/benchmarks.md,
// fourth pass); under a gift storm the live heap is ~13 MB, so the heap goal
// is ~150 MB instead of ~65 MB.
const GOGC = 1000

// MemoryLimit caps the heap the larger target may grow to; the collector works
// harder near it instead of running the process out of memory.
const MemoryLimit = 2 << 30

// Apply sets GOGC and the memory limit unless the operator has set GOGC or
// GOMEMLIMIT in the environment, which always win. It reports whether it
// changed anything.
func Apply() bool {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return false
	}
	debug.SetGCPercent(GOGC)
	debug.SetMemoryLimit(MemoryLimit)
	return true
}
