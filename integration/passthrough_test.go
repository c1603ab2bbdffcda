package integration

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/weedfuse/weedfuse/integration/cluster"
	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// TestPassthrough: a file that is one chunk held whole in the disk cache,
// or one small chunk (fetched into it at the open), is opened with FUSE
// passthrough, so the kernel reads it with no READ to the mount; other
// files keep the mount's read path. A file replaced while open
// under passthrough is never opened onto the old bytes, and a cache file
// with a flipped byte is caught when opened and fetched again.
func TestPassthrough(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 5*time.Minute)
	files := map[string][]byte{
		"small.bin": randomData(21, 128<<10),
		"one.bin":   randomData(22, 3<<20+17), // one 4 MiB-max chunk
		"many.bin":  randomData(23, 10<<20+5), // three chunks: no passthrough
	}
	for name, b := range files {
		require.NoError(t, c.Put(ctx, "/pt/"+name, b))
		ageEntry(t, c, "/pt", name)
	}
	cacheDir := t.TempDir()
	addr := metricsAddr(t)
	args := []string{"-filer.path=/pt", "-cacheDir=" + cacheDir, "-metrics.address=" + addr}
	m := startMount(t, c, args...)
	dropCaches := func() {
		require.NoError(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0))
	}
	readAll := func(name string) {
		t.Helper()
		requireFile(t, filepath.Join(m.Dir, name), files[name])
	}
	reads := func() float64 { return scrape(t, addr)[`weedfuse_fuse_op_duration_seconds_count{op="read"}`] }

	// Cold, one chunk of 256 KiB or less: fetched into the disk tier at
	// its open, and passed through from the first read on.
	fills := func() float64 { return scrape(t, addr)["weedfuse_disk_fills_total"] }
	readsBefore, fillsBefore := reads(), fills()
	readAll("small.bin")
	require.Equal(t, readsBefore, reads(), "a small file's first open was not passed through")
	require.Equal(t, fillsBefore+1, fills(), "a small file's open did not fill it into the disk cache")
	for _, name := range []string{"one.bin", "many.bin"} {
		readAll(name) // cold: fetched, written to the disk tier
	}
	require.Positive(t, reads())
	dropCaches()

	before := reads()
	readAll("small.bin")
	readAll("one.bin")
	require.Equal(t, before, reads(), "a file held whole on disk was read through the mount")
	got := scrape(t, addr)
	require.Positive(t, got[`weedfuse_fuse_op_duration_seconds_count{op="open"}`])
	readAll("many.bin")
	require.Greater(t, reads(), before, "a file of several chunks has no backing file")

	t.Run("replaced while open", func(t *testing.T) {
		p := filepath.Join(m.Dir, "one.bin")
		old, err := os.Open(p)
		require.NoError(t, err)
		defer old.Close()
		buf := make([]byte, 4096)
		_, err = old.ReadAt(buf, 0)
		require.NoError(t, err)
		require.Equal(t, files["one.bin"][:4096], buf)
		st, err := os.Stat(p)
		require.NoError(t, err)

		prev, next := files["one.bin"], randomData(24, 3<<20+17) // same size: only the bytes tell
		require.NoError(t, c.Put(ctx, "/pt/one.bin", next))
		files["one.bin"] = next
		require.Eventually(t, func() bool {
			now, err := os.Stat(p)
			return err == nil && !now.ModTime().Equal(st.ModTime())
		}, 20*time.Second, 50*time.Millisecond, "the change never showed")
		// The kernel lets an inode with a passthrough open be opened
		// only through the same backing file: the old bytes, whole,
		// until the old open closes (README, "FUSE passthrough").
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		require.True(t, bytes.Equal(prev, got), "an open during another's passthrough read neither version whole")
		require.NoError(t, old.Close())
		require.Eventually(t, func() bool {
			b, err := os.ReadFile(p)
			return err == nil && bytes.Equal(b, next)
		}, 10*time.Second, 50*time.Millisecond, "the new bytes never showed after the old open closed")
		// The new version, once unchanged for a while, is passed through.
		ageEntry(t, c, "/pt", "one.bin")
		require.Eventually(t, func() bool {
			now, err := os.Stat(p)
			return err == nil && now.ModTime().Before(time.Now().Add(-time.Hour/2))
		}, 20*time.Second, 50*time.Millisecond, "the older mtime never showed")
		readAll("one.bin")
		dropCaches()
		before := reads()
		readAll("one.bin")
		require.Equal(t, before, reads(), "the new bytes were not passed through")
	})

	t.Run("concurrent opens of both modes", func(t *testing.T) {
		// A cold file is opened cached and lands on disk while open; the
		// opens that follow it must stay cached while any cached one
		// lasts, and passthrough ones after: a mix fails with EIO.
		want := randomData(25, 2<<20+3)
		require.NoError(t, c.Put(ctx, "/pt/mix.bin", want))
		ageEntry(t, c, "/pt", "mix.bin")
		require.Eventually(t, func() bool {
			st, err := os.Stat(filepath.Join(m.Dir, "mix.bin"))
			return err == nil && st.ModTime().Before(time.Now().Add(-time.Hour/2))
		}, 20*time.Second, 50*time.Millisecond)
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					got, err := os.ReadFile(filepath.Join(m.Dir, "mix.bin"))
					if err == nil && !bytes.Equal(want, got) {
						err = errors.New("wrong bytes")
					}
					if err != nil {
						errs <- err
						return
					}
					if i == 10 && g == 0 {
						dropCaches()
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})

	t.Run("flipped byte while mounted", func(t *testing.T) {
		// The mount remembers that a cache file passed its check (or was
		// written by it) and does not read it again at the next open,
		// unless it changed: a write in place, of the same length, must
		// still be caught.
		readAll("small.bin")
		dropCaches()
		before := reads()
		readAll("small.bin")
		require.Equal(t, before, reads(), "small.bin was not passed through")
		corrupt := scrape(t, addr)["weedfuse_disk_corrupt_total"]
		var flipped int
		filepath.WalkDir(cacheDir, func(p string, de fs.DirEntry, err error) error {
			if err != nil || !strings.HasSuffix(p, ".dat") {
				return nil
			}
			if st, err := os.Stat(p); err == nil && st.Size() == int64(len(files["small.bin"])) {
				f, err := os.OpenFile(p, os.O_RDWR, 0)
				require.NoError(t, err)
				_, err = f.WriteAt([]byte{files["small.bin"][5000] ^ 0x10}, 5000)
				require.NoError(t, err)
				require.NoError(t, f.Close())
				flipped++
			}
			return nil
		})
		require.Equal(t, 1, flipped)
		dropCaches()
		readAll("small.bin")
		require.Equal(t, corrupt+1, scrape(t, addr)["weedfuse_disk_corrupt_total"])
		require.Greater(t, reads(), before, "the corrupt file was passed through")
	})

	t.Run("flipped byte caught at open", func(t *testing.T) {
		require.NoError(t, m.Stop())
		var dats []string
		filepath.WalkDir(cacheDir, func(p string, de fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, ".dat") {
				dats = append(dats, p)
			}
			return nil
		})
		require.NotEmpty(t, dats)
		for _, p := range dats {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			require.NoError(t, err)
			b := []byte{0}
			_, err = f.ReadAt(b, 1000)
			require.NoError(t, err)
			b[0] ^= 0x01
			_, err = f.WriteAt(b, 1000)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}
		dropCaches()
		m = startMount(t, c, args...)
		for name := range files {
			f, err := os.Open(filepath.Join(m.Dir, name))
			require.NoError(t, err)
			got, err := io.ReadAll(f)
			f.Close()
			require.NoError(t, err)
			require.True(t, bytes.Equal(files[name], got), "%s: wrong bytes", name)
		}
		require.Positive(t, scrape(t, addr)["weedfuse_disk_corrupt_total"])
	})
}

// ageEntry sets the mtime of a filer entry an hour back, as a file written
// long ago has it: files changed more recently are not passed through.
func ageEntry(t *testing.T, c *cluster.Cluster, dir, name string) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	resp, err := c.FilerClient().LookupDirectoryEntry(ctx, &filerpb.LookupDirectoryEntryRequest{Directory: dir, Name: name})
	require.NoError(t, err)
	e := resp.GetEntry()
	e.Attributes.Mtime = time.Now().Add(-time.Hour).Unix()
	cr, err := c.FilerClient().CreateEntry(ctx, &filerpb.CreateEntryRequest{Directory: dir, Entry: e})
	require.NoError(t, err)
	require.Empty(t, cr.GetError())
}
