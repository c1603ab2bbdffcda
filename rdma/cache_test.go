package rdma

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeFill serves needles from a map and counts fills.
type fakeFill struct {
	needles map[string][]byte
	fills   atomic.Int32
	gate    chan struct{} // when non-nil, fills wait for it
}

func (f *fakeFill) fill(ctx context.Context, key needleKey, jwt string, rng *[2]int64, dst []byte) (int, int64, error) {
	f.fills.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	b, ok := f.needles[key.fid]
	if !ok {
		return 0, 0, &upstreamError{status: 404, msg: "not found"}
	}
	total := int64(len(b))
	if rng != nil {
		b = b[rng[0]:min(rng[1]+1, total)]
	}
	if len(b) > len(dst) {
		return 0, total, &tooLargeError{size: total}
	}
	return copy(dst, b), total, nil
}

func TestNeedleCache(t *testing.T) {
	const slot = 16
	f := &fakeFill{needles: map[string][]byte{
		"a": []byte("aaaaaaaa"), "b": []byte("bbbb"), "c": []byte("cccccc"), "big": bytes.Repeat([]byte("x"), 40),
	}}
	c := newNeedleCache(make([]byte, 2*slot), slot, f.fill)
	ctx := context.Background()
	get := func(fid string) *needle {
		t.Helper()
		n, _, err := c.get(ctx, ctx, needleKey{fid: fid}, "")
		if err != nil {
			t.Fatalf("get %s: %v", fid, err)
		}
		if got := c.slotMem(n.slot)[:n.size]; !bytes.Equal(got, f.needles[fid]) || n.crc != crc32.Checksum(got, castagnoli) {
			t.Fatalf("get %s: slot holds %q crc %x", fid, got, n.crc)
		}
		return n
	}
	a := get("a")
	a2, hit, _ := c.get(ctx, ctx, needleKey{fid: "a"}, "")
	if !hit || a2 != a || f.fills.Load() != 1 {
		t.Fatalf("second get: hit=%v fills=%d", hit, f.fills.Load())
	}
	b := get("b")
	// Both slots pinned: a third needle finds no slot.
	if _, _, err := c.get(ctx, ctx, needleKey{fid: "c"}, ""); !errors.Is(err, errBusy) {
		t.Fatalf("get with every slot pinned: %v", err)
	}
	c.put(a)
	c.put(a2)
	c.put(b)
	// a is least recently used: c evicts it, b stays.
	cn := get("c")
	c.put(cn)
	if _, hit, _ := c.get(ctx, ctx, needleKey{fid: "b"}, ""); !hit {
		t.Fatal("b was evicted instead of a")
	}
	if cached, pinned := c.stats(); cached != 2 || pinned != 1 {
		t.Fatalf("stats: cached %d pinned %d", cached, pinned)
	}
	c.put(b)
	// Stored and logical bytes are different keys.
	if _, hit, _ := c.get(ctx, ctx, needleKey{fid: "b", raw: true}, ""); hit {
		t.Fatal("raw key hit the logical entry")
	}
	// Failures are not cached; a too-large needle is refused whole...
	if _, _, err := c.get(ctx, ctx, needleKey{fid: "missing"}, ""); err == nil {
		t.Fatal("missing needle served")
	}
	var tl *tooLargeError
	if _, _, err := c.get(ctx, ctx, needleKey{fid: "big"}, ""); !errors.As(err, &tl) || tl.size != 40 {
		t.Fatalf("big needle: %v", err)
	}
	// ...and served by range into a slot of its own, freed on release.
	r, err := c.getRange(ctx, needleKey{fid: "big"}, "", 30, 100)
	if err != nil || r.size != 10 || r.total != 40 || r.cached {
		t.Fatalf("range: %+v %v", r, err)
	}
	c.put(r)
	if cached, pinned := c.stats(); pinned != 1 || cached > 2 {
		t.Fatalf("after range: cached %d pinned %d", cached, pinned)
	}
}

func TestNeedleCacheSharedFill(t *testing.T) {
	f := &fakeFill{needles: map[string][]byte{"a": []byte("hello")}, gate: make(chan struct{})}
	c := newNeedleCache(make([]byte, 64), 32, f.fill)
	ctx := context.Background()
	var wg sync.WaitGroup
	got := make([]*needle, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, _, err := c.get(ctx, ctx, needleKey{fid: "a"}, "")
			if err != nil {
				t.Error(err)
			}
			got[i] = n
		}()
	}
	// Let the goroutines pile up on the one fill, then release it.
	for f.fills.Load() == 0 {
	}
	close(f.gate)
	wg.Wait()
	if f.fills.Load() != 1 {
		t.Fatalf("%d fills for one needle", f.fills.Load())
	}
	for _, n := range got {
		if n != got[0] {
			t.Fatal("waiters got different needles")
		}
		c.put(n)
	}
	if _, pinned := c.stats(); pinned != 0 {
		t.Fatalf("%d slots still pinned", pinned)
	}
}
