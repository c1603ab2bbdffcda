package pagecache

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// otherUID is a user the tests may give a directory to: nobody's.
const otherUID = 65534

// plantNeedle writes, as an attacker with write access to dir would, a
// needle of key with bytes of the attacker's choosing and a table that
// matches them (CRC32C is no secret), where the disk tier looks for it.
func plantNeedle(t *testing.T, dir, key string, data []byte, bs int64) {
	t.Helper()
	name := diskName(key)
	sub := filepath.Join(dir, name[:2])
	if err := os.MkdirAll(sub, 0o777); err != nil {
		t.Fatal(err)
	}
	var crcs []uint32
	for off := int64(0); off < int64(len(data)); off += bs {
		crcs = append(crcs, needle.CRC32C(0, data[off:min(off+bs, int64(len(data)))]))
	}
	if err := os.WriteFile(filepath.Join(sub, name+".sum"), encodeSum(key, int64(len(data)), bs, crcs), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, name+".dat"), data, 0o666); err != nil {
		t.Fatal(err)
	}
}

// TestDiskRefusesDirItDoesNotControl: a disk-cache directory that another
// user owns or may write, or that is a symlink, would let that user plant
// needles (with tables that pass every check) that the mount then serves
// to every reader as the filer's bytes. The tier must refuse to open it.
func TestDiskRefusesDirItDoesNotControl(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	const bs = 64 << 10
	tests := []struct {
		name string
		// setup makes the tier's directory in base and returns its path.
		setup func(t *testing.T, base string) string
		// want is a part of the error; "" expects the tier to open.
		want string
	}{
		{"another user's", func(t *testing.T, base string) string {
			d := filepath.Join(base, "tier")
			mustMkdir(t, d, 0o777)
			mustChown(t, d, otherUID)
			return d
		}, "owned by uid 65534"},
		{"another user's, private", func(t *testing.T, base string) string {
			d := filepath.Join(base, "tier")
			mustMkdir(t, d, 0o700)
			mustChown(t, d, otherUID)
			return d
		}, "owned by uid 65534"},
		{"writable by others", func(t *testing.T, base string) string {
			d := filepath.Join(base, "tier")
			mustMkdir(t, d, 0o777)
			return d
		}, "writable by group or others"},
		{"writable by group", func(t *testing.T, base string) string {
			d := filepath.Join(base, "tier")
			mustMkdir(t, d, 0o770)
			return d
		}, "writable by group or others"},
		{"a symlink to another user's", func(t *testing.T, base string) string {
			target := filepath.Join(base, "theirs")
			mustMkdir(t, target, 0o777)
			mustChown(t, target, otherUID)
			d := filepath.Join(base, "tier")
			if err := os.Symlink(target, d); err != nil {
				t.Fatal(err)
			}
			return d
		}, "symlink"},
		{"a symlink to its own", func(t *testing.T, base string) string {
			target := filepath.Join(base, "mine")
			mustMkdir(t, target, 0o700)
			d := filepath.Join(base, "tier")
			if err := os.Symlink(target, d); err != nil {
				t.Fatal(err)
			}
			return d
		}, "symlink"},
		{"its own", func(t *testing.T, base string) string {
			d := filepath.Join(base, "tier")
			mustMkdir(t, d, 0o700)
			return d
		}, ""},
		{"new", func(t *testing.T, base string) string { return filepath.Join(base, "a", "tier") }, ""},
		// As a fresh tmpfs's root is: nothing in it to distrust, and
		// made private before it is listed.
		{"its own, empty, open to all", func(t *testing.T, base string) string {
			d := filepath.Join(base, "tier")
			mustMkdir(t, d, 0o777|os.ModeSticky)
			return d
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.setup(t, t.TempDir())
			f, chunks := newFake(3 * bs)
			ch := chunks[0]
			planted := bytes.Repeat([]byte("attacker"), 3*bs/8)
			if tc.want != "" {
				plantNeedle(t, dir, ch.Key(), planted, bs)
			}
			c, err := New(f, Options{Capacity: 16 << 20, BlockSize: bs, DiskDir: dir, DiskCapacity: 64 << 20})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				c.Close()
				st, err := os.Lstat(dir)
				if err != nil {
					t.Fatal(err)
				}
				if perm := st.Mode().Perm(); perm&0o077 != 0 {
					t.Errorf("made %s with mode %o, want no access for others", dir, perm)
				}
				return
			}
			if err == nil {
				// Show what the hole costs: the planted bytes read
				// as the needle's.
				defer c.Close()
				got := make([]byte, 16)
				n, rerr := c.ReadChunk(context.Background(), ch, 0, got)
				t.Fatalf("New opened a disk cache in %s; a read of the needle gave %q (%v), the filer's bytes start %q",
					dir, got[:n], rerr, f.chunks[ch.FileID][:16])
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("New: %v, want an error naming %s and saying %q", err, dir, tc.want)
			}
		})
	}
}

