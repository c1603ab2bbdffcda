package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/weedfuse/weedfuse/internal/filer"
)

// nobody is a user the tests give directories to, as a local attacker
// would create them before root mounts.
const nobody = 65534

// TestPrepareDiskCacheDir: the disk cache's directories, from -cacheDir
// down, are ones no other local user controls, or the mount refuses to
// start, naming the directory, its owner and mode. Otherwise a user who
// created /tmp/weedfuse (or the cluster's directory under it) before root
// mounted could plant needles, with tables that pass every check, that the
// mount serves to every reader as the filer's bytes.
func TestPrepareDiskCacheDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give directories to another user")
	}
	filers := []filer.Address{{HTTP: "127.0.0.1:8888", GRPC: "127.0.0.1:18888"}}
	hash := filepath.Base(diskCacheDir("/x", filers, 0))
	tests := []struct {
		name string
		// setup prepares base (a fresh directory, root's, 0755) and
		// returns the -cacheDir to give.
		setup func(t *testing.T, base string) string
		// want is a part of the error, naming what is wrong; "" wants
		// the directory made, at wantDir under base when that is set.
		want, wantDir string
	}{
		{name: "fresh, under a sticky /tmp", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "tmp"), 0o1777, 0)
			return filepath.Join(base, "tmp")
		}, wantDir: "tmp/weedfuse/" + hash},
		{name: "made missing", setup: func(t *testing.T, base string) string {
			return filepath.Join(base, "a", "b")
		}, wantDir: "a/b/weedfuse/" + hash},
		{name: "root's earlier cache stays where it was", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "tmp", "weedfuse", hash), 0o700, 0)
			os.Chmod(filepath.Join(base, "tmp", "weedfuse"), 0o755) // as an older mount may have left it
			return filepath.Join(base, "tmp")
		}, wantDir: "tmp/weedfuse/" + hash},
		{name: "weedfuse planted by another user", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "tmp"), 0o1777, 0)
			mkdir(t, filepath.Join(base, "tmp", "weedfuse"), 0o777, nobody)
			return filepath.Join(base, "tmp")
		}, want: "weedfuse is owned by uid 65534 (mode 0777)"},
		{name: "weedfuse planted private", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "tmp"), 0o1777, 0)
			mkdir(t, filepath.Join(base, "tmp", "weedfuse"), 0o700, nobody)
			return filepath.Join(base, "tmp")
		}, want: "weedfuse is owned by uid 65534"},
		{name: "weedfuse a symlink", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "tmp"), 0o1777, 0)
			mkdir(t, filepath.Join(base, "theirs"), 0o777, nobody)
			symlink(t, filepath.Join(base, "theirs"), filepath.Join(base, "tmp", "weedfuse"), nobody)
			return filepath.Join(base, "tmp")
		}, want: "weedfuse is a symlink"},
		{name: "weedfuse root's but writable by others", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "tmp", "weedfuse"), 0o777, 0)
			return filepath.Join(base, "tmp")
		}, want: "weedfuse is writable by group or others (mode 0777)"},
		{name: "the cluster's planted by another user", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "tmp", "weedfuse"), 0o700, 0)
			mkdir(t, filepath.Join(base, "tmp", "weedfuse", hash), 0o777, nobody)
			return filepath.Join(base, "tmp")
		}, want: hash + " is owned by uid 65534"},
		{name: "the cluster's a symlink", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "tmp", "weedfuse"), 0o700, 0)
			mkdir(t, filepath.Join(base, "mine"), 0o700, 0)
			symlink(t, filepath.Join(base, "mine"), filepath.Join(base, "tmp", "weedfuse", hash), 0)
			return filepath.Join(base, "tmp")
		}, want: hash + " is a symlink"},
		{name: "-cacheDir another user's", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "theirs"), 0o755, nobody)
			return filepath.Join(base, "theirs")
		}, want: "theirs is owned by uid 65534"},
		{name: "-cacheDir writable by others, not sticky", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "open"), 0o777, 0)
			return filepath.Join(base, "open")
		}, want: "open is writable by group or others (mode 0777)"},
		{name: "-cacheDir writable by group", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "group"), 0o775, 0)
			return filepath.Join(base, "group")
		}, want: "group is writable by group or others (mode 0775)"},
		{name: "-cacheDir under another user's", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "home"), 0o755, nobody)
			mkdir(t, filepath.Join(base, "home", "cache"), 0o755, 0)
			return filepath.Join(base, "home", "cache")
		}, want: "home is owned by uid 65534"},
		{name: "-cacheDir a symlink to another user's", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "tmp"), 0o1777, 0)
			mkdir(t, filepath.Join(base, "theirs"), 0o755, nobody)
			// root's link: where it leads is checked all the same.
			symlink(t, filepath.Join(base, "theirs"), filepath.Join(base, "tmp", "cache"), 0)
			return filepath.Join(base, "tmp", "cache")
		}, want: "theirs is owned by uid 65534"},
		{name: "-cacheDir another user's symlink to root's", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "tmp"), 0o1777, 0)
			mkdir(t, filepath.Join(base, "etc"), 0o755, 0)
			symlink(t, filepath.Join(base, "etc"), filepath.Join(base, "tmp", "cache"), nobody)
			return filepath.Join(base, "tmp", "cache")
		}, want: "cache is a symlink (to "},
		{name: "-cacheDir missing, under another user's symlink", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "tmp"), 0o1777, 0)
			mkdir(t, filepath.Join(base, "etc"), 0o755, 0)
			symlink(t, filepath.Join(base, "etc"), filepath.Join(base, "tmp", "cache"), nobody)
			t.Cleanup(func() {
				// Nothing made where the link leads.
				if _, err := os.Lstat(filepath.Join(base, "etc", "sub")); err == nil {
					t.Errorf("made %s through another user's link", filepath.Join(base, "etc", "sub"))
				}
			})
			return filepath.Join(base, "tmp", "cache", "sub")
		}, want: "cache is a symlink (to "},
		{name: "-cacheDir a symlink to root's", setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "ssd", "cache"), 0o755, 0)
			symlink(t, filepath.Join(base, "ssd", "cache"), filepath.Join(base, "cache"), 0)
			return filepath.Join(base, "cache")
		}, wantDir: "ssd/cache/weedfuse/" + hash},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			os.Chmod(base, 0o755)
			// t.TempDir's parent is root's and private: fine.
			cacheDir := tc.setup(t, base)
			got, err := prepareDiskCacheDir(cacheDir, filers)
			if tc.want != "" {
				if err == nil {
					t.Fatalf("prepareDiskCacheDir(%s) = %s, want an error saying %q", cacheDir, got, tc.want)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("prepareDiskCacheDir(%s): %v, want it to say %q", cacheDir, err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("prepareDiskCacheDir(%s): %v", cacheDir, err)
			}
			if want := filepath.Join(base, tc.wantDir); got != want {
				t.Errorf("prepareDiskCacheDir(%s) = %s, want %s", cacheDir, got, want)
			}
			for _, d := range []string{got, filepath.Dir(got)} {
				st, err := os.Lstat(d)
				if err != nil {
					t.Fatal(err)
				}
				if !st.IsDir() || st.Mode().Perm()&0o022 != 0 || st.Sys().(*syscall.Stat_t).Uid != 0 {
					t.Errorf("%s: mode %s, uid %d", d, st.Mode(), st.Sys().(*syscall.Stat_t).Uid)
				}
			}
		})
	}
}

