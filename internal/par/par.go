// Package par runs numbered pieces of work side by side.
package par

import (
	"context"
	"sync"
	"sync/atomic"
)

// Each calls f for 0..n-1 with at most width calls at once and returns the
// first error, after which it starts no more calls; f's context is cancelled
// then too.
func Each(ctx context.Context, n, width int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(max(width, 1), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}
