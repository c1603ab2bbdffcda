package pagecache

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// keptFetcher serves whole-needle requests the way volume.Reader's
// readRangeInto does: bytes before Off and after the Dsts go to the sink
// by Write, each Dst is filled and then handed to the sink by WriteKept
// (needle.KeptWriter: "Those stay unchanged until the fetch returns").
type keptFetcher struct {
	*fakeFetcher
	gate chan struct{} // holds sink-only (FillDisk) fetches halfway
}

func (f *keptFetcher) Fetch(ctx context.Context, r needle.Request) (int, error) {
	src := f.chunks[r.Chunk.FileID]
	if r.Range || r.Whole == nil {
		return f.fakeFetcher.Fetch(ctx, r)
	}
	f.calls.Add(1)
	w := r.Whole
	w.Reset()
	if len(r.Dsts) == 0 && f.gate != nil {
		w.Write(src[:len(src)/2])
		<-f.gate
		w.Write(src[len(src)/2:])
		return 0, nil
	}
	w.Write(src[:r.Off])
	off := r.Off
	n := 0
	for _, d := range r.Dsts {
		k := copy(d, src[off:])
		if kw, ok := w.(needle.KeptWriter); ok {
			kw.WriteKept(d[:k])
		} else {
			w.Write(d[:k])
		}
		off += int64(k)
		n += k
	}
	w.Write(src[off:])
	return n, nil
}

func diskCopyOK(t *testing.T, c *Cache, ch needle.Chunk, want []byte) bool {
	bs := c.opts.BlockSize
	var dsts [][]byte
	for o := int64(0); o < ch.Size; o += bs {
		dsts = append(dsts, make([]byte, min(bs, ch.Size-o)))
	}
	if !c.disk.read(ch.Key(), 0, dsts) {
		return false
	}
	return bytes.Equal(bytes.Join(dsts, nil), want)
}

// Blocks 1 and 2 held in memory, the needle not on disk: a sequential read
// from 0 claims [0, P1, P2, 3..15]; the disk writer keeps each block it is
// handed (WriteKept) and writes it later, so each passed block needs bytes
// of its own (a scratch buffer shared by both wrote the second's twice).
func TestPassedBlocksReachDiskIntact(t *testing.T) {
	for _, size := range []int{1 << 20, 4 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) { testPassedBlocksReachDisk(t, size) })
	}
}

func testPassedBlocksReachDisk(t *testing.T, size int) {
	ff, chunks := newFake(size)
	f := &keptFetcher{fakeFetcher: ff}
	ch := chunks[0]
	want := ff.chunks[ch.FileID]
	c := newCache(t, f, diskOpts(t.TempDir(), 32<<20, 256<<20))
	if got := readAll(t, c, ch, Sequential); !bytes.Equal(got, want) {
		t.Fatal("first read wrong")
	}
	c.rc.Wait()
	if !diskCopyOK(t, c, ch, want) {
		t.Fatal("first disk copy bad")
	}
	c.disk.drop(diskName(ch.Key()))
	for b := int64(0); b < int64(size>>16); b++ {
		if b != 1 && b != 2 {
			c.rc.Del(c.blockKey(ch, b))
		}
	}
	c.rc.Wait()
	if got := readAll(t, c, ch, Sequential); !bytes.Equal(got, want) {
		t.Fatal("second read: reader got wrong bytes")
	}
	c.rc.Wait()
	t.Logf("fetches %d, disk stats %+v", ff.calls.Load(), c.disk.stats())
	if !c.disk.hasData(ch.Key()) {
		t.Fatal("needle not on disk after the gapped fetch")
	}
	if !diskCopyOK(t, c, ch, want) {
		t.Fatalf("disk copy written by the gapped fetch fails its table; stats %+v", c.disk.stats())
	}
}