// TestDiskCacheDirPerUser: root keeps the name its caches have always had;
// any other user gets one of their own, so that root's /tmp/weedfuse (or a
// planted one) is not in a user's way, nor the user's in root's.
func TestDiskCacheDirPerUser(t *testing.T) {
	filers := []filer.Address{{HTTP: "b:8888"}, {HTTP: "a:8888"}}
	tests := []struct {
		euid int
		want string
	}{
		// The hash is of the sorted filers, as before.
		{0, "/tmp/weedfuse/"},
		{1000, "/tmp/weedfuse-1000/"},
		{65534, "/tmp/weedfuse-65534/"},
	}
	for _, tc := range tests {
		got := diskCacheDir("/tmp", filers, tc.euid)
		if !strings.HasPrefix(got, tc.want) || len(got) != len(tc.want)+16 {
			t.Errorf("diskCacheDir(euid %d) = %s, want %s<16 hex digits>", tc.euid, got, tc.want)
		}
	}
	if a, b := diskCacheDir("/tmp", filers, 0), diskCacheDir("/tmp", []filer.Address{filers[1], filers[0]}, 0); a != b {
		t.Errorf("filers' order changes the directory: %s, %s", a, b)
	}
}

// mkdir makes dir (and its parents, root's) with mode, owned by uid.
func mkdir(t *testing.T, dir string, mode os.FileMode, uid int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// syscall.Chmod: os.Chmod takes the sticky bit only as os.ModeSticky.
	if err := syscall.Chmod(dir, uint32(mode)); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(dir, uid, -1); err != nil {
		t.Fatal(err)
	}
}

// symlink makes link point to target, owned by uid.
func symlink(t *testing.T, target, link string, uid int) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, uid, -1); err != nil {
		t.Fatal(err)
	}
}
