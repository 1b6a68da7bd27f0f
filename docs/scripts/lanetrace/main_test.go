package main

import (
	"bytes"
	"runtime/trace"
	"strings"
	"testing"
	"time"
)

//go:noinline
func parked(ch chan struct{}) { <-ch }

// A goroutine blocked 50 ms in parked is counted there, and no other is.
func TestTally(t *testing.T) {
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	ch, done := make(chan struct{}), make(chan struct{})
	go func() { parked(ch); close(done) }()
	time.Sleep(50 * time.Millisecond)
	close(ch)
	<-done
	trace.Stop()

	states, n, _, err := tally(&buf, "lanetrace.parked", 3)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d goroutines matched, want 1", n)
	}
	var blocked time.Duration
	for k, d := range states {
		if strings.HasPrefix(k, "Waiting (chan receive) at lanetrace.parked:") {
			blocked += d
		}
	}
	if blocked < 40*time.Millisecond {
		t.Errorf("blocked in parked %v, want about 50 ms; states %v", blocked, states)
	}
}
