package fs

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

func entries(names ...string) []*filerpb.Entry {
	l := make([]*filerpb.Entry, len(names))
	for i, n := range names {
		l[i] = &filerpb.Entry{Name: n}
	}
	return l
}

// TestListingStore: a kept listing goes back to the directory's next node
// only while no event touched the directory, within the store's bound.
func TestListingStore(t *testing.T) {
	s := newListingStore(5, time.Hour)
	keep := func(p string, names ...string) *keptListing {
		k := newKept(p, entries(names...), s.gen(p))
		s.retain(k)
		return k
	}
	k := keep("/a", "x", "y")
	assert.Same(t, k, s.take("/a"))
	assert.Nil(t, s.take("/a"), "taken once")

	k = keep("/a", "x", "y")
	s.changed("/a")
	assert.Nil(t, s.take("/a"), "changed while kept")
	assert.False(t, s.current("/a", k.gen))
	s.retain(k)
	assert.Nil(t, s.take("/a"), "stale when handed over")

	keep("/a", "x", "y")
	keep("/b", "x", "y")
	keep("/c", "x", "y") // 6 entries: /a, the oldest, goes
	assert.Nil(t, s.take("/a"))
	assert.NotNil(t, s.take("/b"))
	keep("/big", "1", "2", "3", "4", "5", "6")
	assert.Nil(t, s.take("/big"), "larger than the store")
	assert.NotNil(t, s.take("/c"))

	keep("/t", "x")
	keep("/t/sub", "y")
	keep("/tx", "z")
	s.treeChanged("/t")
	assert.Nil(t, s.take("/t"))
	assert.Nil(t, s.take("/t/sub"), "beneath a changed tree")
	assert.NotNil(t, s.take("/tx"), "a sibling that shares the prefix")

	keep("/r", "x")
	s.treeChanged("/")
	assert.Nil(t, s.take("/r"), "beneath the root")

	k = keep("/old", "x")
	k.at = time.Now().Add(-2 * time.Hour)
	assert.Nil(t, s.take("/old"), "past the ttl")
}

// TestKeptListingFind: a sorted listing tells which names exist; one out of
// order tells nothing.
func TestKeptListingFind(t *testing.T) {
	for _, tc := range []struct {
		names       []string
		name        string
		found, sure bool
	}{
		{[]string{"a", "b", "d"}, "b", true, true},
		{[]string{"a", "b", "d"}, "c", false, true},
		{[]string{"a", "b", "d"}, "e", false, true},
		{[]string{}, "a", false, true},
		{[]string{"b", "a"}, "a", false, false},
	} {
		t.Run(fmt.Sprint(tc.names, tc.name), func(t *testing.T) {
			e, sure := newKept("/d", entries(tc.names...), 0).find(tc.name)
			assert.Equal(t, tc.sure, sure)
			assert.Equal(t, tc.found, e != nil)
			if e != nil {
				assert.Equal(t, tc.name, e.GetName())
			}
		})
	}
}

// TestForgottenDirKeepsListing: a directory node forgotten by the kernel
// hands its current listing to the next node of its path, unless an event
// in the directory came in between.
func TestForgottenDirKeepsListing(t *testing.T) {
	for _, change := range []bool{false, true} {
		t.Run(fmt.Sprint("changed=", change), func(t *testing.T) {
			d := testDir(t, &streamMeta{}, Options{MetaTTL: time.Hour}, true)
			d.keepListing(entries("a", "b"), d.fsys.listings.gen(d.path))
			_, ok := d.cachedListing()
			require.True(t, ok)
			d.OnForget()
			if change {
				d.fsys.dirChanged(d.path)
			}
			next := &dir{}
			next.initDir(d.fsys, d.path, d.path, d.entry)
			k, ok := next.cachedListing()
			assert.Equal(t, !change, ok)
			if ok {
				assert.Len(t, k.entries, 2)
			}
		})
	}
}

// TestLookupFromListing: a name absent from a current listing does not
// exist, and the filer is not asked (streamMeta has no LookupEntry).
func TestLookupFromListing(t *testing.T) {
	d := testDir(t, &streamMeta{}, Options{MetaTTL: time.Hour}, true)
	d.keepListing(entries("a", "b"), d.fsys.listings.gen(d.path))
	_, errno := d.lookup(context.Background(), "c", &fuse.EntryOut{})
	assert.Equal(t, syscall.ENOENT, errno)
}

// TestListingStoreConcurrent runs the store's calls from many goroutines
// (under -race in make test): the bound holds throughout, and a listing
// taken after the last change of its path is current.
func TestListingStoreConcurrent(t *testing.T) {
	s := newListingStore(50, time.Hour)
	paths := []string{"/a", "/a/b", "/c", "/c/d", "/e"}
	done := make(chan struct{})
	for w := 0; w < 8; w++ {
		go func(w int) {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 2000; i++ {
				p := paths[(w+i)%len(paths)]
				switch i % 5 {
				case 0, 1:
					s.retain(newKept(p, entries("x", "y", "z"), s.gen(p)))
				case 2:
					if k := s.take(p); k != nil && k.path != p {
						t.Errorf("took %s's listing for %s", k.path, p)
					}
				case 3:
					s.changed(p)
				case 4:
					s.treeChanged(p)
				}
			}
		}(w)
	}
	for w := 0; w < 8; w++ {
		<-done
	}
	s.mu.Lock()
	n := 0
	for _, el := range s.kept {
		n += len(el.Value.(*keptListing).entries)
	}
	assert.Equal(t, s.entries, n)
	assert.LessOrEqual(t, s.entries, 50)
	assert.Equal(t, len(s.kept), s.lru.Len())
	s.mu.Unlock()
}
