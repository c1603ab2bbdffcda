package pagecache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/weedfuse/weedfuse/internal/needle"
	"golang.org/x/sys/unix"
)

// tierFake is a fetcher that tees whole needles and reads ranges, as the
// HTTP reader does, counting each kind, and can corrupt its ranged answers
// (a fault no real volume server shows on demand).
type tierFake struct {
	*fakeFetcher
	wholes, ranges atomic.Int64
	flipRanges     atomic.Bool
	// wholeGate, when not nil, holds each fetch with a sink halfway
	// through its needle until it is closed.
	wholeGate chan struct{}
}

func newTierFake(sizes ...int) (*tierFake, []needle.Chunk) {
	f, chunks := newFake(sizes...)
	return &tierFake{fakeFetcher: f}, chunks
}

// Fetch reads ranges and tees; a request with no sink is fakeFetcher's.
func (f *tierFake) Fetch(ctx context.Context, r needle.Request) (int, error) {
	src := f.chunks[r.Chunk.FileID]
	switch {
	case r.Range:
		f.ranges.Add(1)
		n := needle.Scatter(r.Dsts, src[r.Off:])
		if f.flipRanges.Load() && n > 0 {
			r.Dsts[0][0] ^= 0x40
		}
		return n, nil
	case r.Whole != nil:
		f.wholes.Add(1)
		if f.fail.Load() {
			return 0, errors.New("injected failure")
		}
		r.Whole.Reset()
		r.Whole.Write(src[:len(src)/2]) // in two pieces, as a stream comes
		if f.wholeGate != nil {
			select {
			case <-f.wholeGate:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		r.Whole.Write(src[len(src)/2:])
		return needle.Scatter(r.Dsts, src[r.Off:]), nil
	}
	return f.fakeFetcher.Fetch(ctx, r)
}

func diskOpts(dir string, memory, diskCap int64) Options {
	return Options{Capacity: memory, BlockSize: 64 << 10, DiskDir: dir, DiskCapacity: diskCap}
}

func readAll(t *testing.T, c *Cache, ch needle.Chunk, access Access) []byte {
	t.Helper()
	dst := make([]byte, ch.Size)
	n, err := c.ReadChunkAt(context.Background(), ch, 0, dst, access)
	require.NoError(t, err)
	require.Equal(t, int(ch.Size), n)
	return dst
}

// TestTiersMatchModel reads random ranges, randomly or in sequence, from
// chunks of 1 to 64 MiB through a memory tier far smaller than the data
// and a disk tier that holds part of it, and compares every byte.
func TestTiersMatchModel(t *testing.T) {
	f, chunks := newTierFake(1<<20, 4<<20, 16<<20+5, 64<<20, 300_000)
	c := newCache(t, f, diskOpts(t.TempDir(), 8<<20, 48<<20))
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 1500; i++ {
		ch := chunks[rng.IntN(len(chunks))]
		src := f.chunks[ch.FileID]
		off := rng.Int64N(ch.Size)
		dst := make([]byte, rng.IntN(300_000)+1)
		access := Access(rng.IntN(3)) // Sequential, Random or Buffered
		n, err := c.ReadChunkAt(context.Background(), ch, off, dst, access)
		require.NoError(t, err)
		want := src[off:min(off+int64(len(dst)), ch.Size)]
		require.Equal(t, len(want), n)
		if !bytes.Equal(dst[:n], want) {
			t.Fatalf("read %d of %s at %d (%v): wrong bytes", i, ch.FileID, off, access)
		}
	}
	s := c.Stats()
	t.Logf("wholes %d ranges %d; disk %+v; unverified %d verified-range %d", f.wholes.Load(), f.ranges.Load(), s.Disk, s.UnverifiedBytes, s.VerifiedRangeBytes)
	require.NotZero(t, s.Disk.Hits, "the disk tier served nothing")
	require.NotZero(t, f.ranges.Load(), "no random read fetched a range")
	require.LessOrEqual(t, s.Disk.Used, int64(48<<20))
}

// TestRandomMissFetchesOneBlock is the cliff: a 4 KiB random read of a 4
// MiB needle in no tier, with no table to check it, costs one ranged GET of
// the pages it touches (two here, since it straddles a page), counted as
// unverified, and no whole needle while the disk tier has no room.
func TestRandomMissFetchesOneBlock(t *testing.T) {
	f, chunks := newTierFake(4 << 20)
	c := newCache(t, f, diskOpts(t.TempDir(), 4<<20, 1<<20)) // no room for a fill
	dst := make([]byte, 4096)
	_, err := c.ReadChunkAt(context.Background(), chunks[0], 1<<20+100, dst, Random)
	require.NoError(t, err)
	require.Equal(t, f.chunks[chunks[0].FileID][1<<20+100:1<<20+100+4096], dst)
	require.EqualValues(t, 1, f.ranges.Load())
	require.EqualValues(t, 0, f.wholes.Load())
	require.EqualValues(t, 8192, c.Stats().UnverifiedBytes)

	// Strict: the whole needle, verified, every time.
	f2, chunks2 := newTierFake(4 << 20)
	o := diskOpts(t.TempDir(), 4<<20, 1<<20)
	o.Strict = true
	c2 := newCache(t, f2, o)
	_, err = c2.ReadChunkAt(context.Background(), chunks2[0], 1<<20+100, dst, Random)
	require.NoError(t, err)
	require.EqualValues(t, 0, f2.ranges.Load())
	require.EqualValues(t, 1, f2.wholes.Load()+f2.calls.Load())
	require.Zero(t, c2.Stats().UnverifiedBytes)
}

// TestRandomMissFillsDiskInBackground: while the disk tier has room, the
// whole needle follows a ranged read, and later reads come from disk.
func TestRandomMissFillsDiskInBackground(t *testing.T) {
	f, chunks := newTierFake(4 << 20)
	c := newCache(t, f, diskOpts(t.TempDir(), 2<<20, 64<<20))
	dst := make([]byte, 4096)
	_, err := c.ReadChunkAt(context.Background(), chunks[0], 3<<20, dst, Random)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return c.Stats().Fills == 1 }, 5*time.Second, 10*time.Millisecond)
	got := readAll(t, c, chunks[0], Random)
	require.Equal(t, f.chunks[chunks[0].FileID], got)
	require.EqualValues(t, 1, f.wholes.Load(), "the fill only")
	require.NotZero(t, c.Stats().Disk.HitBytes)
}

