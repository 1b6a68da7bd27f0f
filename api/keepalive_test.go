package api_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/coinledger/coinledger/api"
)

// rawHTTP2 opens a connection to addr and does HTTP/2's handshake, with no
// gRPC client in the way: the test sends pings as it pleases and reads what
// the server sends back.
func rawHTTP2(t *testing.T, addr string) (net.Conn, *http2.Framer) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
			return conn, fr
		}
	}
}

// goAwayWithin reads frames for d and returns the GOAWAY the server sent,
// if any, and how many of the client's pings it answered.
func goAwayWithin(conn net.Conn, fr *http2.Framer, d time.Duration) (*http2.GoAwayFrame, int) {
	conn.SetReadDeadline(time.Now().Add(d))
	acks := 0
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return nil, acks
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			if f.IsAck() {
				acks++
			}
		case *http2.GoAwayFrame:
			return f, acks
		}
	}
}

// A client may send keepalive pings as often as KeepaliveMinTime, also with
// no call in flight, without being told "too_many_pings"; more often, it is.
func TestKeepalivePingsAllowed(t *testing.T) {
	for _, c := range []struct {
		name    string
		minTime time.Duration
		refused bool
	}{
		{"pings no more often than the policy", 20 * time.Millisecond, false},
		{"pings more often than the policy", time.Hour, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(cfg *api.Config) { cfg.KeepaliveMinTime = c.minTime })
			conn, fr := rawHTTP2(t, e.addr)
			// Five times the policy's interval apart, so that a ping the
			// scheduler holds back does not arrive too soon after the next.
			const pings, every = 8, 100 * time.Millisecond
			go func() {
				for i := range pings {
					if fr.WritePing(false, [8]byte{byte(i)}) != nil {
						return
					}
					time.Sleep(every)
				}
			}()
			away, acks := goAwayWithin(conn, fr, pings*every+time.Second)
			switch {
			case c.refused && (away == nil || away.ErrCode != http2.ErrCodeEnhanceYourCalm || string(away.DebugData()) != "too_many_pings"):
				t.Errorf("pings every %s against a policy of %s: %v, want GOAWAY too_many_pings", every, c.minTime, away)
			case !c.refused && (away != nil || acks != pings):
				t.Errorf("pings every %s against a policy of %s: GOAWAY %v, %d of %d pings answered", every, c.minTime, away, acks, pings)
			}
		})
	}
}

// A connection that stops answering (its client gone without closing it) is
// pinged once it has been idle for KeepaliveIdle and closed when no answer
// comes within KeepaliveTimeout.
func TestKeepaliveClosesASilentConnection(t *testing.T) {
	for _, c := range []struct {
		name   string
		idle   time.Duration
		closed bool
	}{
		{"idle past the keepalive time", time.Second, true}, // gRPC's shortest
		{"idle within it", time.Hour, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(cfg *api.Config) { cfg.KeepaliveIdle, cfg.KeepaliveTimeout = c.idle, 200*time.Millisecond })
			conn, fr := rawHTTP2(t, e.addr)
			// Silent: nothing read, so nothing answered, for the idle time
			// and the timeout and a margin.
			time.Sleep(2 * time.Second)
			conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			var err error
			for err == nil {
				_, err = fr.ReadFrame()
			}
			var timeout net.Error
			timedOut := errors.As(err, &timeout) && timeout.Timeout()
			if c.closed == timedOut {
				t.Errorf("idle %s: reading ended with %v; want closed %v", c.idle, err, c.closed)
			}
		})
	}
}

// With MaxConnectionAge a connection is told GOAWAY (no error: its client
// reconnects) once that old; without, it lives on.
func TestMaxConnectionAge(t *testing.T) {
	for _, c := range []struct {
		name string
		age  time.Duration
	}{
		{"aged", 200 * time.Millisecond},
		{"no limit", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(cfg *api.Config) { cfg.MaxConnectionAge = c.age })
			conn, fr := rawHTTP2(t, e.addr)
			away, _ := goAwayWithin(conn, fr, time.Second)
			switch {
			case c.age > 0 && (away == nil || away.ErrCode != http2.ErrCodeNo):
				t.Errorf("a connection older than %s: %v, want GOAWAY NO_ERROR", c.age, away)
			case c.age == 0 && away != nil:
				t.Errorf("a connection without an age limit: %v", away)
			}
		})
	}
}
