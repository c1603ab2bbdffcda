package integration

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// TestFilerOutage kills the filer for 5 s while readers go through files,
// a listing and attributes the mount has seen: every read must succeed,
// from the mount's caches (the kernel's pages are dropped before each
// read, so that reads reach the mount). Once the filer is back, what the
// mount has not seen must list within a couple of seconds: the connection
// comes back with a backoff of at most 2 s.
func TestFilerOutage(t *testing.T) {
	c := cluster.StartT(t, cluster.Options{})
	ctx := ctxT(t, 3*time.Minute)
	rng := rand.New(rand.NewPCG(5, 6))
	files := map[string][]byte{}
	for i := 0; i < 12; i++ {
		data := make([]byte, 100_000+rng.IntN(400_000))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		name := fmt.Sprintf("f%02d.bin", i)
		files[name] = data
		require.NoError(t, c.Put(ctx, "/outage/"+name, data))
	}
	m := startMount(t, c)
	dir := filepath.Join(m.Dir, "outage")
	names := listNames(t, dir)
	require.Len(t, names, len(files))
	readOne := func(name string) error {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			return err
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(f); err != nil {
			return err
		}
		if !bytes.Equal(buf.Bytes(), files[name]) {
			return fmt.Errorf("%s: %d bytes that differ from the %d written", name, buf.Len(), len(files[name]))
		}
		return nil
	}
	for _, n := range names {
		require.NoError(t, readOne(n)) // into the mount's cache
	}

	var (
		reads, outageReads atomic.Int64
		down               atomic.Bool
		errMu              sync.Mutex
		errs               []error
		stop               = make(chan struct{})
		wg                 sync.WaitGroup
	)
	fail := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := names[i%len(names)]
				err := readOne(name)
				if err == nil {
					var got []os.DirEntry
					if got, err = os.ReadDir(dir); err == nil && len(got) != len(names) {
						err = fmt.Errorf("listing of %d entries, want %d", len(got), len(names))
					}
				}
				if err == nil {
					_, err = os.Stat(filepath.Join(dir, name))
				}
				if err != nil {
					fail(fmt.Errorf("down=%v: %w", down.Load(), err))
					continue
				}
				reads.Add(1)
				if down.Load() {
					outageReads.Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	require.NoError(t, c.StopFiler(0))
	down.Store(true)
	time.Sleep(5 * time.Second)
	down.Store(false)
	require.NoError(t, c.StartFiler(ctx))
	restarted := time.Now()

	// What the mount has never seen needs the filer: a new directory.
	require.NoError(t, c.Put(ctx, "/after/new.txt", []byte("new")))
	var took time.Duration
	eventually(t, 30*time.Second, "ls of a new directory after the restart", func() bool {
		got, err := os.ReadDir(filepath.Join(m.Dir, "after"))
		took = time.Since(restarted)
		return err == nil && len(got) == 1
	})
	close(stop)
	wg.Wait()
	t.Logf("%d reads (each: a file with its pages dropped, the listing, a stat), %d of them while the filer was down; "+
		"ls of a new directory worked %v after the filer answered again", reads.Load(), outageReads.Load(), took.Round(time.Millisecond))
	for _, err := range errs[:min(len(errs), 10)] {
		t.Errorf("read: %v", err)
	}
	assert.Empty(t, errs, "reads that failed")
	assert.Positive(t, outageReads.Load(), "reads while the filer was down")
	assert.Less(t, took, 4*time.Second, "ls after the restart")

	// And the mount follows the filer again: a new file in a directory it
	// lists from its cache shows up.
	require.NoError(t, c.Put(ctx, "/outage/late.bin", []byte("late")))
	eventually(t, 10*time.Second, "a file created after the restart", func() bool {
		return slices.Contains(listNames(t, dir), "late.bin")
	})
}