// TestRandomMissFillsMemory: where the disk tier has no room (or there is
// none), a random miss brings the whole needle into memory in the
// background, verified, and later reads of it are hits; a needle of more
// than a quarter of memory is not brought in.
func TestRandomMissFillsMemory(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   Options
		filled bool
	}{
		{"no disk tier", Options{Capacity: 64 << 20, BlockSize: 64 << 10}, true},
		{"disk tier full", diskOpts(t.TempDir(), 64<<20, 1<<20), true},
		{"needle too large for memory", Options{Capacity: 8 << 20, BlockSize: 64 << 10}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, chunks := newTierFake(4<<20, 4<<20)
			c := newCache(t, f, tc.opts)
			ch := chunks[0]
			src := f.chunks[ch.FileID]
			dst := make([]byte, 4096)
			_, err := c.ReadChunkAt(context.Background(), ch, 3<<20, dst, Random)
			require.NoError(t, err)
			require.Equal(t, src[3<<20:3<<20+4096], dst)
			if !tc.filled {
				time.Sleep(100 * time.Millisecond)
				require.Zero(t, c.Stats().MemoryFills)
				require.Zero(t, f.calls.Load(), "a whole needle was fetched")
				return
			}
			require.Eventually(t, func() bool { return c.Stats().MemoryFills == 1 }, 5*time.Second, 10*time.Millisecond)
			c.rc.Wait()
			ranges := f.ranges.Load()
			rng := rand.New(rand.NewPCG(1, 2))
			for i := 0; i < 50; i++ {
				off := rng.Int64N(ch.Size - 4096)
				_, err := c.ReadChunkAt(context.Background(), ch, off, dst, Random)
				require.NoError(t, err)
				require.Equal(t, src[off:off+4096], dst)
			}
			require.Equal(t, ranges, f.ranges.Load(), "a read of the filled needle went to the volume server")
			require.EqualValues(t, 1, f.calls.Load(), "the fill only")
			require.Zero(t, c.Stats().Fills)
		})
	}
}

// TestRangeCheckedAgainstTable: a needle once read whole keeps its table
// after its bytes are evicted; a range of it is then verified, and a
// corrupt range is caught and the needle read whole instead.
func TestRangeCheckedAgainstTable(t *testing.T) {
	f, chunks := newTierFake(4<<20, 4<<20, 4<<20)
	c := newCache(t, f, diskOpts(t.TempDir(), 2<<20, 9<<20)) // two needles' bytes
	readAll(t, c, chunks[0], Sequential)
	readAll(t, c, chunks[1], Sequential)
	readAll(t, c, chunks[2], Sequential) // evicts chunk 0's bytes, not its table
	require.False(t, c.disk.hasData(chunks[0].Key()))
	require.NotNil(t, c.disk.table(chunks[0].Key()))

	src := f.chunks[chunks[0].FileID]
	dst := make([]byte, 4096)
	c.Forget(chunks[0]) // from memory: each read below misses there
	c.rc.Wait()
	for _, off := range []int64{0, 1 << 20, 2<<20 + 12345} {
		_, err := c.ReadChunkAt(context.Background(), chunks[0], off, dst, Random)
		require.NoError(t, err)
		require.Equal(t, src[off:off+4096], dst)
	}
	require.EqualValues(t, 3*64<<10, c.Stats().VerifiedRangeBytes)
	require.Zero(t, c.Stats().UnverifiedBytes)

	f.flipRanges.Store(true)
	wholes := f.wholes.Load()
	_, err := c.ReadChunkAt(context.Background(), chunks[0], 3<<20+7, dst, Random)
	require.NoError(t, err)
	require.Equal(t, src[3<<20+7:3<<20+7+4096], dst, "a corrupt range reached the reader")
	require.Equal(t, wholes+1, f.wholes.Load())
}

// TestDiskSurvivesRemount: a new cache over the same directory starts warm.
func TestDiskSurvivesRemount(t *testing.T) {
	dir := t.TempDir()
	f, chunks := newTierFake(4<<20, 1<<20, 7)
	c1, err := New(f, diskOpts(dir, 2<<20, 64<<20))
	require.NoError(t, err)
	for _, ch := range chunks {
		readAll(t, c1, ch, Sequential)
	}
	c1.Close()
	before := f.wholes.Load()
	c2 := newCache(t, f, diskOpts(dir, 2<<20, 64<<20))
	require.EqualValues(t, 3, c2.Stats().Disk.Entries)
	for _, ch := range chunks {
		require.Equal(t, f.chunks[ch.FileID], readAll(t, c2, ch, Random))
	}
	require.Equal(t, before, f.wholes.Load(), "a warm remount fetched")
	require.Zero(t, f.ranges.Load())
}

// TestOpenWholeWaitsForWrite: an open of a needle whose write to the disk
// tier is under way waits for it and opens the written file, instead of
// reporting it absent (the opener would fetch it again); a context that
// ends first gives up.
func TestOpenWholeWaitsForWrite(t *testing.T) {
	f, chunks := newTierFake(300<<10+5, 2<<20)
	c := newCache(t, f, diskOpts(t.TempDir(), 1<<20, 64<<20))
	ch := chunks[0]
	w := c.disk.writer(ch.Key(), ch.Size, true)
	require.NotNil(t, w)
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, ok := c.OpenWhole(short, ch)
	require.False(t, ok, "opened a needle still being written")

	opened := make(chan *os.File, 1)
	go func() {
		fd, _ := c.OpenWhole(context.Background(), ch)
		opened <- fd
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-opened:
		t.Fatal("the open returned while the needle was being written")
	default:
	}
	_, err := w.Write(f.chunks[ch.FileID])
	require.NoError(t, err)
	w.commit(ch.Size)
	fd := <-opened
	require.NotNil(t, fd, "the open did not wait for the write")
	got, err := io.ReadAll(fd)
	fd.Close()
	require.NoError(t, err)
	require.Equal(t, f.chunks[ch.FileID], got)

	// A reader's own write of a needle (not a fill) is not waited for.
	other := chunks[1]
	w2 := c.disk.writer(other.Key(), other.Size, false)
	require.NotNil(t, w2)
	bounded, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	_, ok = c.OpenWhole(bounded, other)
	require.False(t, ok)
	require.NoError(t, bounded.Err(), "the open waited for a reader's write")
	w2.abort()
}

// TestOpenWholeFillsSmallNeedle: an open of a small needle that no tier
// holds fetches it into the disk tier and opens it there; one whose blocks
// memory holds is left to its reads, as is a larger needle, and a fill
// that fails opens nothing.
func TestOpenWholeFillsSmallNeedle(t *testing.T) {
	ctx := context.Background()
	f, chunks := newTierFake(128<<10, 200<<10, wholeNeedle+1, 64<<10)
	c := newCache(t, f, diskOpts(t.TempDir(), 1<<20, 64<<20))
	fd, ok := c.OpenWhole(ctx, chunks[0])
	require.True(t, ok, "a small needle was not filled at its open")
	got, err := io.ReadAll(fd)
	fd.Close()
	require.NoError(t, err)
	require.Equal(t, f.chunks[chunks[0].FileID], got)
	require.EqualValues(t, 1, f.wholes.Load())

	readAll(t, c, chunks[1], Sequential) // into memory, and teed to disk
	if done := c.disk.written(chunks[1].Key()); done != nil {
		<-done
	}
	c.disk.drop(diskName(chunks[1].Key()))
	c.wg.Wait() // the fetch hands its slots to the cache before ending
	c.rc.Wait()
	before := f.wholes.Load()
	_, ok = c.OpenWhole(ctx, chunks[1])
	require.False(t, ok)
	require.Equal(t, before, f.wholes.Load(), "a needle held in memory was fetched again at its open")

	_, ok = c.OpenWhole(ctx, chunks[2])
	require.False(t, ok)
	require.Equal(t, before, f.wholes.Load(), "a needle past wholeNeedle was fetched at its open")

	f.fail.Store(true)
	_, ok = c.OpenWhole(ctx, chunks[3])
	require.False(t, ok, "opened a needle whose fill failed")
	before = f.wholes.Load()
	_, err = c.ReadChunkAt(ctx, chunks[3], 0, make([]byte, 100), Random)
	require.Error(t, err, "a read right after a failed fill at open succeeded")
	require.Equal(t, before, f.wholes.Load(), "the opener's read fetched again what its open just failed to")
	_, ok = c.OpenWhole(ctx, chunks[3])
	require.False(t, ok)
	require.Equal(t, before, f.wholes.Load(), "a second open fetched again what the first just failed to")
}

