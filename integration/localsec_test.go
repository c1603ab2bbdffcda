package integration

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/integration/mount"
)

// TestLocalUserCannotPlantDiskCache: a local user who creates the disk
// cache's directory under a shared -cacheDir (the default, /tmp) before
// root mounts would own where root's mount reads cached needles from, and
// could plant bytes, with tables to match, that every reader of the mount
// would get as the filer's. The mount refuses to start, naming the
// directory and its owner; with the directory its own, it starts, caches
// where it always did, and serves the filer's bytes.
func TestLocalUserCannotPlantDiskCache(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 5*time.Minute)
	want := randomData(21, 3<<20+77)
	if err := c.Put(ctx, "/localsec/f.bin", want); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	tests := []struct {
		name string
		// plant prepares shared, a sticky world-writable directory as
		// /tmp is, as the other user would.
		plant func(t *testing.T, shared string)
		want  string // in the mount's error; "" wants it to mount
	}{
		{"weedfuse is another user's", func(t *testing.T, shared string) {
			mkdirAs(t, filepath.Join(shared, "weedfuse"), 0o777, nobody)
		}, "weedfuse is owned by uid 65534 (mode 0777)"},
		{"weedfuse is a symlink to another user's", func(t *testing.T, shared string) {
			theirs := filepath.Join(shared, "theirs")
			mkdirAs(t, theirs, 0o777, nobody)
			if err := os.Symlink(theirs, filepath.Join(shared, "weedfuse")); err != nil {
				t.Fatal(err)
			}
			os.Lchown(filepath.Join(shared, "weedfuse"), nobody, -1)
		}, "weedfuse is a symlink"},
		{"the cluster's directory is another user's", func(t *testing.T, shared string) {
			mkdirAs(t, filepath.Join(shared, "weedfuse"), 0o700, 0)
			// The name the mount will use: the only directory in
			// weedfuse after a first mount, made here by hand.
			m := startMount(t, c, "-filer.path=/localsec", "-cacheDir="+shared)
			m.Stop()
			ents, err := os.ReadDir(filepath.Join(shared, "weedfuse"))
			if err != nil || len(ents) != 1 {
				t.Fatalf("after a first mount, %s holds %v (%v), want one directory", filepath.Join(shared, "weedfuse"), ents, err)
			}
			hashed := filepath.Join(shared, "weedfuse", ents[0].Name())
			os.RemoveAll(hashed)
			mkdirAs(t, hashed, 0o777, nobody)
		}, "is owned by uid 65534 (mode 0777)"},
		{"nothing planted", func(t *testing.T, shared string) {}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			shared := t.TempDir()
			// syscall.Chmod: os.Chmod takes the sticky bit only as
			// os.ModeSticky.
			if err := syscall.Chmod(shared, 0o1777); err != nil {
				t.Fatal(err)
			}
			tc.plant(t, shared)
			dir := filepath.Join(t.TempDir(), "mnt")
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			m, err := mount.Start(sctx, weedfuseBin, dir, 20*time.Second, "-filer="+c.FilerMountSpec(), "-filer.path=/localsec", "-cacheDir="+shared)
			if tc.want != "" {
				if err == nil {
					got, rerr := os.ReadFile(filepath.Join(dir, "f.bin"))
					m.Stop()
					t.Fatalf("mounted with a disk cache another user controls (read: %d bytes, %v)", len(got), rerr)
				}
				if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), shared) {
					t.Fatalf("want the mount's error to name %s and say %q, got: %v", shared, tc.want, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dir, "f.bin"))
			if serr := m.Stop(); serr != nil {
				t.Errorf("stop: %v", serr)
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes (%v), want the filer's %d", len(got), err, len(want))
			}
			// Root's cache stays at <cacheDir>/weedfuse/<cluster>, as it
			// always was, and private.
			var dats int
			filepath.WalkDir(filepath.Join(shared, "weedfuse"), func(p string, de fs.DirEntry, err error) error {
				if err == nil && strings.HasSuffix(p, ".dat") {
					dats++
				}
				if err == nil && de.IsDir() {
					if info, err := de.Info(); err == nil && info.Mode().Perm()&0o022 != 0 {
						t.Errorf("%s: mode %s", p, info.Mode())
					}
				}
				return nil
			})
			if dats == 0 {
				t.Errorf("no needle cached under %s", filepath.Join(shared, "weedfuse"))
			}
		})
	}
}

// mkdirAs makes dir with mode, owned by uid, as that user would.
func mkdirAs(t *testing.T, dir string, mode uint32, uid int) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(dir, uid, -1); err != nil {
		t.Fatal(err)
	}
}
