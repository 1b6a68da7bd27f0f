package namecache

import (
	"fmt"
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
	if n := c.n.Load(); n > 100 {
		t.Fatalf("cache holds %d entries, limit 100", n)
	}
	if v, ok := c.Get("109"); !ok || v != 109 {
		t.Fatalf("latest entry: %d %v", v, ok)
	}
	if _, ok := c.Get("50"); ok {
		t.Fatal("an entry of the dropped generation survived")
	}
}
