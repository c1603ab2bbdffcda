package fs

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func TestDatasetRounds(t *testing.T) {
	name := func(i int) string { return fmt.Sprintf("f%04d", i) }
	var d dataset
	var rounds []string
	open := func(i int) {
		if from, due := d.opened(name(i)); due {
			rounds = append(rounds, from)
			// A round over the 32 files after from: the next is due at
			// its middle, and goes on after its end.
			var j int
			fmt.Sscanf(from, "f%04d", &j)
			d.done(name(j+16), name(j+32))
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

// A shuffled order over a whole directory starts a scan, and after it no
// listing-order rounds, which a tenth of its opens would start by chance;
// they start again if the scan stops short.
func TestDatasetShuffledScan(t *testing.T) {
	var d dataset
	rounds, scans := 0, 0
	for _, i := range rand.New(rand.NewPCG(1, 2)).Perm(8192) {
		if _, due := d.opened(fmt.Sprintf("f%06d", i)); due {
			rounds++
			d.done(fmt.Sprintf("f%06d", i+16), fmt.Sprintf("f%06d", i+32))
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
		if _, due := d.opened(fmt.Sprintf("g%06d", i)); due {
			rounds++
			d.done(fmt.Sprintf("g%06d", i+16), fmt.Sprintf("g%06d", i+32))
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