// TestOpenWhole: a needle held whole on disk opens as a file of exactly
// its bytes, checked; a needle not on disk, a chunk shorter than its needle
// and a file with a flipped byte are refused, the last counted and removed.
func TestOpenWhole(t *testing.T) {
	dir := t.TempDir()
	f, chunks := newTierFake(300<<10+5, 2<<20)
	c := newCache(t, f, diskOpts(dir, 1<<20, 64<<20))
	_, ok := c.OpenWhole(context.Background(), chunks[0])
	require.False(t, ok, "opened a needle that was never fetched")
	readAll(t, c, chunks[0], Sequential)
	fd, ok := c.OpenWhole(context.Background(), chunks[0])
	require.True(t, ok)
	got, err := io.ReadAll(fd)
	require.NoError(t, err)
	fd.Close()
	require.Equal(t, f.chunks[chunks[0].FileID], got)

	short := chunks[0]
	short.Size -= 5 // one needle standing as a shorter chunk
	_, ok = c.OpenWhole(context.Background(), short)
	require.False(t, ok, "the kernel would read past the chunk's end")

	readAll(t, c, chunks[1], Sequential)
	p := filepath.Join(dir, diskName(chunks[1].Key())[:2], diskName(chunks[1].Key())+".dat")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	b[len(b)-1] ^= 1
	require.NoError(t, os.WriteFile(p, b, 0o600))
	_, ok = c.OpenWhole(context.Background(), chunks[1])
	require.False(t, ok, "opened a corrupt file")
	require.EqualValues(t, 1, c.Stats().Disk.Corrupt)
	require.NoFileExists(t, p)
}

// TestOpenWholeRemembersItsCheck: a file that passed the check, or was just
// written by the tier, and has not changed since (same inode, size and
// ctime) is opened without reading it again; any write to it, even one that
// leaves its length as it was, brings the check back, and a flipped byte is
// caught. On a file system whose ctimes come from the coarse clock, a check
// is remembered only for a file that changed stampSettle before it.
func TestOpenWholeRemembersItsCheck(t *testing.T) {
	t.Logf("fine ctimes in a temporary directory here: %v", fineCtimes(t.TempDir()))
	for _, fine := range []bool{true, false} {
		t.Run(fmt.Sprintf("fine ctimes %v", fine), func(t *testing.T) {
			dir := t.TempDir()
			if fine && !fineCtimes(dir) {
				// A flip in the same tick as the write would keep
				// the ctime that the tier stamped.
				t.Skip("the file system here has coarse ctimes")
			}
			f, chunks := newTierFake(200<<10 + 3)
			c := newCache(t, f, diskOpts(dir, 1<<20, 64<<20))
			c.disk.fineCtime = fine
			ch := chunks[0]
			readAll(t, c, ch, Sequential)
			open := func() bool {
				fd, ok := c.OpenWhole(context.Background(), ch)
				if ok {
					got, err := io.ReadAll(fd)
					require.NoError(t, err)
					fd.Close()
					require.Equal(t, f.chunks[ch.FileID], got)
				}
				return ok
			}
			checked := func() int64 { return int64(c.Stats().Disk.CheckedBytes) }

			require.True(t, open())
			require.True(t, open())
			if fine {
				// Read back once, right after it was written.
				require.Equal(t, ch.Size, checked(), "a file the tier wrote was read again at open")
			} else {
				// Written just now: a change in the same tick could
				// keep its ctime, so no check is remembered yet.
				require.Equal(t, 2*ch.Size, checked())
				time.Sleep(stampSettle + 100*time.Millisecond)
				require.True(t, open())
				require.True(t, open())
				require.Equal(t, 3*ch.Size, checked(), "a settled file that passed was read again")
			}

			// A write in place (no new inode, same length) sets the ctime.
			name := diskName(ch.Key())
			p := filepath.Join(dir, name[:2], name+".dat")
			fw, err := os.OpenFile(p, os.O_RDWR, 0)
			require.NoError(t, err)
			b := []byte{0}
			_, err = fw.ReadAt(b, 70<<10)
			require.NoError(t, err)
			b[0] ^= 4
			_, err = fw.WriteAt(b, 70<<10)
			require.NoError(t, err)
			require.NoError(t, fw.Close())
			require.False(t, open(), "opened a file written to since its check")
			require.EqualValues(t, 1, c.Stats().Disk.Corrupt)
			require.NoFileExists(t, p)
		})
	}
}

// TestBufferedPlan: a buffered reader's whole needles are written past
// the page cache while the fetch keeps all of the needle in memory too.
func TestBufferedPlan(t *testing.T) {
	f, chunks := newTierFake(200<<10, 4<<20, 8<<20, 8<<20+1)
	c := newCache(t, f, diskOpts(t.TempDir(), 16<<20, 256<<20))
	require.EqualValues(t, 8<<20, c.opts.MaxFetch)
	for _, tc := range []struct {
		ch     needle.Chunk
		access Access
		want   plan
	}{
		{chunks[0], Buffered, planStream},
		{chunks[1], Buffered, planStream},
		{chunks[2], Buffered, planStream},
		{chunks[3], Buffered, planWhole}, // its end would be read back from disk
		{chunks[1], Passing, planPass},
		{chunks[3], Passing, planWhole}, // as Buffered
		{chunks[1], Sequential, planWhole},
		{chunks[1], Random, planRange},
		{chunks[0], Random, planWhole}, // small: whole at any access
	} {
		c.mu.Lock()
		got := c.planLocked(tc.ch, tc.access)
		c.mu.Unlock()
		require.Equal(t, tc.want, got, "%d bytes, access %d", tc.ch.Size, tc.access)
	}
	// Needles that pass through memory alone hold at most a quarter of it
	// (16 MiB here): past that a passing stream's needle goes to disk.
	c.mu.Lock()
	c.passing = 1
	past := c.planLocked(chunks[1], Passing)
	c.passing = 0
	within := c.planLocked(chunks[0], Passing)
	c.mu.Unlock()
	require.Equal(t, planStream, past, "past the share")
	require.Equal(t, planPass, within, "within it")
}

func passingBytes(c *Cache) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.passing
}

