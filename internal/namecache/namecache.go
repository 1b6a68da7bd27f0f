// Package namecache is a bounded cache keyed by name, lock-free on reads.
// When it fills, the whole generation is dropped and it starts over: crude,
// but bounded, and a miss only costs the caller one lookup at the source.
package namecache

import (
	"sync"
	"sync/atomic"
)

// DefaultLimit bounds a Cache whose Limit is zero.
const DefaultLimit = 1 << 20

// Cache maps names to values; the zero value is ready to use.
type Cache[V any] struct {
	Limit int64 // entries before the cache starts over; zero: DefaultLimit
	gen   atomic.Pointer[sync.Map]
	n     atomic.Int64
}

// Get returns the value cached under name.
func (c *Cache[V]) Get(name string) (V, bool) {
	if m := c.gen.Load(); m != nil {
		if v, ok := m.Load(name); ok {
			return v.(V), true
		}
	}
	var zero V
	return zero, false
}

// Put caches v under name. Replacing a name's value does not count towards
// the limit: a cache whose values are updated in place (as the ledger's
// guess of a holder's lot currencies is, on every gift) must not start over
// for it.
func (c *Cache[V]) Put(name string, v V) {
	limit := c.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	m := c.gen.Load()
	if m == nil || c.n.Load() >= limit {
		m = &sync.Map{}
		c.gen.Store(m)
		c.n.Store(0)
	}
	if _, replaced := m.Swap(name, v); !replaced {
		c.n.Add(1)
	}
}
