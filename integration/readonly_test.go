package integration

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

const mib = 1 << 20

// TestReadOnlyMount covers the first floor end to end: files at the chunk
// boundaries read byte-exact, random ranges equal the source, attributes
// equal the filer's, nested directories and a symlink resolve, and every
// write fails with EROFS and changes nothing on the filer.
func TestReadOnlyMount(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 5*time.Minute)
	rng := rand.New(rand.NewPCG(1, 2))
	files := map[string][]byte{}
	for name, size := range map[string]int{
		"empty": 0, "one": 1, "4m-1": 4*mib - 1, "4m": 4 * mib, "4m+1": 4*mib + 1,
		"big100m": 100 * mib, "a/b/c/deep.bin": 300_000, "a/sibling.dat": 5000,
	} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		files[name] = data
		require.NoError(t, c.Put(ctx, "/e2e/"+name, data), name)
	}
	require.NoError(t, c.Mkdir(ctx, "/e2e/emptydir"))
	require.NoError(t, c.Symlink(ctx, "/e2e/link", "a/b/c/deep.bin"))

	m := startMount(t, c, "-filer.path=/e2e")
	at := func(name string) string { return filepath.Join(m.Dir, name) }

	t.Run("sha256", func(t *testing.T) {
		for name, want := range files {
			got, err := os.ReadFile(at(name))
			require.NoError(t, err, name)
			if sha256.Sum256(got) != sha256.Sum256(want) {
				t.Errorf("%s: sha256 of %d bytes read through the mount differs from the %d uploaded", name, len(got), len(want))
			}
		}
	})

	t.Run("random ranges", func(t *testing.T) {
		names := slices.Sorted(func(yield func(string) bool) {
			for n := range files {
				if !yield(n) {
					return
				}
			}
		})
		handles := map[string]*os.File{}
		for _, n := range names {
			f, err := os.Open(at(n))
			require.NoError(t, err)
			defer f.Close()
			handles[n] = f
		}
		for i := 0; i < 1000; i++ {
			name := names[rng.IntN(len(names))]
			src := files[name]
			off := rng.Int64N(int64(len(src)) + 2)
			size := rng.IntN(2*mib) + 1
			if i%4 == 0 { // around a 4 MiB chunk boundary
				off = max(0, 4*mib-int64(rng.IntN(8192)))
			}
			buf := make([]byte, size)
			n, err := handles[name].ReadAt(buf, off)
			if err != nil && err != io.EOF {
				t.Fatalf("%s: ReadAt(%d, %d): %v", name, off, size, err)
			}
			var want []byte
			if off < int64(len(src)) {
				want = src[off:min(int64(len(src)), off+int64(size))]
			}
			if !bytes.Equal(buf[:n], want) {
				t.Fatalf("%s: ReadAt(%d, %d): got %d bytes that differ from the source's %d", name, off, size, n, len(want))
			}
		}
	})

	t.Run("attributes", func(t *testing.T) {
		for name := range files {
			st, err := os.Lstat(at(name))
			require.NoError(t, err)
			dir, base := filepath.Split("/e2e/" + name)
			e, err := c.Entry(ctx, filepath.Clean(dir), base)
			require.NoError(t, err)
			a := e.GetAttributes()
			if got, want := st.Size(), int64(len(files[name])); got != want {
				t.Errorf("%s: size %d, want %d", name, got, want)
			}
			if got, want := uint32(st.Mode().Perm()), a.GetFileMode()&0o777&^0o022; got != want {
				t.Errorf("%s: mode %o, want %o", name, got, want)
			}
			if got, want := st.ModTime().Unix(), a.GetMtime(); got != want {
				t.Errorf("%s: mtime %d, want %d", name, got, want)
			}
			if !st.Mode().IsRegular() {
				t.Errorf("%s: mode %v, want a regular file", name, st.Mode())
			}
		}
		st, err := os.Stat(at("emptydir"))
		require.NoError(t, err)
		if !st.IsDir() {
			t.Errorf("emptydir: mode %v, want a directory", st.Mode())
		}
	})

	t.Run("tree", func(t *testing.T) {
		got := map[string]bool{}
		err := filepath.Walk(m.Dir, func(p string, info os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(m.Dir, p)
			got[rel] = true
			return nil
		})
		require.NoError(t, err)
		for name := range files {
			if !got[name] {
				t.Errorf("walk did not find %s", name)
			}
		}
		for _, d := range []string{"a", "a/b", "a/b/c", "emptydir", "link"} {
			if !got[d] {
				t.Errorf("walk did not find %s", d)
			}
		}
		target, err := os.Readlink(at("link"))
		require.NoError(t, err)
		if target != "a/b/c/deep.bin" {
			t.Errorf("readlink: got %q, want %q", target, "a/b/c/deep.bin")
		}
		data, err := os.ReadFile(at("link"))
		require.NoError(t, err)
		if !bytes.Equal(data, files["a/b/c/deep.bin"]) {
			t.Errorf("reading through the symlink: got %d bytes that differ from the target's", len(data))
		}
		ents, err := os.ReadDir(at("emptydir"))
		require.NoError(t, err)
		if len(ents) != 0 {
			t.Errorf("emptydir lists %d entries, want 0", len(ents))
		}
		if _, err := os.Stat(at("nope")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat of a missing file: got %v, want ENOENT", err)
		}
	})

	t.Run("writes fail with EROFS", func(t *testing.T) {
		erofs := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, syscall.EROFS) {
				t.Errorf("%s: got %v, want EROFS", what, err)
			}
		}
		erofs("create", os.WriteFile(at("new.txt"), []byte("x"), 0o644))
		erofs("overwrite", os.WriteFile(at("one"), []byte("xx"), 0o644))
		_, err := os.OpenFile(at("one"), os.O_WRONLY, 0)
		erofs("open for writing", err)
		erofs("touch", os.Chtimes(at("one"), time.Now(), time.Now()))
		erofs("chmod", os.Chmod(at("one"), 0o777))
		erofs("rm", os.Remove(at("one")))
		erofs("mkdir", os.Mkdir(at("newdir"), 0o755))
		erofs("rename", os.Rename(at("one"), at("two")))
		erofs("symlink", os.Symlink("one", at("newlink")))
		for _, cmd := range [][]string{
			{"cp", "/etc/hostname", at("copied")}, {"touch", at("one")}, {"rm", "-f", at("one")}, {"mkdir", at("newdir")},
		} {
			out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "Read-only file system") {
				t.Errorf("%v: got %v %q, want a read-only file system error", cmd, err, out)
			}
		}
		// Nothing changed on the filer.
		for _, p := range []string{"new.txt", "copied", "newdir", "two", "newlink"} {
			if _, err := c.Entry(ctx, "/e2e", p); !errors.Is(err, cluster.ErrNotFound) {
				t.Errorf("filer has /e2e/%s after a failed write: %v", p, err)
			}
		}
		got, err := c.Get(ctx, "/e2e/one")
		require.NoError(t, err)
		if !bytes.Equal(got, files["one"]) {
			t.Errorf("/e2e/one changed on the filer: %q", got)
		}
	})
}

