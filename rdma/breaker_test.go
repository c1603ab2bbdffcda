package rdma

import (
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBreaker(3, time.Second, 4*time.Second)
	b.now = func() time.Time { return now }
	for i := 0; i < 2; i++ {
		b.failure()
	}
	if !b.allow() || b.isOpen() {
		t.Fatal("opened before the threshold")
	}
	b.success() // resets the count
	for i := 0; i < 2; i++ {
		b.failure()
	}
	if b.isOpen() {
		t.Fatal("success did not reset the failure count")
	}
	b.failure()
	if b.allow() || !b.isOpen() {
		t.Fatal("not open after 3 consecutive failures")
	}
	now = now.Add(time.Second)
	if !b.allow() {
		t.Fatal("no probe after the cooldown")
	}
	if b.allow() {
		t.Fatal("two probes at once")
	}
	b.failure() // probe failed: cooldown doubles to 2 s
	now = now.Add(1500 * time.Millisecond)
	if b.allow() {
		t.Fatal("allowed before the doubled cooldown")
	}
	now = now.Add(time.Second)
	if !b.allow() {
		t.Fatal("no probe after the doubled cooldown")
	}
	b.abandon() // a probe that says nothing frees the probe slot
	if !b.allow() {
		t.Fatal("abandoned probe kept the breaker blocked")
	}
	b.success()
	if !b.allow() || b.isOpen() {
		t.Fatal("successful probe did not close the breaker")
	}
	// The cooldown is capped.
	for i := 0; i < 3; i++ {
		b.failure()
	}
	for i := 0; i < 5; i++ {
		now = now.Add(10 * time.Second)
		if !b.allow() {
			t.Fatalf("round %d: no probe 10 s after opening (cap 4 s)", i)
		}
		b.failure()
	}
}

// TestBreakerHalfOpen: a reconnect ends the cooldown at once, whatever it
// grew to while the server was down; a failed probe then reopens it.
func TestBreakerHalfOpen(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBreaker(3, time.Second, 30*time.Second)
	b.now = func() time.Time { return now }
	b.halfOpen() // closed: nothing to do
	if !b.allow() || b.isOpen() {
		t.Fatal("halfOpen changed a closed breaker")
	}
	for i := 0; i < 3; i++ {
		b.failure()
	}
	for i := 0; i < 4; i++ { // failed probes: the cooldown grows to 16 s
		now = now.Add(30 * time.Second)
		if !b.allow() {
			t.Fatal("no probe after the cooldown")
		}
		b.failure()
	}
	now = now.Add(time.Second)
	if b.allow() {
		t.Fatal("probe allowed inside the cooldown")
	}
	b.halfOpen()
	if !b.allow() {
		t.Fatal("no probe right after halfOpen")
	}
	if b.allow() {
		t.Fatal("two probes at once after halfOpen")
	}
	b.halfOpen() // a probe is in flight: it decides, not halfOpen
	if b.allow() {
		t.Fatal("halfOpen admitted a second probe")
	}
	b.failure()
	if b.allow() || !b.isOpen() {
		t.Fatal("failed probe after halfOpen did not reopen the breaker")
	}
	b.halfOpen()
	b.allow()
	b.success()
	if b.isOpen() || !b.allow() {
		t.Fatal("successful probe after halfOpen did not close the breaker")
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	prev := time.Duration(0)
	for i := 0; i < 10; i++ {
		d := b.delay()
		if d < 75*time.Millisecond || d > 1250*time.Millisecond {
			t.Fatalf("delay %d = %v out of [min-25%%, max+25%%]", i, d)
		}
		if i < 3 && d < prev/2 {
			t.Fatalf("delay %d = %v did not grow from %v", i, d, prev)
		}
		prev = d
	}
	b.reset()
	if d := b.delay(); d > 125*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}
