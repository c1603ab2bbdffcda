package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// compatEntry creates or replaces the inline file dir/name over gRPC, with
// the given Go file mode, owners and hard link id (none if nil): the
// filer's CreateEntry updates an entry that exists.
func compatEntry(ctx context.Context, c *cluster.Cluster, dir, name string, mode os.FileMode, uid, gid uint32, linkID []byte, content []byte, mtime int64) error {
	e := &filerpb.Entry{
		Name:    name,
		Content: content,
		Attributes: &filerpb.FuseAttributes{
			FileMode: uint32(mode), Uid: uid, Gid: gid,
			FileSize: uint64(len(content)), Mtime: mtime, Crtime: mtime,
		},
	}
	if linkID != nil {
		e.HardLinkId, e.HardLinkCounter = linkID, 2
	}
	resp, err := c.FilerClient().CreateEntry(ctx, &filerpb.CreateEntryRequest{Directory: dir, Entry: e})
	if err == nil && resp.Error != "" {
		err = errors.New(resp.Error)
	}
	return err
}

// filerNames lists dir on the filer itself.
func filerNames(t *testing.T, ctx context.Context, c *cluster.Cluster, dir string) []string {
	t.Helper()
	stream, err := c.FilerClient().ListEntries(ctx, &filerpb.ListEntriesRequest{Directory: dir, Limit: 10000})
	require.NoError(t, err)
	var names []string
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return names
		}
		require.NoError(t, err)
		names = append(names, resp.GetEntry().GetName())
	}
}

// listNames lists a directory through a mount, sorted, without "." and "..".
func listNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err, dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// rawDirent is one entry of getdents64, "." and ".." included (os.ReadDir
// and syscall.ParseDirent leave those out).
type rawDirent struct {
	ino  uint64
	name string
}

func getdents(t *testing.T, dir string) []rawDirent {
	t.Helper()
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	require.NoError(t, err)
	defer syscall.Close(fd)
	var out []rawDirent
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Getdents(fd, buf)
		require.NoError(t, err)
		if n == 0 {
			return out
		}
		for b := buf[:n]; len(b) > 0; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			reclen := binary.LittleEndian.Uint16(b[16:18])
			name := b[19:reclen]
			out = append(out, rawDirent{
				ino:  binary.LittleEndian.Uint64(b[0:8]),
				name: string(name[:bytes.IndexByte(name, 0)]),
			})
			b = b[reclen:]
		}
	}
}

func lstat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Lstat(p, &st), p)
	return &st
}

// mountEntry is a FUSE mount's line of /proc/self/mounts: source and type.
func mountEntry(t *testing.T, dir string) (source, fstype string) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mounts")
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == dir {
			return f[0], f[2]
		}
	}
	t.Fatalf("%s is not in /proc/self/mounts", dir)
	return "", ""
}

