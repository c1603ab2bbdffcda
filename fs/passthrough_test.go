package fs

import (
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/stretchr/testify/require"

	"github.com/weedfuse/weedfuse/pagecache"
)

// TestReadaheadFollowsODirect: only a cached handle opened with O_DIRECT
// reads ahead into memory; every other way a read arrives leaves
// readahead of the disk cache to the kernel.
func TestReadaheadFollowsODirect(t *testing.T) {
	for _, tc := range []struct {
		name string
		fh   gofs.FileHandle
		want pagecache.Ahead
	}{
		{"no_open", nil, pagecache.KernelAhead},
		{"buffered", &cachedHandle{}, pagecache.KernelAhead},
		{"O_DIRECT", &cachedHandle{direct: true}, pagecache.MemoryAhead},
		{"passthrough", &ptHandle{}, pagecache.KernelAhead},
	} {
		require.Equal(t, tc.want, aheadFor(tc.fh), tc.name)
	}
}
