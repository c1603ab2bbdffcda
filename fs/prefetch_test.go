package fs

import (
	"fmt"
	"testing"
)

func TestDatasetRounds(t *testing.T) {
	name := func(i int) string { return fmt.Sprintf("f%04d", i) }
	var d dataset
	var rounds []string
	open := func(i int) {
		if from, due := d.opened(name(i)); due {
			rounds = append(rounds, from)
			// A round over the next 32 files: the next is due at the middle.
			d.done(name(i + 16))
		}
	}
	for i := 0; i < 40; i++ {
		open(i)
	}
	if got, want := fmt.Sprint(rounds), "[f0002 f0018 f0034]"; got != want {
		t.Errorf("first epoch: rounds %s, want %s", got, want)
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
