package rdma

import (
	"container/list"
	"context"
	"errors"
	"sync"
)

// errBusy: every slot is pinned by replies not yet released.
var errBusy = errors.New("all slots are in use")

// slotNeedle is one slot's content. A needle is pinned while refs > 0 (replies
// the client has not released, or requests waiting for its fill); an unpinned
// cached needle sits in the LRU and may be evicted.
type slotNeedle struct {
	fid    string
	slot   int
	cached bool          // in needleCache.byFID; false for a scratch slot or a failed fill
	ready  chan struct{} // closed once the fill finished; stored, authed and err are then fixed
	stored storedNeedle  // the slot's bytes: length, CRC32C, the volume server's checksum
	authed bool          // fetched with a JWT: hits re-check authorization upstream
	err    error

	refs int           // guarded by needleCache.mu
	elem *list.Element // guarded by needleCache.mu; non-nil iff in the LRU
}

// fillFunc fetches a whole stored needle into dst (see volumeHTTP.fetch).
type fillFunc func(ctx context.Context, fid, jwt string, dst []byte) (storedNeedle, error)

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
	byFID map[string]*slotNeedle // guarded by mu
	lru   *list.List             // guarded by mu; unpinned cached needles, most recent in front
}

func newNeedleCache(mem []byte, slotSize int, fill fillFunc) *needleCache {
	return &needleCache{mem: mem, slotSize: slotSize, slots: newSlotPool(len(mem) / slotSize), fill: fill,
		byFID: map[string]*slotNeedle{}, lru: list.New()}
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
	n := c.lru.Remove(e).(*slotNeedle)
	n.elem = nil
	delete(c.byFID, n.fid)
	return n.slot, true
}

// get returns the needle of fid, pinned, fetching it on a miss. hit is
// true when this call did not fetch (the caller then re-checks
// authorization if the needle was fetched with a JWT). The fill runs under
// fillCtx, not ctx, so that one client giving up does not fail the others
// waiting on the same fill. A failed fill (a needle larger than a slot, one
// that fails its checksum) is not cached.
func (c *needleCache) get(ctx, fillCtx context.Context, fid, jwt string) (n *slotNeedle, hit bool, err error) {
	c.mu.Lock()
	if n, ok := c.byFID[fid]; ok {
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
	n = &slotNeedle{fid: fid, slot: slot, cached: true, ready: make(chan struct{}), refs: 1}
	c.byFID[fid] = n
	c.mu.Unlock()

	st, err := c.fill(fillCtx, fid, jwt, c.slotMem(slot))
	if err == nil {
		n.stored, n.authed = st, jwt != ""
	} else {
		n.err = err
		c.mu.Lock()
		delete(c.byFID, fid)
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

// scratch takes a slot outside the cache, pinned, holding a copy of n's
// bytes and description; it is freed on put. false when every slot is
// pinned.
func (c *needleCache) scratch(n *slotNeedle) (*slotNeedle, bool) {
	c.mu.Lock()
	slot, ok := c.allocLocked()
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	s := &slotNeedle{fid: n.fid, slot: slot, ready: make(chan struct{}), stored: n.stored, refs: 1}
	close(s.ready)
	copy(c.slotMem(slot), c.slotMem(n.slot)[:n.stored.size])
	return s, true
}

func (c *needleCache) pinLocked(n *slotNeedle) {
	n.refs++
	if n.elem != nil {
		c.lru.Remove(n.elem)
		n.elem = nil
	}
}

// put unpins n: a cached needle goes to the LRU's front, any other frees
// its slot.
func (c *needleCache) put(n *slotNeedle) {
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
	return len(c.byFID), c.slots.size() - len(c.slots.free) - c.lru.Len()
}
