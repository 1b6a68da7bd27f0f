package cpuclock

import (
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func TestProcessFields(t *testing.T) {
	tests := []struct {
		name, stat string
		want       procStat
		err        bool
	}{
		{"plain", "42 (postgres) S 7 42 42 0 -1 4194560 100 0 0 0 250 30 4 5 20 0 1 0 100 0 0",
			procStat{ppid: 7, utime: 2500 * time.Millisecond, stime: 300 * time.Millisecond, cutime: 40 * time.Millisecond, cstime: 50 * time.Millisecond}, false},
		{"a name with spaces and parentheses", "9 (a b) c)) R 1 9 9 0 -1 0 0 0 0 0 1 2 3 4 20 0",
			procStat{ppid: 1, utime: 10 * time.Millisecond, stime: 20 * time.Millisecond, cutime: 30 * time.Millisecond, cstime: 40 * time.Millisecond}, false},
		{"cut short", "9 (x) R 1 9 9 0 -1 0 0 0 0 0 1 2", procStat{}, true},
		{"no name", "9 x R 1", procStat{}, true},
		{"not a number", "9 (x) R 1 9 9 0 -1 0 0 0 0 0 z 2 3 4 20 0", procStat{}, true},
	}
	for _, tt := range tests {
		got, err := processFields([]byte(tt.stat))
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("%s: %+v, %v; want %+v (error %v)", tt.name, got, err, tt.want, tt.err)
		}
	}
}

func TestMachine(t *testing.T) {
	busy, idle, err := machine([]byte("cpu  100 2 30 400 5 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"))
	if err != nil || busy != 1450*time.Millisecond || idle != 4050*time.Millisecond {
		t.Errorf("busy %s idle %s, %v; want 1.45s and 4.05s", busy, idle, err)
	}
	if _, _, err := machine([]byte("intr 1 2 3\n")); err == nil {
		t.Error("a first line that is not the cpu totals was taken")
	}
}

// What this process burns shows as its own and the machine's; what a child
// burned shows in the tree of its parent after the child has exited.
func TestRead(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	before, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel's own account (getrusage, not /proc) shows
	// 300 ms more CPU: spinning for 300 ms of wall time got well under that
	// when other tests shared the cores.
	ru0 := selfRusage(t)
	for start := time.Now(); selfRusage(t)-ru0 < 300*time.Millisecond; {
		if time.Since(start) > 30*time.Second {
			t.Fatal("300 ms of CPU took over 30 s")
		}
	}
	spun := selfRusage(t) - ru0
	child := exec.Command("sh", "-c", `i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done`)
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	after, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	d := after.Sub(before)
	// /proc counts in clock ticks (10 ms), getrusage finer.
	if d.Self < spun-20*time.Millisecond || d.Busy < d.Self {
		t.Errorf("after spinning for %s of CPU (getrusage): this process %s, the machine %s busy", spun, d.Self, d.Busy)
	}
	if d.Tree < d.Self+50*time.Millisecond {
		t.Errorf("the tree %s holds no more than this process %s, though a child spun and exited", d.Tree, d.Self)
	}
}

func selfRusage(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func FuzzProcessFields(f *testing.F) {
	f.Add([]byte("42 (postgres) S 7 42 42 0 -1 4194560 100 0 0 0 250 30 4 5 20 0 1 0 100 0 0"))
	f.Add([]byte("9 ((() R"))
	f.Add([]byte("cpu  1 2 3 4 5 6 7 8\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Whatever the kernel (or a test) hands them, the parsers answer
		// with a value or an error, never a panic.
		_, _ = processFields(b)
		_, _, _ = machine(b)
	})
}
