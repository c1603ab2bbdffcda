package rdma

import (
	"container/list"
	"sync"
)

// wholeCache keeps the verified logical bytes of the last few needles the
// Client fetched for partial reads, as volume.Reader does for HTTP. A read
// always moves and checks the whole needle, because only a whole needle has
// a checksum, while the page cache asks for a chunk a block at a time;
// without this, every 256 KiB block of a 4 MiB chunk would move and verify
// all 4 MiB again. Needles never change under a file id, so entries need no
// invalidation. Safe for concurrent use; the slices it hands out are shared
// and must not be written.
type wholeCache struct {
	limit int64 // bytes; fixed at construction, 0: off

	mu   sync.Mutex
	size int64                    // guarded by mu: total length of the cached needles
	lru  *list.List               // guarded by mu: *wholeEntry, most recently used in front
	byID map[string]*list.Element // guarded by mu: lru by file id
}

type wholeEntry struct {
	fid  string
	data []byte
}

func newWholeCache(limit int64) *wholeCache {
	return &wholeCache{limit: limit, lru: list.New(), byID: map[string]*list.Element{}}
}

func (c *wholeCache) get(fid string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[fid]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*wholeEntry).data, true
}

// put caches data under fid, evicting the least recently used needles to
// stay within the limit; a needle larger than the limit is not kept.
func (c *wholeCache) put(fid string, data []byte) {
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
		e := c.lru.Remove(c.lru.Back()).(*wholeEntry)
		delete(c.byID, e.fid)
		c.size -= int64(len(e.data))
	}
}