// TestPassingShare: concurrent passing streams hold at most their share of
// memory, and the bytes they count are given back when their fetches end.
func TestPassingShare(t *testing.T) {
	f, chunks := newTierFake(1<<20, 1<<20, 1<<20, 1<<20, 1<<20, 1<<20)
	c := newCache(t, f, diskOpts(t.TempDir(), 16<<20, 256<<20))
	f.gate = make(chan struct{})
	var wg sync.WaitGroup
	got := make([][]byte, len(chunks))
	for i, ch := range chunks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]byte, ch.Size)
			if n, err := c.ReadChunkAt(context.Background(), ch, 0, dst, Passing); err == nil && n == len(dst) {
				got[i] = dst
			}
		}()
	}
	// Four pass, and wait at the gate (fetches with no sink); the other
	// two go to disk, past it.
	require.Eventually(t, func() bool { return f.calls.Load() == 4 && c.Stats().Disk.Writes == 2 },
		10*time.Second, time.Millisecond)
	require.EqualValues(t, 4<<20, passingBytes(c), "passing bytes under way")
	close(f.gate)
	wg.Wait()
	for i, ch := range chunks {
		require.Equal(t, f.chunks[ch.FileID], got[i], "chunk %d", i)
	}
	require.Zero(t, passingBytes(c), "passing bytes after the fetches")
}

// TestPassJoinsWrite: a passing read of a needle that a fill is writing
// into the disk tier waits for that write and reads the disk tier's copy,
// rather than fetch the needle a second time.
func TestPassJoinsWrite(t *testing.T) {
	f, chunks := newTierFake(1 << 20)
	ch := chunks[0]
	c := newCache(t, f, diskOpts(t.TempDir(), 16<<20, 256<<20))
	f.wholeGate = make(chan struct{})
	filled := make(chan error, 1)
	go func() {
		_, err := c.FillDisk(context.Background(), ch, false)
		filled <- err
	}()
	require.Eventually(t, func() bool { return f.wholes.Load() == 1 }, 10*time.Second, time.Millisecond)
	read := make(chan []byte, 1)
	go func() {
		dst := make([]byte, ch.Size)
		if n, err := c.ReadChunkAt(context.Background(), ch, 0, dst, Passing); err != nil || n != len(dst) {
			dst = nil
		}
		read <- dst
	}()
	fetches := func() int64 { return f.calls.Load() + f.wholes.Load() }
	require.Never(t, func() bool { return fetches() > 1 }, 200*time.Millisecond, time.Millisecond,
		"the read fetched the needle while its write was under way")
	require.Eventually(t, func() bool { return passingBytes(c) == ch.Size }, 10*time.Second, time.Millisecond,
		"the read plans to pass, and waits")
	close(f.wholeGate)
	require.NoError(t, <-filled)
	require.Equal(t, f.chunks[ch.FileID], <-read)
	require.EqualValues(t, 1, fetches(), "fetches of the needle")
	require.Zero(t, passingBytes(c))
}

// TestBufferedStreamGoesPastPageCache: a needle fetched for a buffered
// reader lands on disk whole and right, is not read back after its write
// (it would come from disk), and is checked at its first open instead.
func TestBufferedStreamGoesPastPageCache(t *testing.T) {
	dir := t.TempDir()
	f, chunks := newTierFake(200<<10+3, 200<<10+5)
	c := newCache(t, f, diskOpts(dir, 4<<20, 64<<20))
	c.disk.fineCtime = true
	checked := func() int64 { return int64(c.Stats().Disk.CheckedBytes) }
	for _, tc := range []struct {
		ch       needle.Chunk
		access   Access
		readBack bool
	}{{chunks[0], Sequential, true}, {chunks[1], Buffered, false}} {
		before := checked()
		require.Equal(t, f.chunks[tc.ch.FileID], readAll(t, c, tc.ch, tc.access))
		require.True(t, c.disk.hasData(tc.ch.Key()), "access %d: not on disk", tc.access)
		if tc.readBack {
			require.Equal(t, before+tc.ch.Size, checked(), "access %d: not read back after its write", tc.access)
		} else {
			require.Equal(t, before, checked(), "access %d: read back after its write", tc.access)
		}
		fd, ok := c.OpenWhole(context.Background(), tc.ch)
		require.True(t, ok)
		got, err := io.ReadAll(fd)
		require.NoError(t, err)
		fd.Close()
		require.Equal(t, f.chunks[tc.ch.FileID], got)
		require.Equal(t, before+tc.ch.Size, checked(), "access %d: checked at open %v", tc.access, !tc.readBack)
	}
}

// TestKeepsStream: a stream's needles are kept on disk while the file fits
// in the tier with its tables, and otherwise in the first quarter of its
// capacity only.
func TestKeepsStream(t *testing.T) {
	f, _ := newTierFake(1)
	c := newCache(t, f, diskOpts(t.TempDir(), 16<<20, 128<<20))
	for _, tc := range []struct {
		size, off int64
		want      bool
	}{
		{127 << 20, 126 << 20, true},
		{128 << 20, 127 << 20, false}, // fits, but not with its tables
		{128 << 20, 32<<20 - 1, true},
		{1 << 30, 0, true},
		{1 << 30, 32<<20 - 1, true},
		{1 << 30, 32 << 20, false},
		{1 << 30, 900 << 20, false},
	} {
		require.Equal(t, tc.want, c.KeepsStream(tc.size, tc.off), "size %d, off %d", tc.size, tc.off)
	}
	none := newCache(t, f, Options{Capacity: 16 << 20, BlockSize: 64 << 10})
	require.True(t, none.KeepsStream(1<<40, 1<<39), "no disk tier: nothing to spare it")
}

// TestPassingStream: a needle that a stream passes through is read whole,
// right, into memory, and nothing of it goes to disk.
func TestPassingStream(t *testing.T) {
	f, chunks := newTierFake(1<<20+5, 4<<20)
	c := newCache(t, f, diskOpts(t.TempDir(), 16<<20, 64<<20))
	for _, ch := range chunks {
		calls := f.calls.Load()
		require.Equal(t, f.chunks[ch.FileID], readAll(t, c, ch, Passing))
		require.Equal(t, calls+1, f.calls.Load(), "%d bytes: one fetch", ch.Size)
		require.False(t, c.disk.hasData(ch.Key()), "%d bytes: written to disk", ch.Size)
	}
	require.Zero(t, f.wholes.Load(), "a fetch was handed a sink")
	// Read 1 MiB at a time, as a stream reads, a needle costs one fetch.
	c = newCache(t, f, diskOpts(t.TempDir(), 16<<20, 64<<20))
	ch, calls := chunks[1], f.calls.Load()
	for off := int64(0); off < ch.Size; off += 1 << 20 {
		dst := make([]byte, 1<<20)
		n, err := c.ReadChunkAt(context.Background(), ch, off, dst, Passing)
		require.NoError(t, err)
		require.Equal(t, f.chunks[ch.FileID][off:off+int64(n)], dst[:n])
	}
	require.Equal(t, calls+1, f.calls.Load(), "read in pieces: fetches")
	require.Zero(t, c.Stats().Disk.Writes)
}

