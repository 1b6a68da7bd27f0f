package progress

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRender(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		elapsed     time.Duration
		want        string
	}{
		{0, 200, 0, "gifts [------------------------------] 0/200   0% 0/s"},
		{100, 200, 2 * time.Second, "gifts [###############---------------] 100/200  50% 50/s"},
		{200, 200, time.Second, "gifts [##############################] 200/200 100% 200/s"},
		{250, 200, time.Second, "gifts [##############################] 250/200 100% 250/s"}, // never past the end
		{0, 0, time.Second, "gifts [##############################] 0/0 100% 0/s"},
	} {
		if got := Render("gifts", c.done, c.total, c.elapsed); got != c.want {
			t.Errorf("Render(%d, %d, %s)\n got %q\nwant %q", c.done, c.total, c.elapsed, got, c.want)
		}
	}
}

// Not a terminal: whole lines, the last one complete; counts from many
// goroutines all arrive.
func TestBarOnAPipe(t *testing.T) {
	var buf bytes.Buffer
	b := Start(&buf, "gifts", 1000)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Add(1)
			}
		}()
	}
	wg.Wait()
	b.Finish()
	b.Finish() // idempotent
	out := buf.String()
	if strings.Contains(out, "\r") {
		t.Errorf("carriage return written to a pipe: %q", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "1000/1000 100%") {
		t.Errorf("last line %q, want the complete count", last)
	}
	if len(lines) != 1 {
		t.Errorf("a run shorter than a second printed %d lines, want 1: %q", len(lines), out)
	}
}

type wrapped struct{ io.Writer }

func (w wrapped) Unwrap() io.Writer { return w.Writer }

// A writer that wraps a terminal (the commands wrap stderr to stop on a
// broken pipe) still gets the bar drawn in place. /dev/null stands in for a
// terminal: it is a character device too.
func TestTerminalBehindAWrapper(t *testing.T) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	for _, c := range []struct {
		name string
		w    io.Writer
		want bool
	}{
		{"character device", devNull, true},
		{"wrapped character device", wrapped{devNull}, true},
		{"wrapped twice", wrapped{wrapped{devNull}}, true},
		{"buffer", &bytes.Buffer{}, false},
		{"wrapped buffer", wrapped{&bytes.Buffer{}}, false},
	} {
		if got := isTerminal(c.w); got != c.want {
			t.Errorf("%s: isTerminal %v, want %v", c.name, got, c.want)
		}
	}
}
