package fs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/internal/needle"
	"github.com/weedfuse/weedfuse/pagecache"
)

func TestDatasetRounds(t *testing.T) {
	name := func(i int) string { return fmt.Sprintf("f%04d", i) }
	var d dataset
	var rounds []string
	open := func(i int) {
		if from, _, due := d.opened(name(i)); due {
			rounds = append(rounds, from)
			// A round over the 32 files after from: the next is due at
			// its middle, and goes on after its end.
			var j int
			fmt.Sscanf(from, "f%04d", &j)
			d.done(name(j+16), name(j+32), 16)
		}
	}
	for i := 0; i < 40; i++ {
		open(i)
	}
	// The second round starts where the first ended, not at the reader.
	if got, want := fmt.Sprint(rounds), "[f0002 f0034]"; got != want {
		t.Errorf("first epoch: rounds %s, want %s", got, want)
	}
	for i := 40; i < 60; i++ {
		open(i)
	}
	if got, want := fmt.Sprint(rounds), "[f0002 f0034 f0066]"; got != want {
		t.Errorf("first epoch, on: rounds %s, want %s", got, want)
	}
	rounds = nil
	open(0) // the next epoch starts over
	open(1)
	if got, want := fmt.Sprint(rounds), "[f0000]"; got != want {
		t.Errorf("second epoch: rounds %s, want %s", got, want)
	}

	// Four workers interleaving their opens still make a walk.
	d, rounds = dataset{}, nil
	for i := 0; i < 64; i += 4 {
		for _, j := range []int{3, 0, 1, 2} {
			open(i + j)
		}
	}
	if len(rounds) < 3 {
		t.Errorf("interleaved workers: %d rounds, want at least 3", len(rounds))
	}

	// A shuffled order is not a walk.
	d, rounds = dataset{}, nil
	for _, i := range []int{9, 3, 7, 1, 8, 2, 6, 0, 5, 4, 12, 10, 15, 11, 14, 13} {
		open(i)
	}
	if len(rounds) != 0 {
		t.Errorf("shuffled: rounds %v, want none", rounds)
	}
}

// TestDatasetRoundStart: where a due round starts, and with how many
// bytes, given the last round (started by the open of f0002, next due at
// f0018, its files fetched up to f0034, 24 MiB of them from f0018 on).
func TestDatasetRoundStart(t *testing.T) {
	name := func(i int) string { return fmt.Sprintf("f%04d", i) }
	const tail = 24 << 20
	for _, tc := range []struct {
		name string
		end  string // the last round's end
		open int
		due  bool
		from string
		// budget is the round's bytes.
		budget uint64
	}{
		{"at the middle", name(34), 18, true, name(34), datasetAheadBytes - tail},
		{"between the middle and the end", name(34), 25, true, name(34), datasetAheadBytes - tail},
		{"at the end", name(34), 34, true, name(34), datasetAheadBytes},
		{"past the end", name(34), 40, true, name(40), datasetAheadBytes},
		{"before the middle", name(34), 10, false, "", 0},
		{"a new epoch", name(34), 0, true, name(0), datasetAheadBytes},
		{"the last round left files behind", "", 20, true, name(20), datasetAheadBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := dataset{last: name(tc.open - 1), streak: 10, from: name(2), ahead: name(18), end: tc.end, tail: tail}
			if tc.open == 0 {
				d.last = name(40) // the reader starts over
				d.streak = 20
			}
			from, budget, due := d.opened(name(tc.open))
			if due != tc.due || from != tc.from || budget != tc.budget {
				t.Errorf("opened(%s) = %q, %d, %v; want %q, %d, %v", name(tc.open), from, budget, due, tc.from, tc.budget, tc.due)
			}
		})
	}
}

// A failed round leaves ahead empty: the next open in listing order
// starts another, from the reader.
func TestDatasetRoundFailed(t *testing.T) {
	d := dataset{last: "f0019", streak: 10}
	if _, _, due := d.opened("f0020"); !due {
		t.Fatal("no round for a walk")
	}
	d.done("", "", 0)
	from, _, due := d.opened("f0021")
	if !due || from != "f0021" {
		t.Errorf("after a failed round: opened(f0021) = %q, %v; want a round from f0021", from, due)
	}
}

