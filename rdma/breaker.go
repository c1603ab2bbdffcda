package rdma

import (
	"math/rand/v2"
	"sync"
	"time"
)

// breaker is a per-peer circuit breaker. After threshold consecutive
// failures it opens: allow answers false at once, so a sick path costs a
// read nothing but an ErrNotServed. After the cooldown one probe read is let
// through (half-open); its success closes the breaker, its failure opens it
// again with the cooldown doubled, up to maxCooldown. Safe for concurrent use.
type breaker struct {
	threshold   int
	minCooldown time.Duration
	maxCooldown time.Duration
	now         func() time.Time

	mu       sync.Mutex
	failures int           // guarded by mu: consecutive failures while closed
	open     bool          // guarded by mu
	until    time.Time     // guarded by mu: while open, allow is false before until
	cooldown time.Duration // guarded by mu: the current open period
	probing  bool          // guarded by mu: a half-open probe is in flight
}

func newBreaker(threshold int, minCooldown, maxCooldown time.Duration) *breaker {
	return &breaker{threshold: threshold, minCooldown: minCooldown, maxCooldown: maxCooldown,
		now: time.Now, cooldown: minCooldown}
}

// allow reports whether a read may use this path now.
func (b *breaker) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return true
	}
	if b.probing || b.now().Before(b.until) {
		return false
	}
	b.probing = true
	return true
}

func (b *breaker) success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures, b.open, b.probing, b.cooldown = 0, false, false, b.minCooldown
}

func (b *breaker) failure() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open {
		if b.probing { // the probe failed: stay open, longer
			b.probing = false
			b.cooldown = min(2*b.cooldown, b.maxCooldown)
			b.until = b.now().Add(b.cooldown)
		}
		return
	}
	b.failures++
	if b.failures >= b.threshold {
		b.open = true
		b.until = b.now().Add(b.cooldown)
	}
}

// abandon ends an admitted read that says nothing about the path's health
// (the caller gave up, or the server answered an error of its own).
func (b *breaker) abandon() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// halfOpen ends an open breaker's cooldown now: the next allow admits one
// probe. The peer calls it when a connection comes up, which makes the
// cooldown that grew while the server was unreachable moot; if the probe
// fails the breaker stays open with the cooldown doubled, as after any
// failed probe.
func (b *breaker) halfOpen() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open && !b.probing {
		b.until = b.now()
	}
}

// isOpen reports the state for Stats.
func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

// backoff yields reconnect delays: exponential from min to max with ±25 %
// jitter, so that many mounts do not reconnect to a restarted server in step.
// Not safe for concurrent use; each peer's connect loop owns one.
type backoff struct {
	min, max time.Duration
	next     time.Duration
}

func (b *backoff) delay() time.Duration {
	if b.next < b.min {
		b.next = b.min
	}
	d := b.next
	b.next = min(2*b.next, b.max)
	j := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return d + j
}

func (b *backoff) reset() { b.next = 0 }
