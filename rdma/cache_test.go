package rdma

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

func (f *fakeFill) fill(ctx context.Context, fid, jwt string, dst []byte) (storedNeedle, error) {
	f.fills.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	b, ok := f.needles[fid]
	switch {
	case !ok:
		return storedNeedle{}, &upstreamError{status: 404, msg: "not found"}
	case fid == "corrupt":
		return storedNeedle{}, fmt.Errorf("test: %w", errUpstreamCorrupt)
	case len(b) > len(dst):
		return storedNeedle{}, &tooLargeError{size: int64(len(b)), slot: int64(len(dst))}
	}
	n := copy(dst, b)
	crc := crc32.Checksum(b, castagnoli)
	return storedNeedle{size: n, crc: crc, sum: crc, hasSum: true}, nil
}

func TestNeedleCache(t *testing.T) {
	const slot = 16
	f := &fakeFill{needles: map[string][]byte{
		"a": []byte("aaaaaaaa"), "b": []byte("bbbb"), "c": []byte("cccccc"), "big": bytes.Repeat([]byte("x"), 40),
		"corrupt": []byte("c0rrupt"),
	}}
	c := newNeedleCache(make([]byte, 2*slot), slot, f.fill)
	ctx := context.Background()
	get := func(fid string) *slotNeedle {
		t.Helper()
		n, _, err := c.get(ctx, ctx, fid, "")
		if err != nil {
			t.Fatalf("get %s: %v", fid, err)
		}
		if got := c.slotMem(n.slot)[:n.stored.size]; !bytes.Equal(got, f.needles[fid]) || n.stored.crc != crc32.Checksum(got, castagnoli) {
			t.Fatalf("get %s: slot holds %q crc %x", fid, got, n.stored.crc)
		}
		return n
	}
	a := get("a")
	a2, hit, _ := c.get(ctx, ctx, "a", "")
	if !hit || a2 != a || f.fills.Load() != 1 {
		t.Fatalf("second get: hit=%v fills=%d", hit, f.fills.Load())
	}
	b := get("b")
	// Both slots pinned: a third needle finds no slot.
	if _, _, err := c.get(ctx, ctx, "c", ""); !errors.Is(err, errBusy) {
		t.Fatalf("get with every slot pinned: %v", err)
	}
	c.put(a)
	c.put(a2)
	c.put(b)
	// a is least recently used: c evicts it, b stays.
	cn := get("c")
	c.put(cn)
	if _, hit, _ := c.get(ctx, ctx, "b", ""); !hit {
		t.Fatal("b was evicted instead of a")
	}
	if cached, pinned := c.stats(); cached != 2 || pinned != 1 {
		t.Fatalf("stats: cached %d pinned %d", cached, pinned)
	}
	c.put(b)
	// Failures are not cached, and free their slot: a missing needle, one
	// that failed its checksum, one larger than a slot (never served by
	// range: a range has no checksum).
	fills := f.fills.Load()
	for i := 0; i < 2; i++ {
		if _, _, err := c.get(ctx, ctx, "missing", ""); err == nil {
			t.Fatal("missing needle served")
		}
		if _, _, err := c.get(ctx, ctx, "corrupt", ""); !errors.Is(err, errUpstreamCorrupt) {
			t.Fatalf("corrupt needle: %v", err)
		}
		var tl *tooLargeError
		if _, _, err := c.get(ctx, ctx, "big", ""); !errors.As(err, &tl) || tl.size != 40 || replyStatus(err) != statusTooLarge {
			t.Fatalf("big needle: %v", err)
		}
	}
	if f.fills.Load() != fills+6 {
		t.Fatalf("%d fills for 6 gets of failing needles", f.fills.Load()-fills)
	}
	if cached, pinned := c.stats(); pinned != 0 || cached > 2 {
		t.Fatalf("after failures: cached %d pinned %d", cached, pinned)
	}
}

func TestNeedleCacheSharedFill(t *testing.T) {
	f := &fakeFill{needles: map[string][]byte{"a": []byte("hello")}, gate: make(chan struct{})}
	c := newNeedleCache(make([]byte, 64), 32, f.fill)
	ctx := context.Background()
	var wg sync.WaitGroup
	got := make([]*slotNeedle, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, _, err := c.get(ctx, ctx, "a", "")
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
