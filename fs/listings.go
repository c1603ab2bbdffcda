package fs

import (
	"container/list"
	"hash/maphash"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// listingGens is how many change counters listingStore hashes directory
// paths onto. Two directories that share one only drop each other's
// listings more often.
const listingGens = 4096

// listingStore says whether a directory's listing is still current, and
// keeps the listings of directories the kernel has forgotten.
//
// Currency: every listing carries the change counter of its directory's
// path as it was when the listing was asked for; a metadata event in the
// directory bumps the counter (changed), which makes every listing of the
// path stale at once, whichever node or store holds it. So a listing
// streamed while an event arrived, or one handed between a forgotten node,
// the store and a new node while an event passed them, is never served as
// current. A break of the metadata stream makes every listing stale for
// look-ups (broke), but not for serving while the filer is down.
//
// Retention: the kernel forgets a directory's node when it drops its
// dentries (memory pressure, drop_caches between a loader's epochs), and the
// node's listing went with it: the next listing streamed from the filer
// again, and a look-up of each name asked the filer. A forgotten node's
// current listing is kept here, up to Options.MaxCachedListing entries in
// all (the least recently kept go first), until the directory's next node
// takes it back or it is older than ttl (Options.ForgottenListingTTL:
// -cacheMetaTtlSec, or -dirIdleEvictSec if shorter), past which it could
// serve nothing more (a node held by the kernel keeps its own listing for a
// filer that went away).
//
// Its methods are safe for concurrent use.
type listingStore struct {
	seed maphash.Seed
	gens [listingGens]atomic.Uint64
	// epoch counts the breaks of the metadata stream (broke); it is in
	// every gen, above any count of a path's events (epochShift).
	epoch atomic.Uint64

	mu       sync.Mutex
	kept     map[string]*list.Element // of *keptListing, by path
	lru      list.List                // front: the newest
	entries  int                      // in kept listings
	capacity int
	ttl      time.Duration
}

// keptListing is a directory's complete listing, in the filer's order, as
// of time at, when the path's change counter was gen.
type keptListing struct {
	path    string
	entries []*filerpb.Entry
	at      time.Time
	gen     uint64
	// sorted: names ascend, so a name can be searched for (every filer
	// store lists in name order; this is checked, not assumed).
	sorted bool
}

func newListingStore(capacity int, ttl time.Duration) *listingStore {
	return &listingStore{seed: maphash.MakeSeed(), kept: map[string]*list.Element{}, capacity: capacity, ttl: ttl}
}

func (s *listingStore) counter(p string) *atomic.Uint64 {
	return &s.gens[maphash.String(s.seed, p)%listingGens]
}

// epochShift places the epoch in a gen: 2^40 events of one path would
// reach it.
const epochShift = 40

// gen is the change counter of directory p now, with the stream's epoch: a
// listing asked for now carries it.
func (s *listingStore) gen(p string) uint64 {
	return s.counter(p).Load() + s.epoch.Load()<<epochShift
}

// current says whether a listing of p that carries gen is current: no
// event in p came since, and the metadata stream did not break.
func (s *listingStore) current(p string, gen uint64) bool { return s.gen(p) == gen }

// unchanged says whether no event in p came since gen, whatever the stream
// did: such a listing is what there is while the filer is down, but not
// current once the stream broke.
func (s *listingStore) unchanged(p string, gen uint64) bool {
	return s.counter(p).Load() == gen&(1<<epochShift-1)
}

// broke says the metadata stream broke. Its missed events come again,
// replayed from the last one seen, only after it is back and counts as up
// (watched), so no listing from before may pass for current meanwhile;
// they stay kept for a filer that went away (dir.staleListing).
func (s *listingStore) broke() { s.epoch.Add(1) }

// changed makes every listing of directory p stale.
func (s *listingStore) changed(p string) {
	s.counter(p).Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.kept[p]; ok {
		s.removeLocked(el)
	}
}

// treeChanged makes every listing of directory p stale, and drops those
// kept for the directories beneath it: p was deleted, made or moved, and a
// directory made again beneath it must not be served what was there.
// (Nodes the kernel still holds there learn of it by their own events.)
func (s *listingStore) treeChanged(p string) {
	s.changed(p)
	prefix := p + "/"
	if p == "/" {
		prefix = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for path, el := range s.kept {
		if strings.HasPrefix(path, prefix) {
			s.removeLocked(el)
		}
	}
}

// newKept makes l, a complete listing of p asked for under gen, ready to
// keep or serve.
func newKept(p string, l []*filerpb.Entry, gen uint64) *keptListing {
	sorted := sort.SliceIsSorted(l, func(i, j int) bool { return l[i].GetName() < l[j].GetName() })
	return &keptListing{path: p, entries: l, at: time.Now(), gen: gen, sorted: sorted}
}

// find returns the entry named name, and whether the listing can tell:
// an entry not found in a current listing does not exist. It cannot tell
// when it is not sorted, nor for a hard link, whose entry (its bytes)
// changes with events in whichever directory holds another of its names:
// such an entry is asked of the filer. An entry past its TTL is not found
// (entryExpired).
func (k *keptListing) find(name string) (*filerpb.Entry, bool) {
	if !k.sorted {
		return nil, false
	}
	i := sort.Search(len(k.entries), func(i int) bool { return k.entries[i].GetName() >= name })
	if i < len(k.entries) && k.entries[i].GetName() == name {
		e := k.entries[i]
		switch {
		case len(e.GetHardLinkId()) > 0:
			return nil, false
		case entryExpired(e, time.Time{}):
			return nil, true
		}
		return e, true
	}
	return nil, true
}

// retain keeps k, the listing of a node the kernel forgot, if no event in
// its directory came since it was listed and it is small enough (one from
// before a break of the stream is kept for a filer that went away).
func (s *listingStore) retain(k *keptListing) {
	if k == nil || len(k.entries) > s.capacity || !s.unchanged(k.path, k.gen) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.kept[k.path]; ok {
		s.removeLocked(el)
	}
	s.kept[k.path] = s.lru.PushFront(k)
	s.entries += len(k.entries)
	for s.entries > s.capacity {
		s.removeLocked(s.lru.Back())
	}
	s.expireLocked()
}

// expireLocked drops the kept listings past ttl, oldest first: those kept
// before them are older still, bar a listing read long before it was kept.
func (s *listingStore) expireLocked() {
	for el := s.lru.Back(); el != nil && time.Since(el.Value.(*keptListing).at) >= s.ttl; el = s.lru.Back() {
		s.removeLocked(el)
	}
}

// take hands the kept listing of p, if there is one, to p's new node.
func (s *listingStore) take(p string) *keptListing {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	el, ok := s.kept[p]
	if !ok {
		return nil
	}
	s.removeLocked(el)
	// expireLocked goes by when listings were kept; a listing kept late
	// may have been read from the filer long before.
	k := el.Value.(*keptListing)
	if time.Since(k.at) > s.ttl {
		return nil
	}
	return k
}

func (s *listingStore) removeLocked(el *list.Element) {
	k := s.lru.Remove(el).(*keptListing)
	delete(s.kept, k.path)
	s.entries -= len(k.entries)
}
