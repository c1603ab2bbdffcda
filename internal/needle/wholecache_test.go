package needle

import "testing"

func TestNeedleCache(t *testing.T) {
	c := NewNeedleCache(10)
	c.Put("a", []byte("aaaa"))
	c.Put("b", []byte("bbbb"))
	if _, ok := c.Get("a"); !ok { // a is now the most recently used
		t.Fatal("a missing")
	}
	c.Put("c", []byte("cccc")) // 12 bytes: b, the least recently used, goes
	if _, ok := c.Get("b"); ok {
		t.Fatal("b kept over the limit")
	}
	for _, fid := range []string{"a", "c"} {
		if _, ok := c.Get(fid); !ok {
			t.Fatalf("%s evicted", fid)
		}
	}
	c.Put("big", make([]byte, 11)) // larger than the whole cache: not kept
	if _, ok := c.Get("big"); ok || c.size != 8 {
		t.Fatalf("a needle over the limit was kept (size %d)", c.size)
	}
	off := NewNeedleCache(0)
	off.Put("a", nil)
	if _, ok := off.Get("a"); ok {
		t.Fatal("a cache that is off kept a needle")
	}
}
