package gctune

import (
	"runtime/debug"
	"testing"
)

func TestApplyRespectsEnvironment(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))

	t.Setenv("GOGC", "150")
	if Apply() {
		t.Fatal("Apply changed the collector although GOGC was set")
	}

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	if !Apply() {
		t.Fatal("Apply did nothing with no GOGC or GOMEMLIMIT set")
	}
	if got := debug.SetGCPercent(100); got != GOGC {
		t.Fatalf("GOGC after Apply = %d, want %d", got, GOGC)
	}
	if got := debug.SetMemoryLimit(-1); got != MemoryLimit {
		t.Fatalf("memory limit after Apply = %d, want %d", got, MemoryLimit)
	}
}