// A write of the needle is under way (FillDisk) while memory holds blocks
// 1 and 2: the reader's planWhole gets no sink, joins the write
// (fromWrite) and reads the disk tier into its dsts, passed blocks among
// them; had they shared bytes, disk.read would find a block failing its
// table and drop the good needle.
func TestJoinWriteWithPassedBlocks(t *testing.T) {
	ff, chunks := newFake(1 << 20)
	f := &keptFetcher{fakeFetcher: ff}
	ch := chunks[0]
	want := ff.chunks[ch.FileID]
	c := newCache(t, f, diskOpts(t.TempDir(), 32<<20, 256<<20))
	readAll(t, c, ch, Sequential)
	c.rc.Wait()
	c.disk.drop(diskName(ch.Key()))
	for b := int64(0); b < 16; b++ {
		if b != 1 && b != 2 {
			c.rc.Del(c.blockKey(ch, b))
		}
	}
	c.rc.Wait()
	f.gate = make(chan struct{})
	filled := make(chan error, 1)
	go func() { _, err := c.FillDisk(context.Background(), ch, true); filled <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for c.disk.written(ch.Key()) == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	before := ff.calls.Load()
	read := make(chan []byte, 1)
	go func() { read <- readAll(t, c, ch, Sequential) }()
	time.Sleep(100 * time.Millisecond)
	close(f.gate)
	if err := <-filled; err != nil {
		t.Fatal(err)
	}
	if got := <-read; !bytes.Equal(got, want) {
		t.Fatal("reader got wrong bytes")
	}
	c.rc.Wait()
	st := c.disk.stats()
	t.Logf("fetches by the read: %d; disk stats %+v; on disk: %v", ff.calls.Load()-before, st, c.disk.hasData(ch.Key()))
	if st.Corrupt != 0 || !c.disk.hasData(ch.Key()) {
		t.Fatalf("the fill's good needle was dropped as corrupt (corrupt=%d, on disk %v)", st.Corrupt, c.disk.hasData(ch.Key()))
	}
}

// Stress: gapped needles (random rc.Del), readers, Prefetch, Forget, a
// small arena, injected failures; every byte checked, every slot back.
func TestGappedStress(t *testing.T) {
	for _, capacity := range []int64{1 << 20, 4 << 20, 16 << 20} {
		f, chunks := newFake(3<<20, 2<<20, 1<<20+5, 700_000, 4<<20)
		c := newCache(t, f, Options{Capacity: capacity, BlockSize: 64 << 10, MaxFetch: 4 << 20, Prefetchers: 4})
		stop := make(chan struct{})
		var wg sync.WaitGroup
		// gap maker + forgetter
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(99, 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				ch := chunks[rng.IntN(len(chunks))]
				if rng.IntN(50) == 0 {
					c.Forget(ch)
				} else {
					c.rc.Del(c.blockKey(ch, rng.Int64N((ch.Size+65535)/65536)))
				}
				if rng.IntN(1000) == 0 {
					f.fail.Store(true)
					time.Sleep(time.Millisecond)
					f.fail.Store(false)
				}
				time.Sleep(50 * time.Microsecond)
			}
		}()
		var rwg sync.WaitGroup
		for w := 0; w < 8; w++ {
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), 9))
				for i := 0; i < 300; i++ {
					ch := chunks[rng.IntN(len(chunks))]
					off := rng.Int64N(ch.Size)
					dst := make([]byte, rng.IntN(1<<20)+1)
					if rng.IntN(3) == 0 {
						c.Prefetch(ch, off, int64(rng.IntN(2<<20)+1), MemoryAhead)
					}
					acc := []Access{Sequential, Buffered, Passing, Random}[rng.IntN(4)]
					n, err := c.ReadChunkAt(context.Background(), ch, off, dst, acc)
					if err != nil {
						continue
					}
					if want := f.chunks[ch.FileID][off : off+int64(n)]; !bytes.Equal(dst[:n], want) {
						t.Errorf("read %s at %d len %d: bytes differ", ch.FileID, off, len(dst))
						return
					}
				}
			}()
		}
		rwg.Wait()
		close(stop)
		wg.Wait()
		f.fail.Store(false)
		c.wg.Wait()
		c.rc.Wait()
		c.mu.Lock()
		for k, fe := range c.inflight {
			select {
			case <-fe.done:
			default:
				t.Errorf("entry %s still in flight after all fetches ended", k)
			}
			if !fe.prefetch {
				t.Errorf("demand entry %s left in inflight", k)
			}
			c.arena.release(fe.ref)
			delete(c.inflight, k)
		}
		c.mu.Unlock()
		c.rc.Clear()
		c.rc.Wait()
		if got, want := c.arena.freeSlots(), len(c.arena.slots); got != want {
			t.Errorf("capacity %d: free slots after emptying: got %d, want %d", capacity, got, want)
		}
		s := c.Stats()
		t.Logf("capacity %d: %+v", capacity, s)
	}
}

// Prefetch of a needle with one held block: the run's blocks past it are
// its own, in flight, and Prefetch must not spend a prefetcher on each
// (it held all four until the fetch ended, and readahead stopped).
func TestPrefetchSkipsInFlight(t *testing.T) {
	f, chunks := newFake(4 << 20)
	ch := chunks[0]
	c := newCache(t, f, Options{Capacity: 64 << 20, BlockSize: 256 << 10, MaxFetch: 8 << 20, Prefetchers: 4})
	readWholeOf(t, c, ch)
	for b := int64(0); b < 16; b++ {
		if b != 1 {
			c.rc.Del(c.blockKey(ch, b))
		}
	}
	c.rc.Wait()
	f.gate = make(chan struct{})
	got := c.Prefetch(ch, 0, ch.Size, MemoryAhead)
	t.Logf("Prefetch got to %d of %d; tokens held %d of %d; fetches %d", got, ch.Size, len(c.prefetchSem), cap(c.prefetchSem), f.calls.Load())
	close(f.gate)
	if got != ch.Size {
		t.Errorf("Prefetch stopped at %d: tokens spent joining its own run", got)
	}
}

func readWholeOf(t *testing.T, c *Cache, ch needle.Chunk) {
	buf := make([]byte, ch.Size)
	if n, err := c.ReadChunk(context.Background(), ch, 0, buf); err != nil || int64(n) != ch.Size {
		t.Fatal(n, err)
	}
	c.rc.Wait()
}
