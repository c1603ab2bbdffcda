package fs

import (
	"sync"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// Inode numbers.
//
// go-fuse finds a node the kernel already knows by its inode number, so two
// names with one number are one file to the kernel: with a hash of the path
// as the number, a collision showed one file's bytes under another's name.
// Numbers therefore come from a counter and are handed out by key, so no
// two keys ever share one:
//
//   - an entry with a hard_link_id is keyed by that id: all names of a hard
//     link are one node, with one set of attributes, and a change seen
//     through one name (a look-up, a metadata event) is seen under all;
//   - any other entry is keyed by its filer path.
//
// The root is 1; other numbers start at 2 and are never reused within a
// mount. A key keeps its number while a node of the tree holds it, that is
// until the kernel forgets the node (node.OnForget). A listing hands out
// numbers for entries it has no node for (a plain READDIR); the last
// maxLooseInodes such keys keep theirs, so that a listing and the look-ups
// that follow it agree. A key that comes back after that gets a fresh
// number: numbers are stable while the kernel knows a file, not across
// remounts (nor are weed mount's, which hashes path and crtime).
//
// The filer's own FuseAttributes.inode is not used: newer filers store a
// 64-bit hash of path and crtime there (weed/filer/filer_inode.go), which
// can collide as the path hash did, and older ones leave it 0.
type inodeTable struct {
	mu sync.Mutex
	// next is the next number to hand out.
	next uint64
	// byKey holds each key's number and the node that holds it, if any.
	byKey map[string]*inodeSlot
	// loose is a ring of the keys numbered for a listing alone; looseNext
	// is where the next one goes.
	loose     []string
	looseNext int
}

type inodeSlot struct {
	ino uint64
	// node is the one node made for the number, so that every name of a
	// hard link gets the same node (go-fuse would otherwise keep the first
	// and drop later ones after their look-up, unrefreshed).
	node gofs.InodeEmbedder
}

// maxLooseInodes bounds the numbers kept for entries that were listed but
// never looked up: about 100 bytes each.
const maxLooseInodes = 1 << 17

// rootIno is the root's number, as FUSE fixes it.
const rootIno = 1

func newInodeTable(rootKey string) *inodeTable {
	return &inodeTable{
		next:  rootIno + 1,
		byKey: map[string]*inodeSlot{rootKey: {ino: rootIno}},
	}
}

// inodeKey is the key of entry e at filer path p.
func inodeKey(p string, e *filerpb.Entry) string {
	if id := e.GetHardLinkId(); len(id) > 0 && !e.GetIsDirectory() {
		// A NUL cannot start a path, so the two kinds of key never meet.
		return "\x00" + string(id)
	}
	return p
}

// nodeFor returns the node that holds key's number, made by make when
// there is none yet or when the one there is of another file type than
// mode (a path that now names a directory instead of a file): that gets a
// new number, since the kernel must never see an inode change its type.
// made tells whether make was called.
func (t *inodeTable) nodeFor(key string, mode uint32, make func(ino uint64) gofs.InodeEmbedder) (n gofs.InodeEmbedder, made bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.slotLocked(key)
	if s.node != nil {
		ino := s.node.EmbeddedInode()
		if ino.StableAttr().Mode == mode {
			return s.node, false
		}
		s = &inodeSlot{ino: t.next}
		t.next++
		t.byKey[key] = s
	}
	s.node = make(s.ino)
	return s.node, true
}

// nodeByKey returns the node that holds key's number, or nil.
func (t *inodeTable) nodeByKey(key string) gofs.InodeEmbedder {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.byKey[key]; ok {
		return s.node
	}
	return nil
}

// forListing returns key's number for a directory entry that no node may
// hold yet.
func (t *inodeTable) forListing(key string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.byKey[key]; ok {
		return s.ino
	}
	s := t.slotLocked(key)
	if len(t.loose) < maxLooseInodes {
		t.loose = append(t.loose, key)
		return s.ino
	}
	if old, ok := t.byKey[t.loose[t.looseNext]]; ok && old.node == nil {
		delete(t.byKey, t.loose[t.looseNext])
	}
	t.loose[t.looseNext] = key
	t.looseNext = (t.looseNext + 1) % maxLooseInodes
	return s.ino
}

// slotLocked returns key's slot, numbering the key if it is new.
func (t *inodeTable) slotLocked(key string) *inodeSlot {
	s, ok := t.byKey[key]
	if !ok {
		s = &inodeSlot{ino: t.next}
		t.next++
		t.byKey[key] = s
	}
	return s
}

// forget drops key's number once the node holding ino is gone, unless the
// key has been numbered anew meanwhile.
func (t *inodeTable) forget(key string, ino uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.byKey[key]; ok && s.ino == ino && ino != rootIno {
		delete(t.byKey, key)
	}
}
