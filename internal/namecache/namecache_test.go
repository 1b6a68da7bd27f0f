package namecache

import (
	"fmt"
	"sync"
	"testing"
)

func TestCacheBounded(t *testing.T) {
	c := Cache[int]{Limit: 100}
	if _, ok := c.Get("0"); ok {
		t.Fatal("an empty cache found an entry")
	}
	for i := range 110 {
		c.Put(fmt.Sprint(i), i)
	}
	if n := c.gen.Load().n.Load(); n > 100 {
		t.Fatalf("cache holds %d entries, limit 100", n)
	}
	if v, ok := c.Get("109"); !ok || v != 109 {
		t.Fatalf("latest entry: %d %v", v, ok)
	}
	if _, ok := c.Get("50"); ok {
		t.Fatal("an entry of the dropped generation survived")
	}
}

// Updating one name many times is not filling the cache.
func TestCacheReplaceDoesNotCount(t *testing.T) {
	c := Cache[int]{Limit: 100}
	c.Put("kept", 1)
	for i := range 1000 {
		c.Put("updated", i)
	}
	if v, ok := c.Get("kept"); !ok || v != 1 {
		t.Fatalf("a cache of 2 names with limit 100 started over: %d %v", v, ok)
	}
	if v, ok := c.Get("updated"); !ok || v != 999 {
		t.Fatalf("updated: %d %v", v, ok)
	}
}

// Concurrent readers and writers, with the cache starting over under them:
// a name is only ever found with its own value, and the generation stays
// bounded (each writer may add one name past the limit while another starts
// over). Run with -race.
func TestCacheConcurrent(t *testing.T) {
	const writers, names, limit = 4, 2000, 100
	c := Cache[string]{Limit: limit}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range names {
				name := fmt.Sprint(w, "/", i)
				c.Put(name, "v"+name)
			}
		}()
		go func() {
			defer wg.Done()
			for i := range names {
				name := fmt.Sprint(w, "/", i)
				if v, ok := c.Get(name); ok && v != "v"+name {
					t.Errorf("Get(%q) = %q", name, v)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := c.gen.Load().n.Load(); n > limit+writers {
		t.Errorf("generation holds %d names, limit %d", n, limit)
	}
}