// TestWeedMountCompat reads one cluster through weedfuse and through the
// stock weed mount, with the same flags, and checks that weedfuse shows
// what weed mount shows: the filer's system entries hidden, owners mapped
// by -map.uid/-map.gid, modes as the filer stores them, the root's
// attributes, "." and "..", ENAMETOOLONG, the file system type, names the
// filer should not hold left out, distinct inode numbers, and hard links
// as one inode.
func TestWeedMountCompat(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 4*time.Minute)
	now := time.Now().Unix()

	const secret = `{"identities":[{"name":"admin","credentials":[{"accessKey":"AK","secretKey":"SECRET"}]}]}`
	require.NoError(t, c.Put(ctx, "/etc/iam/identities/admin.json", []byte(secret)))
	require.NoError(t, c.Put(ctx, "/data/f.bin", bytes.Repeat([]byte("data"), 1000)))
	modes := map[string]os.FileMode{
		"m0666": 0o666, "m0777": 0o777, "m0600": 0o600, "m0640": 0o640,
		// Special bits as weed mount's chmod stores them (the syscall's),
		// and as Go's os.FileMode has them, which weed mount does not show.
		"suid": 0o4755, "sgid": 0o2750, "sticky": 0o1777,
		"go-suid": os.ModeSetuid | 0o755, "go-sticky": os.ModeSticky | 0o644,
	}
	for name, mode := range modes {
		require.NoError(t, compatEntry(ctx, c, "/compat/modes", name, mode, 0, 0, nil, []byte(name), now))
	}
	require.NoError(t, compatEntry(ctx, c, "/compat/owners", "root", 0o644, 0, 0, nil, []byte("r"), now))
	require.NoError(t, compatEntry(ctx, c, "/compat/owners", "other", 0o644, 7, 8, nil, []byte("o"), now))
	linkID := []byte("weedfuse-link-01")
	require.NoError(t, compatEntry(ctx, c, "/compat/links", "a", 0o644, 0, 0, linkID, []byte("v1"), now))
	require.NoError(t, compatEntry(ctx, c, "/compat/links2", "b", 0o644, 0, 0, linkID, []byte("v1"), now))
	for i := 0; i < 300; i++ {
		require.NoError(t, c.PutInline(ctx, "/compat/many/f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Unix(int64(i), 0).UTC().Format("150405"), []byte("x")))
	}
	// Names a filer should not hold: whatever CreateEntry accepts of them
	// must not be served.
	for _, name := range []string{"ok", "a/b", "..", ".", "nul\x00byte", "dot.ok"} {
		err := compatEntry(ctx, c, "/compat/bad", name, 0o644, 0, 0, nil, []byte("bad"), now)
		t.Logf("CreateEntry /compat/bad %q: %v", name, err)
	}

	// The mount points are owned by someone, as weed mount's root shows.
	base := t.TempDir()
	ourDir, weedDir := filepath.Join(base, "weedfuse"), filepath.Join(base, "weed")
	for _, d := range []string{ourDir, weedDir} {
		require.NoError(t, os.Mkdir(d, 0o700))
		require.NoError(t, os.Chown(d, 4321, 4322))
	}
	mapFlags := []string{"-map.uid=1000:0,1001:7", "-map.gid=2000:0"}
	wm, err := c.StartWeedMount(ctx, weedDir, mapFlags...)
	require.NoError(t, err)
	t.Cleanup(func() { wm.Unmount() })
	before := time.Now()
	m := startMountAt(t, c, ourDir, mapFlags...)
	after := time.Now()
	ours := func(p string) string { return filepath.Join(m.Dir, p) }
	weeds := func(p string) string { return filepath.Join(wm.Dir(), p) }

	t.Run("system entries hidden", func(t *testing.T) {
		// Before weed mount has listed its root, a look-up goes to the
		// filer; weedfuse hides the entries from look-ups always.
		_, werr := os.ReadFile(weeds("etc/iam/identities/admin.json"))
		t.Logf("weed mount, before listing its root, reading etc/iam/identities/admin.json: %v", werr)
		onFiler := filerNames(t, ctx, c, "/")
		require.Contains(t, onFiler, "etc")
		got := listNames(t, m.Dir)
		assert.Equal(t, listNames(t, wm.Dir()), got, "root listing: weedfuse against weed mount")
		assert.NotContains(t, got, "etc")
		assert.NotContains(t, got, "topics")
		assert.Contains(t, got, "data")
		for _, p := range []string{"etc", "topics", "etc/iam/identities/admin.json"} {
			_, err := os.ReadFile(ours(p))
			assert.ErrorIs(t, err, syscall.ENOENT, p)
		}
		// Under -includeSystemEntries they are there, and so are the
		// secrets; a mount of /etc itself shows its contents, as weed
		// mount's does.
		all := startMount(t, c, "-includeSystemEntries")
		names := listNames(t, all.Dir)
		assert.Contains(t, names, "etc")
		if slices.Contains(onFiler, "topics") {
			assert.Contains(t, names, "topics")
		}
		got2, err := os.ReadFile(filepath.Join(all.Dir, "etc/iam/identities/admin.json"))
		require.NoError(t, err)
		assert.Equal(t, secret, string(got2))
		etc := startMount(t, c, "-filer.path=/etc")
		assert.Equal(t, []string{"iam"}, listNames(t, etc.Dir))
	})

	t.Run("owners mapped", func(t *testing.T) {
		for name, want := range map[string][2]uint32{"root": {1000, 2000}, "other": {1001, 8}} {
			st := lstat(t, ours("compat/owners/"+name))
			ws := lstat(t, weeds("compat/owners/"+name))
			assert.Equal(t, want, [2]uint32{st.Uid, st.Gid}, name)
			assert.Equal(t, [2]uint32{ws.Uid, ws.Gid}, [2]uint32{st.Uid, st.Gid}, "%s: weedfuse against weed mount", name)
		}
	})

	t.Run("modes as stored", func(t *testing.T) {
		for name, mode := range modes {
			want := uint32(mode) & 0o7777
			st := lstat(t, ours("compat/modes/"+name))
			ws := lstat(t, weeds("compat/modes/"+name))
			assert.Equal(t, syscall.S_IFREG|want, st.Mode, "%s: mode %o", name, st.Mode)
			assert.Equal(t, ws.Mode, st.Mode, "%s: weedfuse %o, weed mount %o", name, st.Mode, ws.Mode)
		}
		// -umask shapes the root's mode (weed mount's MountMode) and no
		// entry's.
		um := startMount(t, c, "-umask=077")
		assert.Equal(t, uint32(syscall.S_IFDIR|0o700), lstat(t, um.Dir).Mode, "the root under -umask=077")
		assert.Equal(t, uint32(syscall.S_IFREG|0o666), lstat(t, filepath.Join(um.Dir, "compat/modes/m0666")).Mode)
	})

	t.Run("root", func(t *testing.T) {
		st, ws := lstat(t, m.Dir), lstat(t, wm.Dir())
		assert.Equal(t, uint64(1), st.Ino)
		assert.Equal(t, ws.Ino, st.Ino, "weed mount's root inode")
		assert.Equal(t, uint32(syscall.S_IFDIR|0o755), st.Mode, "0777 less the default umask")
		assert.Equal(t, ws.Mode, st.Mode)
		assert.Equal(t, [2]uint32{4321, 4322}, [2]uint32{st.Uid, st.Gid}, "the mount point's owner")
		assert.Equal(t, [2]uint32{ws.Uid, ws.Gid}, [2]uint32{st.Uid, st.Gid})
		assert.GreaterOrEqual(t, st.Mtim.Sec, before.Unix(), "mtime is the mount time")
		assert.LessOrEqual(t, st.Mtim.Sec, after.Unix())

		for _, dir := range []string{m.Dir, ours("compat/modes")} {
			ents := getdents(t, dir)
			require.GreaterOrEqual(t, len(ents), 2)
			assert.Equal(t, []string{".", ".."}, []string{ents[0].name, ents[1].name}, dir)
			assert.Equal(t, lstat(t, dir).Ino, ents[0].ino, `"." is the directory itself`)
		}
		wents := getdents(t, wm.Dir())
		require.GreaterOrEqual(t, len(wents), 2)
		assert.Equal(t, []string{".", ".."}, []string{wents[0].name, wents[1].name}, "weed mount lists them too")

		long := strings.Repeat("n", 300)
		for _, p := range []string{ours(long), ours("compat/" + long), weeds("compat/" + long)} {
			_, err := os.Lstat(p)
			assert.ErrorIs(t, err, syscall.ENAMETOOLONG, p)
		}

		src, typ := mountEntry(t, m.Dir)
		wsrc, wtyp := mountEntry(t, wm.Dir())
		assert.Equal(t, "fuse.seaweedfs", typ)
		assert.Equal(t, wtyp, typ)
		assert.Equal(t, wsrc, src, "the mount's source")
	})

	t.Run("names validated", func(t *testing.T) {
		onFiler := filerNames(t, ctx, c, "/compat/bad")
		var want []string
		for _, n := range onFiler {
			if n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\x00") {
				want = append(want, n)
			}
		}
		require.Less(t, len(want), len(onFiler), "the filer holds names it should not: %q", onFiler)
		slices.Sort(want)
		got := listNames(t, ours("compat/bad"))
		assert.Equal(t, want, got)
		for _, n := range got {
			lstat(t, ours("compat/bad/"+n))
		}
		t.Logf("the filer holds %q; weedfuse lists %q; weed mount %q", onFiler, got, listNames(t, weeds("compat/bad")))

		// A metadata event for an entry ".." of /compat/evil must not
		// land on /compat, which path.Join would make of it.
		before := lstat(t, ours("compat"))
		compatNames := listNames(t, ours("compat"))
		resp, err := c.FilerClient().CreateEntry(ctx, &filerpb.CreateEntryRequest{Directory: "/compat/evil", Entry: &filerpb.Entry{
			Name: "..", IsDirectory: true,
			Attributes: &filerpb.FuseAttributes{FileMode: uint32(os.ModeDir | 0o700), Mtime: now - 1000, Uid: 99},
		}})
		require.NoError(t, err)
		require.Empty(t, resp.Error)
		require.NoError(t, c.PutInline(ctx, "/compat/evil/sentinel", []byte("s")))
		eventually(t, 20*time.Second, "the event after it", func() bool {
			_, err := os.Lstat(ours("compat/evil/sentinel"))
			return err == nil
		})
		after := lstat(t, ours("compat"))
		assert.Equal(t, before.Mode, after.Mode, "/compat's mode")
		assert.Equal(t, before.Uid, after.Uid, "/compat's owner")
		assert.Equal(t, before.Mtim, after.Mtim, "/compat's mtime")
		wantNames := append(compatNames, "evil")
		slices.Sort(wantNames)
		assert.Equal(t, wantNames, listNames(t, ours("compat")))
	})

	t.Run("inode numbers", func(t *testing.T) {
		dir := ours("compat/many")
		seen := map[uint64]string{}
		for _, e := range getdents(t, dir)[2:] {
			if other, dup := seen[e.ino]; dup {
				t.Fatalf("%s and %s share inode %d", e.name, other, e.ino)
			}
			seen[e.ino] = e.name
			assert.Equal(t, e.ino, lstat(t, filepath.Join(dir, e.name)).Ino, "%s: readdir and stat agree", e.name)
		}
		assert.Len(t, seen, 300)
	})

	t.Run("hard links", func(t *testing.T) {
		a, b := ours("compat/links/a"), ours("compat/links2/b")
		sa, sb := lstat(t, a), lstat(t, b)
		assert.Equal(t, sa.Ino, sb.Ino, "one inode for both names")
		assert.Equal(t, uint64(2), sb.Nlink)
		wa, wb := lstat(t, weeds("compat/links/a")), lstat(t, weeds("compat/links2/b"))
		assert.Equal(t, wa.Ino, wb.Ino, "weed mount too")
		got, err := os.ReadFile(b)
		require.NoError(t, err)
		assert.Equal(t, "v1", string(got))

		// A change made through one name shows under the other, from the
		// metadata subscription.
		require.NoError(t, compatEntry(ctx, c, "/compat/links", "a", 0o600, 0, 0, linkID, []byte("v2, longer"), now+100))
		eventually(t, 20*time.Second, "the change through a under b", func() bool {
			st := lstat(t, b)
			got, err := os.ReadFile(b)
			return err == nil && string(got) == "v2, longer" && st.Mode == syscall.S_IFREG|0o600 && st.Mtim.Sec == now+100
		})
		assert.Equal(t, lstat(t, a).Ino, lstat(t, b).Ino)

		// The name the node was last found by (b) goes; the file lives on
		// under the other, and its node now asks the filer under that one.
		require.NoError(t, c.Delete(ctx, "/compat/links2/b"))
		eventually(t, 20*time.Second, "b deleted", func() bool {
			_, err := os.Lstat(b)
			return errors.Is(err, syscall.ENOENT)
		})
		f, err := os.Open(a)
		require.NoError(t, err)
		defer f.Close()
		// Drop the pages, so that the read reaches the mount.
		require.NoError(t, unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED))
		got, err = io.ReadAll(f)
		require.NoError(t, err)
		assert.Equal(t, "v2, longer", string(got))
	})
}
