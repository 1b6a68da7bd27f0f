// Package cpuclock reads, on Linux, how much CPU the machine, this process
// and a process tree (the embedded PostgreSQL) have spent. The rate of a
// load run on a shared machine moves with the machine's speed and with the
// code alike; the CPU a request, split between the Go process and the
// database, tells the two apart: a slower machine moves both parts, a
// change to the Go code only its own.
package cpuclock

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Reading is CPU time spent up to a moment.
type Reading struct {
	Busy, Idle time.Duration // the machine's, over all its CPUs
	Self       time.Duration // this process's
	Tree       time.Duration // root's and its children's, reaped ones included; zero without a root
}

// Sub is the CPU spent between two readings.
func (r Reading) Sub(earlier Reading) Reading {
	return Reading{Busy: r.Busy - earlier.Busy, Idle: r.Idle - earlier.Idle, Self: r.Self - earlier.Self, Tree: r.Tree - earlier.Tree}
}

// tick is the kernel's clock tick in /proc (USER_HZ), 100 on every Linux
// architecture Go runs on.
const tick = 10 * time.Millisecond

// Read takes a reading; root is the pid of the tree to count, or 0.
func Read(root int) (Reading, error) {
	var r Reading
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return r, err
	}
	if r.Busy, r.Idle, err = machine(stat); err != nil {
		return r, err
	}
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return r, err
	}
	f, err := processFields(self)
	if err != nil {
		return r, err
	}
	r.Self = f.utime + f.stime
	if root > 0 {
		r.Tree, err = tree(root)
	}
	return r, err
}

// machine reads the first line of /proc/stat: user nice system idle iowait
// irq softirq steal ... in ticks. Stolen time is neither busy nor idle here.
func machine(stat []byte) (busy, idle time.Duration, err error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	fields := bytes.Fields(line)
	if len(fields) < 8 || string(fields[0]) != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [7]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(string(fields[i+1]), 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	busy = time.Duration(v[0]+v[1]+v[2]+v[5]+v[6]) * tick
	idle = time.Duration(v[3]+v[4]) * tick
	return busy, idle, nil
}

type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime time.Duration
}

// processFields parses /proc/PID/stat. The command name, in parentheses,
// may hold spaces and parentheses itself, so fields count from the last ')'.
func processFields(stat []byte) (procStat, error) {
	var p procStat
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return p, errors.New("stat: no command name")
	}
	f := bytes.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 15 {
		return p, fmt.Errorf("stat: %d fields after the name", len(f))
	}
	var v [5]int64
	for j, k := range []int{1, 11, 12, 13, 14} { // ppid, utime, stime, cutime, cstime
		n, err := strconv.ParseInt(string(f[k]), 10, 64)
		if err != nil {
			return p, fmt.Errorf("stat: %w", err)
		}
		v[j] = n
	}
	p.ppid = int(v[0])
	p.utime, p.stime, p.cutime, p.cstime = time.Duration(v[1])*tick, time.Duration(v[2])*tick, time.Duration(v[3])*tick, time.Duration(v[4])*tick
	return p, nil
}

// tree is root's CPU with what its children spent, live or reaped: a child
// that exits between two readings moves from the first sum to root's cutime
// and cstime, and the total keeps it.
func tree(root int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(root), "stat"))
	if err != nil {
		return 0, err
	}
	p, err := processFields(b)
	if err != nil {
		return 0, err
	}
	total := p.utime + p.stime + p.cutime + p.cstime
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited since the listing
		}
		if c, err := processFields(b); err == nil && c.ppid == root {
			total += c.utime + c.stime
		}
	}
	return total, nil
}
