package integration

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// eventually polls cond until it holds or limit passes. The limit bounds a
// hang, it is not a speed assertion.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within %v", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMetadataFollowsFiler changes files on the filer behind the mount's
// back, with the default 60 s metadata TTL: the metadata subscription must
// make each change visible, content and kernel page cache included.
func TestMetadataFollowsFiler(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 2*time.Minute)
	v1 := bytes.Repeat([]byte("version one "), 100_000)
	v2 := bytes.Repeat([]byte("VERSION TWO, LONGER "), 100_000)
	require.NoError(t, c.Put(ctx, "/meta/f.bin", v1))
	require.NoError(t, c.Put(ctx, "/meta/gone.bin", []byte("soon deleted")))
	m := startMount(t, c)
	at := func(name string) string { return filepath.Join(m.Dir, "meta", name) }

	got, err := os.ReadFile(at("f.bin"))
	require.NoError(t, err)
	require.Equal(t, v1, got)
	names := func() string {
		ents, err := os.ReadDir(filepath.Join(m.Dir, "meta"))
		require.NoError(t, err)
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return strings.Join(out, " ")
	}
	require.Equal(t, "f.bin gone.bin", names()) // the listing is now cached
	_, err = os.Stat(at("new.bin"))
	require.ErrorIs(t, err, os.ErrNotExist) // caches a negative entry

	require.NoError(t, c.Put(ctx, "/meta/f.bin", v2))
	eventually(t, 30*time.Second, "overwritten content", func() bool {
		got, err := os.ReadFile(at("f.bin"))
		return err == nil && bytes.Equal(got, v2)
	})
	st, err := os.Stat(at("f.bin"))
	require.NoError(t, err)
	if st.Size() != int64(len(v2)) {
		t.Errorf("size after overwrite: got %d, want %d", st.Size(), len(v2))
	}
	// The same size, other bytes, and very likely the same mtime second:
	// the kernel, which keeps pages across opens, must still drop them.
	v3 := bytes.ToUpper(bytes.Repeat([]byte("version two, longer "), 100_000))
	v3[0] = 'v'
	require.Len(t, v3, len(v2))
	require.NoError(t, c.Put(ctx, "/meta/f.bin", v3))
	eventually(t, 30*time.Second, "content overwritten at the same size", func() bool {
		got, err := os.ReadFile(at("f.bin"))
		return err == nil && bytes.Equal(got, v3)
	})

	require.NoError(t, c.Put(ctx, "/meta/new.bin", []byte("new")))
	eventually(t, 30*time.Second, "created file", func() bool {
		got, err := os.ReadFile(at("new.bin"))
		return err == nil && string(got) == "new"
	})
	eventually(t, 30*time.Second, "created file in the listing", func() bool {
		return names() == "f.bin gone.bin new.bin"
	})

	require.NoError(t, c.Delete(ctx, "/meta/gone.bin"))
	eventually(t, 30*time.Second, "deleted file", func() bool {
		_, err := os.Stat(at("gone.bin"))
		return errors.Is(err, os.ErrNotExist)
	})
	eventually(t, 30*time.Second, "deleted file gone from the listing", func() bool {
		return names() == "f.bin new.bin"
	})
}