// A shuffled order over a whole directory starts a scan, and after it no
// listing-order rounds, which a tenth of its opens would start by chance;
// they start again if the scan stops short.
func TestDatasetShuffledScan(t *testing.T) {
	var d dataset
	rounds, scans := 0, 0
	for _, i := range rand.New(rand.NewPCG(1, 2)).Perm(8192) {
		if from, _, due := d.opened(fmt.Sprintf("f%06d", i)); due {
			rounds++
			var j int
			fmt.Sscanf(from, "f%06d", &j)
			d.done(fmt.Sprintf("f%06d", j+16), fmt.Sprintf("f%06d", j+32), 16)
		}
		if d.scanDue() {
			scans++
		}
	}
	if scans != 1 || rounds > 8 {
		t.Errorf("shuffled epoch: %d scans, %d rounds; want 1 scan and a few rounds at most, before it", scans, rounds)
	}
	d.scanStopped()
	rounds = 0
	for i := range 40 {
		if from, _, due := d.opened(fmt.Sprintf("g%06d", i)); due {
			rounds++
			var j int
			fmt.Sscanf(from, "g%06d", &j)
			d.done(fmt.Sprintf("g%06d", j+16), fmt.Sprintf("g%06d", j+32), 16)
		}
	}
	if rounds == 0 {
		t.Errorf("after a scan stopped short: no rounds for a walk")
	}
}

// A directory scanned to its end is not scanned again for scanAgain, under
// a new dir node too (the kernel forgets directories when caches drop);
// the log starts over rather than grow past scanLogMax.
func TestScanLog(t *testing.T) {
	var l scanLog
	if l.recent("/ds") {
		t.Fatal("an empty log knows /ds")
	}
	l.record("/ds")
	if !l.recent("/ds") || l.recent("/other") {
		t.Fatal("the log does not hold exactly /ds")
	}
	l.done["/ds"] = time.Now().Add(-scanAgain - time.Second)
	if l.recent("/ds") {
		t.Error("a scan older than scanAgain still counts")
	}
	for i := range scanLogMax + 1 {
		l.record(fmt.Sprintf("/d%d", i))
	}
	if len(l.done) > scanLogMax {
		t.Errorf("the log holds %d directories, more than %d", len(l.done), scanLogMax)
	}
}

// fillFake is a ChunkReader whose FillDisk answers as told, and which
// counts Prefetch calls; nothing else of it is called.
type fillFake struct {
	ChunkReader
	wrote      []bool  // FillDisk's answers, chunk by chunk
	errs       []error // likewise
	fills      int
	prefetches int
}

func (f *fillFake) FillDisk(ctx context.Context, c needle.Chunk, evict bool) (bool, error) {
	i := f.fills
	f.fills++
	return f.wrote[i], f.errs[i]
}

func (f *fillFake) Prefetch(c needle.Chunk, off, n int64, ahead pagecache.Ahead) int64 {
	f.prefetches++
	return off + n
}

// TestFillFile: a chunk that the fill just wrote is not asked for again
// (its pages are in the page cache); one found on disk, or sent to memory
// when the disk cache has no room, is; a failed fill ends the file.
func TestFillFile(t *testing.T) {
	noRoom := fmt.Errorf("fill: %w", pagecache.ErrNoRoom)
	boom := errors.New("boom")
	for _, tc := range []struct {
		name       string
		chunks     int
		wrote      []bool
		errs       []error
		pages      bool
		fills      int
		prefetches int
		err        error
	}{
		{"just written", 1, []bool{true}, []error{nil}, true, 1, 0, nil},
		{"on disk already", 1, []bool{false}, []error{nil}, true, 1, 1, nil},
		{"no room", 1, []bool{false}, []error{noRoom}, true, 1, 1, pagecache.ErrNoRoom},
		{"failed", 1, []bool{false}, []error{boom}, true, 1, 0, boom},
		{"disk only", 1, []bool{true}, []error{nil}, false, 1, 0, nil},
		// After no room, the rest of the file goes to memory unfilled.
		{"no room, then memory", 2, []bool{false, false}, []error{noRoom, nil}, true, 1, 2, pagecache.ErrNoRoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fillFake{wrote: tc.wrote, errs: tc.errs}
			fsys := New(oneFileMeta{}, fake, nil, Options{})
			const size = 64 << 10
			e := &filerpb.Entry{Name: "f", Attributes: &filerpb.FuseAttributes{FileMode: 0o644, FileSize: uint64(tc.chunks * size)}}
			for i := range tc.chunks {
				e.Chunks = append(e.Chunks, &filerpb.FileChunk{FileId: fmt.Sprintf("3,%x01020304", i+1), Offset: int64(i * size), Size: size})
			}
			err := fsys.fillFile(context.Background(), e, fillHow{disk: true, pages: tc.pages})
			if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("fillFile: %v, want %v", err, tc.err)
			}
			if fake.fills != tc.fills || fake.prefetches != tc.prefetches {
				t.Errorf("fills %d, prefetches %d; want %d and %d", fake.fills, fake.prefetches, tc.fills, tc.prefetches)
			}
		})
	}
}
