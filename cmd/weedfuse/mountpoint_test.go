package main

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const mountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /mnt rw shared:2 - tmpfs tmpfs rw
41 40 0:36 / /mnt/sw rw,nosuid,nodev - fuse.seaweedfs weed rw,user_id=0,group_id=0
42 40 0:37 / /mnt/my\040data rw - fuse.seaweedfs a:8888:/ rw,user_id=0,group_id=0
43 41 0:38 / /mnt/sw rw - fuse.sshfs host: rw
`

func TestMountPointIn(t *testing.T) {
	tests := []struct{ path, dir, fstype string }{
		{"/", "/", "ext4"},
		{"/home/x", "/", "ext4"},
		{"/mnt", "/mnt", "tmpfs"},
		{"/mnt/swap", "/mnt", "tmpfs"},              // a prefix, not a parent
		{"/mnt/sw/data/f", "/mnt/sw", "fuse.sshfs"}, // the top of two stacked
		{"/mnt/my data/f", "/mnt/my data", "fuse.seaweedfs"},
	}
	for _, tt := range tests {
		m := mountPointIn(mountinfo, tt.path)
		assert.Equal(t, tt.dir, m.dir, tt.path)
		assert.Equal(t, tt.fstype, m.fstype, tt.path)
	}
}

func TestUnescapeOctal(t *testing.T) {
	assert.Equal(t, "/a b\tc\\d", unescapeOctal(`/a\040b\011c\134d`))
	assert.Equal(t, `/a\9`, unescapeOctal(`/a\9`))
}

// A path inside a mount finds the mount by its mount point; a path on no
// weedfuse mount finds nothing.
func TestFindMount(t *testing.T) {
	t.Setenv("WEEDFUSE_RUN_DIR", t.TempDir())
	path, err := filepath.EvalSymlinks(t.TempDir())
	require.NoError(t, err)
	m0, err := mountPoint(path)
	require.NoError(t, err)
	mnt := m0.dir
	require.NotEqual(t, path, mnt)
	ctl, err := serveControl(mnt, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("weedfuse_cache_capacity_bytes{tier=\"disk\"} 1048576\n"))
	}))
	require.NoError(t, err)
	m, err := findMount(context.Background(), path)
	require.NoError(t, err)
	assert.Equal(t, mnt, m.dir)
	assert.Equal(t, controlSocketPath(mnt), m.sock)
	assert.Equal(t, float64(1<<20), m.first.sum("weedfuse_cache_capacity_bytes", diskTier))

	ctl.close()
	_, err = findMount(context.Background(), path)
	assert.ErrorIs(t, err, errNoMount)
}

// The mount's user comes from its user_id= super option, so that root
// finds the socket of a mount a user runs.
func TestMountOwner(t *testing.T) {
	info := mountinfo + "44 40 0:39 / /mnt/user rw - fuse.seaweedfs b:8888:/ rw,user_id=1000,group_id=1000\n"
	assert.Equal(t, 1000, mountPointIn(info, "/mnt/user/f").owner)
	assert.Equal(t, 0, mountPointIn(info, "/mnt/my data").owner)
	assert.Equal(t, -1, mountPointIn(info, "/mnt").owner, "tmpfs has no user_id")
}
