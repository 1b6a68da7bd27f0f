package api

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
)

// A request without a deadline gets the default; one with a deadline keeps
// it, up to the cap.
func TestBoundDeadlines(t *testing.T) {
	tests := []struct {
		name             string
		defaultDL, capDL time.Duration
		caller           time.Duration // 0: none
		want             time.Duration
	}{
		{"none: the default", 10 * time.Second, time.Minute, 0, 10 * time.Second},
		{"shorter than the cap: kept", 10 * time.Second, time.Minute, 2 * time.Second, 2 * time.Second},
		{"longer than the cap: capped", 10 * time.Second, time.Minute, 5 * time.Minute, time.Minute},
		{"none, under a cap below the default: the cap", 10 * time.Second, 3 * time.Second, 0, 3 * time.Second},
	}
	for _, tt := range tests {
		s := &Server{cfg: Config{DefaultDeadline: tt.defaultDL, MaxDeadline: tt.capDL}, log: slog.Default()}
		ctx := context.Background()
		if tt.caller > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, tt.caller)
			defer cancel()
		}
		var left time.Duration
		_, err := s.bound(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/test"}, func(ctx context.Context, _ any) (any, error) {
			d, ok := ctx.Deadline()
			if !ok {
				t.Fatalf("%s: the handler has no deadline", tt.name)
			}
			left = time.Until(d)
			return nil, nil
		})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if left > tt.want || left < tt.want-time.Second {
			t.Errorf("%s: the handler has %s left, want %s", tt.name, left, tt.want)
		}
	}
}