// TestLargeDirectory lists a directory of 10,000 entries through the mount
// and stats every one, as ls -l does.
func TestLargeDirectory(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 5*time.Minute)
	const n = 10_000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			err := c.PutInline(ctx, fmt.Sprintf("/big/f%05d", i), []byte(fmt.Sprintf("file %05d\n", i)))
			if err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create entry: %v", err)
	}

	m := startMount(t, c)
	dir := filepath.Join(m.Dir, "big")
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	if len(ents) != n {
		t.Fatalf("readdir: got %d entries, want %d", len(ents), n)
	}
	for i, e := range ents {
		if want := fmt.Sprintf("f%05d", i); e.Name() != want {
			t.Fatalf("entry %d: got %q, want %q", i, e.Name(), want)
		}
		info, err := e.Info()
		require.NoError(t, err)
		if info.Size() != 11 {
			t.Fatalf("%s: size %d, want 11", e.Name(), info.Size())
		}
	}
	out, err := exec.Command("ls", "-l", dir).Output()
	require.NoError(t, err)
	if lines := strings.Count(string(out), "\n"); lines != n+1 {
		t.Errorf("ls -l printed %d lines, want %d", lines, n+1)
	}
	for _, i := range []int{0, 4321, n - 1} {
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)))
		require.NoError(t, err)
		if want := fmt.Sprintf("file %05d\n", i); string(got) != want {
			t.Errorf("f%05d: got %q, want %q", i, got, want)
		}
	}
}
