package rdma

import "testing"

func TestWholeCache(t *testing.T) {
	c := newWholeCache(10)
	c.put("a", []byte("aaaa"))
	c.put("b", []byte("bbbb"))
	if _, ok := c.get("a"); !ok { // a is now the most recently used
		t.Fatal("a missing")
	}
	c.put("c", []byte("cccc")) // 12 bytes: b, the least recently used, goes
	if _, ok := c.get("b"); ok {
		t.Fatal("b kept over the limit")
	}
	for _, fid := range []string{"a", "c"} {
		if _, ok := c.get(fid); !ok {
			t.Fatalf("%s evicted", fid)
		}
	}
	c.put("big", make([]byte, 11)) // larger than the whole cache: not kept
	if _, ok := c.get("big"); ok || c.size != 8 {
		t.Fatalf("a needle over the limit was kept (size %d)", c.size)
	}
	off := newWholeCache(0)
	off.put("a", nil)
	if _, ok := off.get("a"); ok {
		t.Fatal("a cache that is off kept a needle")
	}
}
