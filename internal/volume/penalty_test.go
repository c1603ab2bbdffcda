package volume

import (
	"slices"
	"testing"
	"time"
)

func TestPenaltyBoxOrder(t *testing.T) {
	b := newPenaltyBox()
	now := time.Now()
	addrs := []string{"a:1", "b:1", "c:1"}
	if got := b.order(addrs, now); &got[0] != &addrs[0] {
		t.Error("an empty box copied the addresses")
	}

	b.fail("a:1", now)
	if got := b.order(addrs, now); !slices.Equal(got, []string{"b:1", "c:1", "a:1"}) {
		t.Errorf("order %v: a failed replica should go last", got)
	}
	if !slices.Equal(addrs, []string{"a:1", "b:1", "c:1"}) {
		t.Error("order changed its argument")
	}

	// Everyone in the box: the one that failed longest ago goes first.
	b.fail("c:1", now.Add(time.Millisecond))
	b.fail("b:1", now.Add(2*time.Millisecond))
	if got := b.order(addrs, now.Add(3*time.Millisecond)); !slices.Equal(got, []string{"a:1", "c:1", "b:1"}) {
		t.Errorf("order %v, want least recently failed first", got)
	}

	// After the cooldown the Locator's order is back.
	if got := b.order(addrs, now.Add(penaltyBase+time.Second)); !slices.Equal(got, addrs) {
		t.Errorf("order %v after the cooldown", got)
	}

	b.succeed("a:1")
	if got := b.order(addrs, now.Add(3*time.Millisecond)); got[0] != "a:1" {
		t.Errorf("order %v: success should let a replica out", got)
	}
}

func TestPenaltyBoxCooldownGrows(t *testing.T) {
	b := newPenaltyBox()
	now := time.Now()
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		b.fail("a:1", now)
		if got := b.boxed["a:1"].until.Sub(now); got != w {
			t.Errorf("failure %d: cooldown %v, want %v", i+1, got, w)
		}
	}
	b.succeed("a:1")
	b.fail("a:1", now)
	if got := b.boxed["a:1"].until.Sub(now); got != penaltyBase {
		t.Errorf("cooldown %v after a success, want it reset to %v", got, penaltyBase)
	}
}