// onDisk returns a cache over a disk tier (in dir) that holds the one
// needle of size bytes, read whole once, and the wholes fetched so far.
func onDisk(t *testing.T, size int, memory int64) (dir string, f *tierFake, c *Cache, ch needle.Chunk, wholes int64) {
	dir = t.TempDir()
	f, chunks := newTierFake(size)
	c = newCache(t, f, diskOpts(dir, memory, 64<<20))
	ch = chunks[0]
	readAll(t, c, ch, Sequential)
	return dir, f, c, ch, f.wholes.Load()
}

// flipDatByte flips one bit at off in the disk tier's file of ch.
func flipDatByte(t *testing.T, dir string, ch needle.Chunk, off int64) {
	name := diskName(ch.Key())
	p := filepath.Join(dir, name[:2], name+".dat")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	b[off] ^= 1
	require.NoError(t, os.WriteFile(p, b, 0o600))
}

// TestRandomReadFromDisk: a random read of a needle on disk is served from
// its file, checked, and not kept in memory; a flipped byte there is caught
// and the needle fetched again.
func TestRandomReadFromDisk(t *testing.T) {
	dir, f, c, ch, wholes := onDisk(t, 2<<20+9, 1<<20)
	src := f.chunks[ch.FileID]
	dst := make([]byte, 4096)
	for _, off := range []int64{0, 1 << 20, 2<<20 - 4000} {
		n, err := c.ReadChunkAt(context.Background(), ch, off, dst, Random)
		require.NoError(t, err)
		require.Equal(t, src[off:off+int64(n)], dst[:n])
	}
	require.Equal(t, wholes, f.wholes.Load(), "a needle on disk was fetched")
	require.Zero(t, f.ranges.Load())

	flipDatByte(t, dir, ch, 3<<19)
	n, err := c.ReadChunkAt(context.Background(), ch, 3<<19, dst, Random)
	require.NoError(t, err)
	require.Equal(t, src[3<<19:3<<19+n], dst[:n])
	require.EqualValues(t, 1, c.Stats().Disk.Corrupt)
}

// TestDiskReadsLandInPlace reads a needle held on disk in sequence and at
// random, at offsets and lengths that start, end and stay inside blocks,
// with some of its blocks in memory and as a chunk shorter than its needle,
// and compares every byte: whole blocks land in the reader's buffer, the
// edges go through a buffer, and nothing is fetched. A flipped byte in a
// block the read covers whole is caught and the needle fetched again.
func TestDiskReadsLandInPlace(t *testing.T) {
	const bs = 64 << 10
	dir, f, c, ch, wholes := onDisk(t, 4<<20+777, 2<<20)
	src := f.chunks[ch.FileID]
	short := needle.Chunk{FileID: ch.FileID, Size: 3*bs + 5}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 400; i++ {
		c2 := ch
		if i%7 == 0 {
			c2 = short
		}
		var off, n int64
		switch i % 4 {
		case 0: // aligned, a kernel's readahead request
			off, n = rng.Int64N(c2.Size/bs+1)*bs, 1<<20
		case 1: // inside one block
			off, n = rng.Int64N(c2.Size), rng.Int64N(bs/2)+1
		default:
			off, n = rng.Int64N(c2.Size), rng.Int64N(3<<20)+1
		}
		off = min(off, c2.Size-1)
		dst := make([]byte, n+16)
		guard := dst[n:] // bytes past the read must stay as they were
		for j := range guard {
			guard[j] = 0xA5
		}
		got, err := c.ReadChunkAt(context.Background(), c2, off, dst[:n], Access(i%2))
		require.NoError(t, err)
		want := src[off:min(off+n, c2.Size)]
		require.Equal(t, len(want), got)
		if !bytes.Equal(dst[:got], want) {
			t.Fatalf("read %d at %d+%d of a %d-byte chunk: wrong bytes", i, off, n, c2.Size)
		}
		require.Equal(t, bytes.Repeat([]byte{0xA5}, len(guard)), guard, "read %d wrote past its end", i)
	}
	require.Equal(t, wholes, f.wholes.Load(), "a needle on disk was fetched")
	require.Zero(t, f.ranges.Load())

	// A block inside the read that memory does not hold (its copy there,
	// from the first read, would be served instead).
	flip := int64(1)
	for ; flip < ch.Size/bs-2; flip++ {
		if _, ok := c.rc.Get(c.blockKey(ch, flip)); !ok {
			break
		}
	}
	flipDatByte(t, dir, ch, flip*bs+100)
	dst := make([]byte, 1<<20)
	from := (flip - 1) * bs
	n, err := c.ReadChunkAt(context.Background(), ch, from, dst, Sequential)
	require.NoError(t, err)
	require.Equal(t, src[from:from+int64(n)], dst[:n])
	require.EqualValues(t, 1, c.Stats().Disk.Corrupt)
	require.Greater(t, f.wholes.Load(), wholes, "the corrupt needle was not fetched again")
}

// TestStreamTakesItsReadaheadFromDisk streams through needles with
// readahead twice, the first time while each lands on disk. A needle on
// disk is read from its file, but blocks read ahead of the stream (in
// memory, waiting for it) must still be the ones it takes, or they wait
// unread until abandoned and readahead stalls on its full budget. On the
// second pass, all on disk, readahead goes where ahead says: to the
// kernel (no block read ahead into memory) or into memory (all of them
// taken by the stream).
func TestStreamTakesItsReadaheadFromDisk(t *testing.T) {
	for name, ahead := range map[string]Ahead{"kernel": KernelAhead, "memory": MemoryAhead} {
		t.Run(name, func(t *testing.T) {
			f, chunks := newTierFake(4<<20, 4<<20, 4<<20, 4<<20, 4<<20, 4<<20)
			c := newCache(t, f, diskOpts(t.TempDir(), 16<<20, 256<<20))
			stream := func() {
				dst := make([]byte, 1<<20)
				for i, ch := range chunks {
					ra := NewReadahead(1<<20, 8<<20)
					for off := int64(0); off < ch.Size; off += int64(len(dst)) {
						if pOff, pLen := ra.Observe(off, int64(len(dst))); pLen > 0 {
							c.Prefetch(ch, pOff, min(pLen, ch.Size-pOff), ahead)
						}
						if i+1 < len(chunks) && off+int64(len(dst)) >= ch.Size {
							c.Prefetch(chunks[i+1], 0, 2<<20, ahead) // the next chunk, as fs's readahead asks
						}
						_, err := c.ReadChunk(context.Background(), ch, off, dst)
						require.NoError(t, err)
						require.Equal(t, f.chunks[ch.FileID][off:off+int64(len(dst))], dst, "chunk %d at %d", i, off)
					}
				}
			}
			stream()
			s := c.Stats()
			require.Zero(t, s.ReadaheadBytes, "blocks read ahead were left unread")
			require.Equal(t, s.PrefetchedBytes, s.PrefetchUsedBytes)
			require.EqualValues(t, len(chunks), f.wholes.Load(), "a needle was fetched twice")
			for _, ch := range chunks {
				require.Eventually(t, func() bool { return c.disk.hasData(ch.Key()) },
					10*time.Second, 10*time.Millisecond, "the stream's needles land on disk")
				c.Forget(ch) // memory forgets; the disk tier keeps them
			}
			c.rc.Wait()
			stream()
			s2 := c.Stats()
			t.Logf("%+v", s2)
			require.EqualValues(t, len(chunks), f.wholes.Load(), "a needle on disk was fetched")
			require.Zero(t, s2.ReadaheadBytes, "blocks read ahead were left unread")
			require.Equal(t, s2.PrefetchedBytes, s2.PrefetchUsedBytes)
			if ahead == KernelAhead {
				require.Equal(t, s.PrefetchedBytes, s2.PrefetchedBytes, "a stream read ahead into memory")
			} else {
				require.Greater(t, s2.PrefetchedBytes, s.PrefetchedBytes, "a stream read ahead into memory")
			}
		})
	}
}