// TestDiskDoesNotFollowPlantedSymlinks: a needle's file, or the directory
// that holds it, that is a symlink (put there by whoever could once write
// the tier's directory, or by another mount of the same user) is not
// followed: the target's bytes are not served, and the link is removed,
// not its target.
func TestDiskDoesNotFollowPlantedSymlinks(t *testing.T) {
	const bs = 64 << 10
	// A small needle, so that a link's own size (its target's length,
	// which the scan at start records) can be made the needle's.
	const size = 1000
	tests := []struct {
		name string
		// link puts links in dir, the tier's, to the needle planted in
		// elsewhere.
		link func(t *testing.T, dir, elsewhere, name string)
	}{
		{"its files", func(t *testing.T, dir, elsewhere, name string) {
			mustMkdir(t, filepath.Join(dir, name[:2]), 0o700)
			for _, ext := range []string{".sum", ".dat"} {
				target := filepath.Join(elsewhere, name[:2], name+ext)
				// Slashes pad the target to the needle's length.
				target = strings.Repeat("/", size-len(target)) + target
				mustSymlink(t, target, filepath.Join(dir, name[:2], name+ext))
			}
		}},
		{"its directory", func(t *testing.T, dir, elsewhere, name string) {
			mustSymlink(t, filepath.Join(elsewhere, name[:2]), filepath.Join(dir, name[:2]))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f, chunks := newTierFake(size)
			ch := chunks[0]
			elsewhere := t.TempDir()
			planted := bytes.Repeat([]byte("attacker"), size/8)
			plantNeedle(t, elsewhere, ch.Key(), planted, bs)
			name := diskName(ch.Key())
			tc.link(t, dir, elsewhere, name)
			c, err := New(f, Options{Capacity: 16 << 20, BlockSize: bs, DiskDir: dir, DiskCapacity: 64 << 20})
			if err != nil {
				t.Fatal(err)
			}
			got := make([]byte, size)
			_, err = c.ReadChunk(context.Background(), ch, 0, got)
			c.Close() // waits for the needle's write
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, f.chunks[ch.FileID]) {
				t.Errorf("read %q..., want the filer's bytes %q...", got[:16], f.chunks[ch.FileID][:16])
			}
			if h := c.Stats().Disk.Hits; h != 0 {
				t.Errorf("disk hits %d: a symlinked needle was read", h)
			}
			for _, ext := range []string{".sum", ".dat"} {
				b, err := os.ReadFile(filepath.Join(elsewhere, name[:2], name+ext))
				if err != nil {
					t.Errorf("the link's target %s: %v", ext, err)
				} else if ext == ".dat" && !bytes.Equal(b, planted) {
					t.Errorf("the link's target %s was written through the link", ext)
				}
			}
		})
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, mode); err != nil {
		t.Fatal(err)
	}
	// MkdirAll's mode is cut by the umask.
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func mustChown(t *testing.T, p string, uid int) {
	t.Helper()
	if err := os.Lchown(p, uid, -1); err != nil {
		t.Fatal(err)
	}
}
