// Package progress shows how far long work has got: a bar redrawn in place
// on a terminal, or a line a second where the output is a log or a pipe (CI),
// so that the log neither fills with carriage returns nor stays silent.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const width = 30 // characters of the bar itself

// Bar counts done units of a known total. Add is safe from many goroutines.
type Bar struct {
	w      io.Writer
	label  string
	total  int64
	done   atomic.Int64
	tty    bool
	start  time.Time
	stop   chan struct{}
	wg     sync.WaitGroup
	finish sync.Once
}

// Start draws an empty bar for total units and redraws it until Finish.
func Start(w io.Writer, label string, total int) *Bar {
	b := &Bar{w: w, label: label, total: int64(total), tty: isTerminal(w), start: time.Now(), stop: make(chan struct{})}
	every := time.Second
	if b.tty {
		every = 100 * time.Millisecond
		b.draw()
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.draw()
			}
		}
	}()
	return b
}

// Add counts n more units done.
func (b *Bar) Add(n int) { b.done.Add(int64(n)) }

// Finish draws the final state on its own line and stops redrawing.
func (b *Bar) Finish() {
	b.finish.Do(func() {
		close(b.stop)
		b.wg.Wait()
		b.draw()
		if b.tty {
			fmt.Fprintln(b.w)
		}
	})
}

func (b *Bar) draw() {
	line := Render(b.label, b.done.Load(), b.total, time.Since(b.start))
	if b.tty {
		fmt.Fprintf(b.w, "\r%s", line)
	} else {
		fmt.Fprintln(b.w, line)
	}
}

// Render is one frame: label, bar, count, percentage and rate.
func Render(label string, done, total int64, elapsed time.Duration) string {
	frac := 1.0
	if total > 0 {
		frac = min(max(float64(done)/float64(total), 0), 1)
	}
	filled := int(frac * width)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	return fmt.Sprintf("%s [%s%s] %d/%d %3.0f%% %.0f/s", label, strings.Repeat("#", filled), strings.Repeat("-", width-filled), done, total, frac*100, rate)
}

// isTerminal tells whether w, or the writer it wraps (Unwrap), is a
// character device.
func isTerminal(w io.Writer) bool {
	for {
		u, ok := w.(interface{ Unwrap() io.Writer })
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