// TestPreadvFullShortReads fills buffers across short reads: a file that
// ends inside them is an error, and the caller's slices stay whole.
func TestPreadvFullShortReads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	data := make([]byte, 200_000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	require.NoError(t, os.WriteFile(p, data, 0o600))
	fd, err := unix.Open(p, unix.O_RDONLY, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	a, b := make([]byte, 70_000), make([]byte, 100_000)
	require.NoError(t, preadvFull(fd, [][]byte{a, b}, 30_000))
	require.Equal(t, data[30_000:100_000], a)
	require.Equal(t, data[100_000:], b)
	bufs := [][]byte{make([]byte, 150_000), make([]byte, 100_000)}
	require.ErrorIs(t, preadvFull(fd, bufs, 0), io.ErrUnexpectedEOF)
	require.Len(t, bufs[0], 150_000)
	require.Len(t, bufs[1], 100_000)
}

// TestDiskFaults: a flipped byte in a cache file, a truncated file, a
// garbled table and a wiped directory are each a miss, counted, and
// never a wrong byte.
func TestDiskFaults(t *testing.T) {
	for _, size := range []int64{2<<20 + 3, 300_000} { // a .sum, an attribute
		t.Run(fmt.Sprint(size), func(t *testing.T) { testDiskFaults(t, size) })
	}
}

func testDiskFaults(t *testing.T, size int64) {
	for _, tc := range []struct {
		name  string
		fault func(t *testing.T, dir, name string)
	}{
		{"flipped byte", func(t *testing.T, dir, name string) {
			p := filepath.Join(dir, name[:2], name+".dat")
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			b[len(b)/2] ^= 1
			require.NoError(t, os.WriteFile(p, b, 0o600))
		}},
		{"truncated", func(t *testing.T, dir, name string) {
			require.NoError(t, os.Truncate(filepath.Join(dir, name[:2], name+".dat"), 100_000))
		}},
		{"garbled table", func(t *testing.T, dir, name string) {
			p := filepath.Join(dir, name[:2], name)
			if size <= smallNeedle {
				require.NoFileExists(t, p+".sum")
				require.NoError(t, unix.Setxattr(p+".dat", xattrTable, []byte("WFX1garbage!garbage!garbage!"), 0))
				return
			}
			require.NoError(t, os.WriteFile(p+".sum", []byte("WFSUM\x00\x01\x00garbage!garbage!garbage!"), 0o600))
		}},
		{"table attribute gone", func(t *testing.T, dir, name string) {
			p := filepath.Join(dir, name[:2], name)
			if size <= smallNeedle {
				require.NoError(t, unix.Removexattr(p+".dat", xattrTable))
				return
			}
			require.NoError(t, os.Remove(p+".sum"))
		}},
		{"wiped directory", func(t *testing.T, dir, name string) {
			require.NoError(t, os.RemoveAll(dir))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			f, chunks := newTierFake(int(size))
			// A memory tier of a third of the needle cannot hold it:
			// later reads go to disk.
			c := newCache(t, f, diskOpts(dir, size/3, 64<<20))
			ch := chunks[0]
			src := f.chunks[ch.FileID]
			readAll(t, c, ch, Sequential)
			c.disk.mu.Lock()
			for _, e := range c.disk.byName { // tables are read from their files again
				e.Value.(*diskEntry).t = nil
			}
			c.disk.mu.Unlock()
			tc.fault(t, dir, diskName(ch.Key()))
			for i := 0; i < 3; i++ {
				require.Equal(t, src, readAll(t, c, ch, Sequential))
			}
			s := c.Stats().Disk
			t.Logf("%+v", s)
			require.NotZero(t, s.Corrupt+s.Misses, "the fault went unnoticed")
			require.GreaterOrEqual(t, s.Writes, uint64(2), "the needle was not written again")
		})
	}
}

// TestDiskFull: a cache directory on a 3 MiB tmpfs fills up; reads stay
// right and writes that fail are counted.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", dir).CombinedOutput()
	require.NoError(t, err, string(out))
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	var warned []string
	f, chunks := newTierFake(2<<20, 2<<20, 2<<20, 1<<20+1)
	o := diskOpts(dir, 1<<20, 1<<30) // far more than the tmpfs holds
	o.Warn = func(s string) { warned = append(warned, s) }
	c := newCache(t, f, o)
	require.Len(t, warned, 1)
	require.Contains(t, warned[0], "free")
	require.Less(t, c.Stats().Disk.Capacity, int64(3<<20))
	for round := 0; round < 3; round++ {
		for _, ch := range chunks {
			require.Equal(t, f.chunks[ch.FileID], readAll(t, c, ch, Sequential))
		}
	}
	require.LessOrEqual(t, c.Stats().Disk.Used, c.Stats().Disk.Capacity)
	t.Logf("%+v", c.Stats().Disk)
}

// TestDiskFullWrites fills a tmpfs behind the tier's back: writes fail
// with ENOSPC, are counted, and pause; reads stay right.
func TestDiskFullWrites(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", dir).CombinedOutput()
	require.NoError(t, err, string(out))
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	f, chunks := newTierFake(1<<20+1, 1<<20+2)
	c := newCache(t, f, diskOpts(dir, 1<<20, 3<<20))
	os.WriteFile(filepath.Join(dir, "ballast"), make([]byte, 4<<20), 0o600) // fills it: ENOSPC
	for _, ch := range chunks {
		require.Equal(t, f.chunks[ch.FileID], readAll(t, c, ch, Sequential))
	}
	require.NotZero(t, c.Stats().Disk.WriteErrors)
}

// TestTwoCachesShareADirectory: two mounts of one cluster over one cache
// directory, reading and evicting at once, never read a wrong byte.
func TestTwoCachesShareADirectory(t *testing.T) {
	dir := t.TempDir()
	f, chunks := newTierFake(1<<20+1, 2<<20, 3<<20, 4<<20, 5<<20, 300_000, 700_000)
	var wg sync.WaitGroup
	var caches []*Cache
	var failures atomic.Int64
	for m := 0; m < 2; m++ {
		c := newCache(t, f, diskOpts(dir, 1<<20, 8<<20))
		caches = append(caches, c)
		for w := 0; w < 3; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(m), uint64(w)))
				for i := 0; i < 200; i++ {
					ch := chunks[rng.IntN(len(chunks))]
					off := rng.Int64N(ch.Size)
					dst := make([]byte, rng.IntN(200_000)+1)
					n, err := c.ReadChunkAt(context.Background(), ch, off, dst, Access(rng.IntN(2)))
					if err != nil || !bytes.Equal(dst[:n], f.chunks[ch.FileID][off:off+int64(n)]) {
						failures.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	require.Zero(t, failures.Load())
	for _, c := range caches {
		requireUsedAdds(t, c.disk)
	}
	// No temporary file is left behind, once the background fills that
	// random reads started (the readers do not wait for them) are done.
	var left string
	require.Eventually(t, func() bool {
		left = ""
		filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
			if err == nil && strings.Contains(de.Name(), ".tmp") {
				left = p
			}
			return nil
		})
		return left == ""
	}, 10*time.Second, 20*time.Millisecond, "left behind: %s", left)
}

