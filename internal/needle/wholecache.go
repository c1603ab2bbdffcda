package needle

import (
	"container/list"
	"sync"
)

// NeedleCache keeps the verified logical bytes of the last few needles read,
// for the HTTP reader (internal/volume) and the RDMA client alike.
// A needle is only ever fetched whole (a whole needle is what its checksums
// cover), while callers may ask for a chunk a piece at a time; without
// this, every piece of a 4 MiB chunk would fetch and verify all 4 MiB
// again. The block cache's plain chunks bypass it (volume.Reader.Fetch streams
// them into its slots); gzipped and encrypted ones, decoded whole, use it.
// Needles never change under a file id, so entries need no invalidation. It is safe for concurrent use; the slices it hands out are
// shared and must not be written.
type NeedleCache struct {
	limit int64 // bytes; fixed at construction

	mu sync.Mutex
	// size is the total length of the cached needles.
	size int64
	// lru holds *wholeEntry, most recently used at the front.
	lru *list.List
	// byID indexes lru by file id.
	byID map[string]*list.Element
}

type wholeEntry struct {
	fid  string
	data []byte
}

// NewNeedleCache returns a cache of at most limit bytes; 0 turns it off.
func NewNeedleCache(limit int64) *NeedleCache {
	return &NeedleCache{limit: limit, lru: list.New(), byID: map[string]*list.Element{}}
}

// Get returns the needle cached under fid.
func (c *NeedleCache) Get(fid string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[fid]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*wholeEntry).data, true
}

// Put caches data under fid, evicting the least recently used needles to
// stay within the limit. A needle larger than the whole limit is not kept,
// nor is anything when the limit is zero (the cache is off).
func (c *NeedleCache) Put(fid string, data []byte) {
	if c.limit == 0 || int64(len(data)) > c.limit {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byID[fid]; ok {
		return
	}
	c.byID[fid] = c.lru.PushFront(&wholeEntry{fid: fid, data: data})
	c.size += int64(len(data))
	for c.size > c.limit {
		oldest := c.lru.Back()
		entry := c.lru.Remove(oldest).(*wholeEntry)
		delete(c.byID, entry.fid)
		c.size -= int64(len(entry.data))
	}
}
