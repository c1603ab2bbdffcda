package integration

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weedfuse/weedfuse/integration/cluster"
)

// newNetT makes a cluster.Net of n namespaces, removed when the test ends
// (after the cluster started later has stopped: cleanups run last first).
func newNetT(t *testing.T, n int) *cluster.Net {
	t.Helper()
	nt, err := cluster.NewNet(n, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nt.Close(); err != nil {
			t.Errorf("remove net: %v", err)
		}
	})
	return nt
}

// TestVolumeMoveWhileReading moves a volume (weed shell volume.move) from
// one volume server to another, each in a network namespace of its own,
// while weedfuse reads a file with chunks on it, its pages dropped after
// each read: every read, during the move and after it, must return the
// file's bytes without an error. The mount's cached location of the volume
// goes stale when the source deletes its copy.
func TestVolumeMoveWhileReading(t *testing.T) {
	nt := newNetT(t, 2)
	c := cluster.StartT(t, cluster.Options{Net: nt, StopGrace: 500 * time.Millisecond})
	ctx := ctxT(t, 2*time.Minute)
	// Twice the mount's memory cache, so that reads reach the servers.
	const size = 32 << 20
	data := make([]byte, size)
	fillRandom(rand.New(rand.NewPCG(7, 8)), data)
	if err := c.PutOn(ctx, 0, "moved", "/move/a.bin", data); err != nil {
		t.Fatal(err)
	}
	vids, err := c.Volumes(ctx, "/move/a.bin")
	if err != nil {
		t.Fatal(err)
	}
	m := startMount(t, c, "-filer.path=/move", "-cacheCapacityMB=0", "-readerCacheSizeMB=16")
	path := filepath.Join(m.Dir, "a.bin")

	var reads, moved atomic.Int64
	var mu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 1<<20)
		for {
			select {
			case <-stop:
				return
			default:
			}
			off := rng.Int64N(size - int64(len(buf)))
			f, err := os.Open(path)
			if err == nil {
				_, err = f.ReadAt(buf, off)
				unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
				f.Close()
			}
			if err == nil && !bytes.Equal(buf, data[off:off+int64(len(buf))]) {
				err = fmt.Errorf("wrong bytes at %d", off)
			}
			reads.Add(1)
			if moved.Load() > 0 {
				moved.Add(1)
			}
			if err != nil {
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}
	})
	time.Sleep(500 * time.Millisecond)
	began := time.Now()
	err = c.MoveVolume(ctx, vids[0], 0, 1)
	t.Logf("volume.move of volume %d (of %v): %v in %v", vids[0], vids, err, time.Since(began).Round(time.Millisecond))
	moved.Store(1)
	if err == nil {
		// Reads after the move go to the new server only.
		time.Sleep(time.Second)
	}
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reads, %d after the move", reads.Load(), moved.Load()-1)
	if len(failures) > 0 {
		t.Errorf("%d of %d reads failed, first: %v", len(failures), reads.Load(), failures[0])
	}
	if moved.Load() < 3 {
		t.Errorf("only %d reads after the move", moved.Load()-1)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after the move: %v, equal %v", err, bytes.Equal(got, data))
	}
}
