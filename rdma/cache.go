package rdma

import (
	"container/list"
	"context"
	"errors"
	"sync"
)

// errBusy: every slot is pinned by replies not yet released.
var errBusy = errors.New("all slots are in use")

// needleKey names a cached needle: stored (raw) and logical bytes of one
// file id are different contents.
type needleKey struct {
	fid string
	raw bool
}

// needle is one slot's content. A needle is pinned while refs > 0 (replies
// the client has not released, or requests waiting for its fill); an unpinned
// cached needle sits in the LRU and may be evicted.
type needle struct {
	key    needleKey
	slot   int
	cached bool          // in needleCache.byKey; false for a range slot or a failed fill
	ready  chan struct{} // closed once the fill finished; size, crc, authed and err are then fixed
	size   int           // bytes in the slot
	total  int64         // the needle's full size (larger than size for a range slot)
	crc    uint32        // CRC32C of the slot's size bytes
	authed bool          // fetched with a JWT: hits re-check authorization upstream
	err    error

	refs int           // guarded by needleCache.mu
	elem *list.Element // guarded by needleCache.mu; non-nil iff in the LRU
}

// fillFunc fetches a needle (or, with rng, a range of it) into dst and
// returns the bytes written and the needle's total size.
type fillFunc func(ctx context.Context, key needleKey, jwt string, rng *[2]int64, dst []byte) (int, int64, error)

// needleCache keeps hot needles in registered slots, the server's only
// memory the NIC reads: a needle is fetched once and served to any number
// of reads from its slot. Concurrent requests for one needle share one
// fill. Safe for concurrent use.
type needleCache struct {
	mem      []byte // the arena
	slotSize int
	slots    *slotPool
	fill     fillFunc

	mu    sync.Mutex
	byKey map[needleKey]*needle // guarded by mu
	lru   *list.List            // guarded by mu; unpinned cached needles, most recent in front
}

func newNeedleCache(mem []byte, slotSize int, fill fillFunc) *needleCache {
	return &needleCache{mem: mem, slotSize: slotSize, slots: newSlotPool(len(mem) / slotSize), fill: fill,
		byKey: map[needleKey]*needle{}, lru: list.New()}
}

func (c *needleCache) slotMem(slot int) []byte {
	return c.mem[slot*c.slotSize : (slot+1)*c.slotSize]
}

// allocLocked takes a free slot, else evicts the least recently used
// unpinned needle and reuses its slot.
func (c *needleCache) allocLocked() (int, bool) {
	if s, ok := c.slots.tryAcquire(); ok {
		return s, true
	}
	e := c.lru.Back()
	if e == nil {
		return 0, false
	}
	n := c.lru.Remove(e).(*needle)
	n.elem = nil
	delete(c.byKey, n.key)
	return n.slot, true
}

// get returns the needle for key, pinned, fetching it on a miss. hit is
// true when this call did not fetch (the caller then re-checks
// authorization if the needle was fetched with a JWT). The fill runs under
// fillCtx, not ctx, so that one client giving up does not fail the others
// waiting on the same fill. A needle larger than a slot fails with
// *tooLargeError (and is not cached).
func (c *needleCache) get(ctx, fillCtx context.Context, key needleKey, jwt string) (n *needle, hit bool, err error) {
	c.mu.Lock()
	if n, ok := c.byKey[key]; ok {
		c.pinLocked(n)
		c.mu.Unlock()
		select {
		case <-n.ready:
		case <-ctx.Done():
			c.put(n)
			return nil, false, ctx.Err()
		}
		if n.err != nil {
			c.put(n)
			return nil, false, n.err
		}
		return n, true, nil
	}
	slot, ok := c.allocLocked()
	if !ok {
		c.mu.Unlock()
		return nil, false, errBusy
	}
	n = &needle{key: key, slot: slot, cached: true, ready: make(chan struct{}), refs: 1}
	c.byKey[key] = n
	c.mu.Unlock()

	size, total, err := c.fill(fillCtx, key, jwt, nil, c.slotMem(slot))
	if err == nil {
		n.size, n.total, n.authed = size, total, jwt != ""
		n.crc = crc32c(0, c.slotMem(slot)[:size])
	} else {
		n.err = err
		c.mu.Lock()
		delete(c.byKey, key)
		n.cached = false
		c.mu.Unlock()
	}
	close(n.ready)
	if err != nil {
		c.put(n)
		return nil, false, err
	}
	return n, false, nil
}

// getRange fetches bytes [off, off+length) of a needle too large for a slot
// into a slot of its own that is freed on release; nothing is cached.
func (c *needleCache) getRange(ctx context.Context, key needleKey, jwt string, off int64, length int) (*needle, error) {
	c.mu.Lock()
	slot, ok := c.allocLocked()
	c.mu.Unlock()
	if !ok {
		return nil, errBusy
	}
	n := &needle{key: key, slot: slot, ready: make(chan struct{}), refs: 1}
	close(n.ready)
	length = min(length, c.slotSize)
	size, total, err := c.fill(ctx, key, jwt, &[2]int64{off, off + int64(length) - 1}, c.slotMem(slot))
	if err != nil {
		c.put(n)
		return nil, err
	}
	n.size, n.total, n.authed = size, total, jwt != ""
	n.crc = crc32c(0, c.slotMem(slot)[:size])
	return n, nil
}

// scratch takes a slot outside the cache, pinned, holding a copy of src
// (at most a slot); it is freed on put. false when every slot is pinned.
func (c *needleCache) scratch(src []byte) (*needle, bool) {
	c.mu.Lock()
	slot, ok := c.allocLocked()
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	n := &needle{slot: slot, ready: make(chan struct{}), refs: 1}
	close(n.ready)
	n.size = copy(c.slotMem(slot), src)
	return n, true
}

func (c *needleCache) pinLocked(n *needle) {
	n.refs++
	if n.elem != nil {
		c.lru.Remove(n.elem)
		n.elem = nil
	}
}

// put unpins n: a cached needle goes to the LRU's front, any other frees
// its slot.
func (c *needleCache) put(n *needle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n.refs--
	switch {
	case n.refs > 0:
	case n.refs < 0:
		panic("rdma: needle released more often than pinned")
	case n.cached:
		n.elem = c.lru.PushFront(n)
	default:
		c.slots.release(n.slot)
	}
}

// stats reports cached needles and pinned slots.
func (c *needleCache) stats() (cached, pinned int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byKey), c.slots.size() - len(c.slots.free) - c.lru.Len()
}