// TestKeysSeparateDecodings: chunks naming one needle with another cipher
// key or compression flag share no block and no disk file.
func TestKeysSeparateDecodings(t *testing.T) {
	base := needle.Chunk{FileID: "3,01637037d6", Size: 10}
	variants := []needle.Chunk{base,
		{FileID: base.FileID, Size: 10, CipherKey: []byte("k1")},
		{FileID: base.FileID, Size: 10, CipherKey: []byte("k2")},
		{FileID: base.FileID, Size: 10, Compressed: true},
		{FileID: base.FileID, Size: 10, ETag: "x"},
	}
	seen := map[string]bool{}
	for _, v := range variants {
		name := diskName(v.Key())
		require.False(t, seen[name], fmt.Sprintf("%+v shares a name", v))
		seen[name] = true
	}
}

// requireUsedAdds checks the tier's bookkeeping: what it counts as used is
// what its entries cost.
func requireUsedAdds(t *testing.T, d *disk) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	var sum int64
	for e := d.lru.Front(); e != nil; e = e.Next() {
		sum += e.Value.(*diskEntry).cost()
	}
	require.Equal(t, sum, d.used)
	require.Equal(t, d.lru.Len(), len(d.byName))
}

// TestSmallNeedleTableInAttribute: a needle of smallNeedle bytes or less
// keeps its table in its file's extended attribute, with no .sum, and a
// remount finds it there; where attributes are refused, a .sum is written.
func TestSmallNeedleTableInAttribute(t *testing.T) {
	dir := t.TempDir()
	f, chunks := newTierFake(128<<10, smallNeedle, smallNeedle+1)
	c1, err := New(f, diskOpts(dir, 2<<20, 64<<20))
	require.NoError(t, err)
	for _, ch := range chunks {
		readAll(t, c1, ch, Sequential)
	}
	for i, ch := range chunks {
		p := filepath.Join(dir, diskName(ch.Key())[:2], diskName(ch.Key()))
		require.FileExists(t, p+".dat")
		_, err := os.Stat(p + ".sum")
		require.Equal(t, i == 2, err == nil, "a .sum for needle %d", i)
		_, err = unix.Getxattr(p+".dat", xattrTable, nil)
		require.Equal(t, i < 2, err == nil, "an attribute for needle %d", i)
	}
	require.EqualValues(t, 128<<10+smallNeedle+smallNeedle+1+sumCost, c1.Stats().Disk.Used)
	requireUsedAdds(t, c1.disk)
	c1.Close()

	before := f.wholes.Load()
	c2 := newCache(t, f, diskOpts(dir, 2<<20, 64<<20))
	requireUsedAdds(t, c2.disk)
	for _, ch := range chunks {
		require.Equal(t, f.chunks[ch.FileID], readAll(t, c2, ch, Random))
	}
	require.Equal(t, before, f.wholes.Load(), "a warm remount fetched")

	// Evicting a needle whose table is in its file forgets it whole.
	c2.disk.mu.Lock()
	c2.disk.capacity = 1
	c2.disk.evictLocked()
	c2.disk.mu.Unlock()
	require.Zero(t, c2.Stats().Disk.Used)
	require.Zero(t, c2.Stats().Disk.Entries)

	dir2 := t.TempDir()
	c3 := newCache(t, f, diskOpts(dir2, 2<<20, 64<<20))
	c3.disk.noXattr.Store(true)
	readAll(t, c3, chunks[0], Sequential)
	p := filepath.Join(dir2, diskName(chunks[0].Key())[:2], diskName(chunks[0].Key()))
	require.FileExists(t, p+".sum")
	requireUsedAdds(t, c3.disk)
}

// TestSumReplacedByAttribute: another mount evicts a small needle's .sum
// and writes the needle again with its table in the .dat; this mount, which
// knew the .sum, adopts the attribute instead of dropping the needle.
func TestSumReplacedByAttribute(t *testing.T) {
	dir := t.TempDir()
	f, chunks := newTierFake(128 << 10)
	ch := chunks[0]
	old := newCache(t, f, diskOpts(dir, 64<<10, 64<<20))
	old.disk.noXattr.Store(true) // as a mount of the older layout writes it
	readAll(t, old, ch, Sequential)
	p := filepath.Join(dir, diskName(ch.Key())[:2], diskName(ch.Key()))
	require.FileExists(t, p+".sum")

	c := newCache(t, f, diskOpts(dir, 64<<10, 64<<20))
	require.NoError(t, os.Remove(p+".sum"))
	b, err := os.ReadFile(p + ".dat")
	require.NoError(t, err)
	w := &diskWriter{d: c.disk, key: ch.Key()}
	w.n = int64(len(b))
	w.crcs = []uint32{needle.CRC32C(0, b[:64<<10]), needle.CRC32C(0, b[64<<10:])}
	require.NoError(t, unix.Setxattr(p+".dat", xattrTable, encodeXattr(ch.Key(), w.n, 64<<10, w.crcs), 0))

	before := f.wholes.Load()
	require.Equal(t, f.chunks[ch.FileID], readAll(t, c, ch, Random))
	require.Equal(t, before, f.wholes.Load(), "the needle was fetched again")
	requireUsedAdds(t, c.disk)
	require.EqualValues(t, 128<<10, c.Stats().Disk.Used)
}

// FuzzParseXattr: no input panics, and one whose checksum is right (the
// fuzzer rarely finds that by itself, so it is also appended) parses only
// into a table that encodes back to it.
func FuzzParseXattr(f *testing.F) {
	f.Add(encodeXattr("1,ab", 70_000, 64<<10, []uint32{1, 2}), "1,ab")
	f.Add([]byte(xattrMagic+"\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00"), "")
	f.Fuzz(func(t *testing.T, b []byte, key string) {
		parseXattr(b, key, 64<<10)
		sealed := binary.LittleEndian.AppendUint32(bytes.Clone(b), needle.CRC32C(0, b))
		if tab, err := parseXattr(sealed, key, 64<<10); err == nil {
			require.Equal(t, sealed, encodeXattr(key, tab.length, 64<<10, tab.crcs))
		}
	})
}