// TestListingOutlivesForget: a directory's listing outlives the kernel's
// hold on its node (drop_caches forgets it), as a loader's epochs need,
// and still follows the filer: a file made or deleted while no node held
// the listing shows, and a directory deleted and made again beneath a kept
// listing shows its new contents, not its old ones.
func TestListingOutlivesForget(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 2*time.Minute)
	for _, p := range []string{"/kept/a", "/kept/b", "/kept/c", "/kept/sub/x", "/kept/sub/deep/y"} {
		require.NoError(t, c.Put(ctx, p, []byte(p)))
	}
	m := startMount(t, c)
	names := func(dir string) string {
		ents, err := os.ReadDir(filepath.Join(m.Dir, dir))
		if err != nil {
			return err.Error()
		}
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return strings.Join(out, " ")
	}
	forget := func() {
		unix.Sync()
		require.NoError(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0))
	}
	require.Equal(t, "a b c sub", names("kept"))
	require.Equal(t, "deep x", names("kept/sub"))
	require.Equal(t, "y", names("kept/sub/deep"))
	forget()
	// Kept listings answer again, and so do look-ups of their names.
	require.Equal(t, "a b c sub", names("kept"))
	got, err := os.ReadFile(filepath.Join(m.Dir, "kept", "b"))
	require.NoError(t, err)
	require.Equal(t, "/kept/b", string(got))
	_, err = os.Stat(filepath.Join(m.Dir, "kept", "nope"))
	require.ErrorIs(t, err, os.ErrNotExist)

	forget()
	require.NoError(t, c.Put(ctx, "/kept/d", []byte("/kept/d")))
	require.NoError(t, c.Delete(ctx, "/kept/a"))
	eventually(t, 30*time.Second, "a change made while the listing was kept", func() bool {
		return names("kept") == "b c d sub"
	})
	got, err = os.ReadFile(filepath.Join(m.Dir, "kept", "d"))
	require.NoError(t, err)
	require.Equal(t, "/kept/d", string(got))

	require.Equal(t, "deep x", names("kept/sub"))
	require.Equal(t, "y", names("kept/sub/deep"))
	forget()
	require.NoError(t, c.Delete(ctx, "/kept/sub"))
	require.NoError(t, c.Put(ctx, "/kept/sub/deep/z", []byte("/kept/sub/deep/z")))
	eventually(t, 30*time.Second, "a directory made again beneath kept listings", func() bool {
		return names("kept/sub") == "deep" && names("kept/sub/deep") == "z"
	})
}

// TestXattrs reads extended attributes through the mount: weed mount stores
// attribute "name" as the entry's Extended["xattr-name"], and the mount
// answers from the cached entry when -disableXAttr=false.
func TestXattrs(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, time.Minute)
	resp, err := c.FilerClient().CreateEntry(ctx, &filerpb.CreateEntryRequest{
		Directory: "/x",
		Entry: &filerpb.Entry{
			Name:       "f",
			Content:    []byte("data"),
			Attributes: &filerpb.FuseAttributes{FileMode: 0o644, FileSize: 4, Mtime: time.Now().Unix()},
			Extended:   map[string][]byte{"xattr-user.color": []byte("blue"), "other": []byte("not an xattr")},
		},
	})
	require.NoError(t, err)
	require.Empty(t, resp.Error)
	// By default xattrs are off: ENOSYS, which the kernel reports as
	// EOPNOTSUPP and remembers, so no later call reaches the mount.
	off := startMount(t, c)
	buf := make([]byte, 64)
	for i := 0; i < 2; i++ {
		if _, err := unix.Getxattr(filepath.Join(off.Dir, "x", "f"), "user.color", buf); !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("default mount, getxattr %d: got %v, want EOPNOTSUPP", i, err)
		}
	}

	m := startMount(t, c, "-disableXAttr=false")
	p := filepath.Join(m.Dir, "x", "f")

	n, err := unix.Getxattr(p, "user.color", buf)
	require.NoError(t, err)
	if got := string(buf[:n]); got != "blue" {
		t.Errorf("user.color: got %q, want %q", got, "blue")
	}
	if _, err := unix.Getxattr(p, "user.missing", buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("a missing attribute: got %v, want ENODATA", err)
	}
	n, err = unix.Listxattr(p, buf)
	require.NoError(t, err)
	if got := string(buf[:n]); got != "user.color\x00" {
		t.Errorf("listxattr: got %q, want %q", got, "user.color\x00")
	}
	if err := unix.Setxattr(p, "user.color", []byte("red"), 0); !errors.Is(err, unix.EROFS) {
		t.Errorf("setxattr: got %v, want EROFS", err)
	}
}
