// Package namecache is a bounded cache keyed by name, for many readers and
// rare writers. When it fills, the whole generation is dropped and it starts
// over: crude, but bounded, and a miss only costs the caller one lookup at
// the source.
package namecache

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// DefaultLimit bounds a Cache whose Limit is zero.
const DefaultLimit = 1 << 20

// Cache maps names to values; the zero value is ready to use.
type Cache[V any] struct {
	Limit int64 // entries before the cache starts over; zero: DefaultLimit
	gen   atomic.Pointer[generation[V]]
	mu    sync.Mutex // serialises starting a generation
}

// A generation spreads its names over shards, each a plain map under its own
// lock: a lookup is one hash and one map probe, where sync.Map's trie walked
// several nodes, each a likely cache miss (its loads were 5% of a gift
// storm's Go CPU). Readers of different shards share no memory they write.
type generation[V any] struct {
	seed   maphash.Seed
	n      atomic.Int64
	shards [64]shard[V]
}

type shard[V any] struct {
	mu sync.RWMutex
	m  map[string]V
	_  [32]byte // keeps two shards' locks off one cache line
}

func (g *generation[V]) shard(name string) *shard[V] {
	return &g.shards[maphash.String(g.seed, name)%uint64(len(g.shards))]
}

// Get returns the value cached under name.
func (c *Cache[V]) Get(name string) (V, bool) {
	if g := c.gen.Load(); g != nil {
		sh := g.shard(name)
		sh.mu.RLock()
		v, ok := sh.m[name]
		sh.mu.RUnlock()
		return v, ok
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
	g := c.gen.Load()
	if g == nil || g.n.Load() >= limit {
		g = c.startOver(g, limit)
	}
	sh := g.shard(name)
	sh.mu.Lock()
	_, replaced := sh.m[name]
	sh.m[name] = v
	sh.mu.Unlock()
	if !replaced {
		g.n.Add(1)
	}
}

// startOver installs an empty generation in place of full (nil: none yet),
// unless another caller already has.
func (c *Cache[V]) startOver(full *generation[V], limit int64) *generation[V] {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g := c.gen.Load(); g != full && g != nil && g.n.Load() < limit {
		return g
	}
	g := &generation[V]{seed: maphash.MakeSeed()}
	for i := range g.shards {
		g.shards[i].m = map[string]V{}
	}
	c.gen.Store(g)
	return g
}