// TestScanKeepsOnlyTableCarriers: at start, a .dat with no .sum is kept
// only if it may carry its table in an attribute; one that turns out to
// have none is removed at its first use, and the books stay right.
func TestScanKeepsOnlyTableCarriers(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name[:2], name+".dat")
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
		require.NoError(t, os.WriteFile(p, make([]byte, n), 0o600))
		return p
	}
	f, chunks := newTierFake(100_000)
	empty := write(diskName("1,empty"), 0)
	large := write(diskName("1,large"), smallNeedle+1)
	bare := write(diskName(chunks[0].Key()), 100_000) // no attribute
	c := newCache(t, f, diskOpts(dir, 64<<10, 64<<20))
	require.NoFileExists(t, empty)
	require.NoFileExists(t, large)
	require.FileExists(t, bare)
	require.EqualValues(t, 1, c.Stats().Disk.Entries)
	requireUsedAdds(t, c.disk)
	require.Equal(t, f.chunks[chunks[0].FileID], readAll(t, c, chunks[0], Random))
	require.EqualValues(t, 1, c.Stats().Disk.Corrupt)
	require.Eventually(t, func() bool { return c.Stats().Disk.Writes == 1 }, 5*time.Second, 10*time.Millisecond)
	_, err := unix.Getxattr(bare, xattrTable, nil)
	require.NoError(t, err, "the needle was written again, with its table")
	requireUsedAdds(t, c.disk)
}

// TestParseTableRejects: both forms of a table parse back, and refuse
// another key, another block size, any flipped bit and any cut.
func TestParseTableRejects(t *testing.T) {
	w := &diskWriter{d: &disk{bs: 64 << 10}, key: "1,ab"}
	w.n, w.crcs = 70_000, []uint32{1, 2}
	p := filepath.Join(t.TempDir(), "x.sum")
	require.NoError(t, w.writeSum(p))
	sum, err := os.ReadFile(p)
	require.NoError(t, err)
	xattr := encodeXattr("1,ab", 70_000, 64<<10, []uint32{1, 2})
	require.Len(t, xattr, 28)
	for _, tc := range []struct {
		name  string
		good  []byte
		parse func([]byte, string, int64) (*diskTable, error)
	}{
		{"sum", sum, parseSum},
		{"xattr", xattr, parseXattr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := tc.good
			tab, err := tc.parse(good, "1,ab", 64<<10)
			require.NoError(t, err)
			require.Equal(t, []uint32{1, 2}, tab.crcs)
			require.EqualValues(t, 70_000, tab.length)
			_, err = tc.parse(good, "1,ac", 64<<10)
			require.Error(t, err)
			_, err = tc.parse(good, "1,ab", 128<<10)
			require.Error(t, err)
			for i := range good {
				bad := bytes.Clone(good)
				bad[i] ^= 0x10
				_, err := tc.parse(bad, "1,ab", 64<<10)
				require.Error(t, err, "flip at %d", i)
			}
			for n := range len(good) {
				_, err = tc.parse(good[:n], "1,ab", 64<<10)
				require.Error(t, err, "cut at %d", n)
			}
		})
	}
}

func FuzzParseSum(f *testing.F) {
	f.Add([]byte(sumMagic+"\x04\x001,ab"), "1,ab")
	f.Fuzz(func(t *testing.T, b []byte, key string) {
		parseSum(b, key, 64<<10) // must not panic
	})
}

// TestFillDisk: a fill puts the needle on disk and says it wrote it (a
// second finds it there and says it did not); a failed fetch is an error
// that is not ErrNoRoom, so that a scan goes on but knows the file is
// missing; a tier without room says ErrNoRoom, and so does a cache without a
// tier.
func TestFillDisk(t *testing.T) {
	ctx := context.Background()
	f, chunks := newTierFake(128<<10, 128<<10, 3<<20)
	c := newCache(t, f, diskOpts(t.TempDir(), 1<<20, 2<<20))
	wrote, err := c.FillDisk(ctx, chunks[0], false)
	require.NoError(t, err)
	require.True(t, wrote, "the first fill did not say it wrote the needle")
	wrote, err = c.FillDisk(ctx, chunks[0], false)
	require.NoError(t, err)
	require.False(t, wrote, "a fill of a needle on disk said it wrote it")
	require.EqualValues(t, 1, f.wholes.Load(), "a needle on disk was fetched again")
	fd, ok := c.OpenWhole(ctx, chunks[0])
	require.True(t, ok)
	fd.Close()

	f.fail.Store(true)
	_, err = c.FillDisk(ctx, chunks[1], false)
	require.Error(t, err)
	require.NotErrorIs(t, err, ErrNoRoom)
	f.fail.Store(false)

	_, err = c.FillDisk(ctx, chunks[2], false)
	require.ErrorIs(t, err, ErrNoRoom, "3 MiB into a 2 MiB tier")
	mem := newCache(t, f, Options{Capacity: 1 << 20, BlockSize: 64 << 10})
	_, err = mem.FillDisk(ctx, chunks[0], false)
	require.ErrorIs(t, err, ErrNoRoom)
}

// TestFillDiskEvicting: a fill that may evict makes room in a full tier
// by pushing out the least recently used needle, where one that may not
// says ErrNoRoom.
func TestFillDiskEvicting(t *testing.T) {
	ctx := context.Background()
	f, chunks := newTierFake(400<<10, 400<<10, 400<<10)
	c := newCache(t, f, diskOpts(t.TempDir(), 1<<20, 1<<20))
	for _, ch := range chunks[:2] {
		_, err := c.FillDisk(ctx, ch, false)
		require.NoError(t, err)
	}
	_, err := c.FillDisk(ctx, chunks[2], false)
	require.ErrorIs(t, err, ErrNoRoom)
	_, err = c.FillDisk(ctx, chunks[2], true)
	require.NoError(t, err)
	fd, ok := c.OpenWhole(ctx, chunks[2])
	require.True(t, ok, "the evicting fill is not on disk")
	fd.Close()
	_, ok = c.OpenWhole(ctx, chunks[0])
	require.False(t, ok, "the least recently used needle was kept beyond the tier's capacity")
}

// A needle on disk whose reads memory answers whole stays the disk tier's
// most recently used: it must not age there as if unread and be the first
// evicted by the next write (a warm-up's own needles were).
func TestMemoryHitKeepsDiskRecency(t *testing.T) {
	f, chunks := newTierFake(1<<20, 1<<20, 1<<20)
	a, b, cc := chunks[0], chunks[1], chunks[2]
	// Room on disk for two needles and their tables, in memory for all.
	c := newCache(t, f, diskOpts(t.TempDir(), 8<<20, 2<<20+256<<10))
	read := func(ch needle.Chunk) {
		t.Helper()
		require.Equal(t, f.chunks[ch.FileID], readAll(t, c, ch, Sequential))
		if w := c.disk.written(ch.Key()); w != nil {
			<-w
		}
	}
	read(a)
	read(b)
	require.True(t, c.disk.hasData(a.Key()) && c.disk.hasData(b.Key()), "a and b on disk")
	wholes := f.wholes.Load()
	read(a) // from memory alone
	require.Equal(t, wholes, f.wholes.Load(), "a was fetched again")
	read(cc) // evicts the least recently used: b
	require.True(t, c.disk.hasData(a.Key()), "a, read from memory after b, was evicted before b")
	require.False(t, c.disk.hasData(b.Key()), "b stayed")
	require.True(t, c.disk.hasData(cc.Key()))
}
