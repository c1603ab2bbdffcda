package fs

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

func TestInodeKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    string
		e    *filerpb.Entry
		want string
	}{
		{"plain file", "/a/f", &filerpb.Entry{Name: "f"}, "/a/f"},
		{"hard link", "/a/f", &filerpb.Entry{Name: "f", HardLinkId: []byte{1, 2}}, "\x00\x01\x02"},
		{"directory", "/a/d", &filerpb.Entry{Name: "d", IsDirectory: true, HardLinkId: []byte{1}}, "/a/d"},
	} {
		assert.Equal(t, tc.want, inodeKey(tc.p, tc.e), tc.name)
	}
}

// TestInodeTableNumbers checks that every key gets its own number and
// keeps it until forgotten: a counter cannot collide as a hash can.
func TestInodeTableNumbers(t *testing.T) {
	tab := newInodeTable("/")
	seen := map[uint64]string{rootIno: "/"}
	for i := 0; i < 10000; i++ {
		k := fmt.Sprintf("/d/f%05d", i)
		ino := tab.forListing(k)
		if other, dup := seen[ino]; dup {
			t.Fatalf("key %s got %d, already %s's", k, ino, other)
		}
		seen[ino] = k
		assert.Equal(t, ino, tab.forListing(k), "a key keeps its number")
	}
	assert.Equal(t, uint64(rootIno), tab.forListing("/"))

	// Forgetting a number that was renumbered since changes nothing;
	// forgetting the current one gives the key a fresh number later.
	a := tab.forListing("/x")
	tab.forget("/x", a+1000)
	assert.Equal(t, a, tab.forListing("/x"))
	tab.forget("/x", a)
	b := tab.forListing("/x")
	assert.NotEqual(t, a, b, "numbers are never reused")
	_, dup := seen[b]
	assert.False(t, dup, "a fresh number is no one's")
}

func TestInodeTableLooseBound(t *testing.T) {
	tab := newInodeTable("/")
	for i := 0; i < maxLooseInodes+10; i++ {
		tab.forListing(fmt.Sprintf("/f%d", i))
	}
	assert.LessOrEqual(t, len(tab.byKey), maxLooseInodes+1, "numbers of listed-only keys are bounded")
	_, kept := tab.byKey["/f0"]
	assert.False(t, kept, "the oldest listed-only key was dropped")
	_, kept = tab.byKey[fmt.Sprintf("/f%d", maxLooseInodes+9)]
	assert.True(t, kept)
}
