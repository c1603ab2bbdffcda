package rdma

import (
	"context"
	"fmt"
	"sync"
)

// slotPool hands out the indices of an arena's fixed-size slots. Acquire
// blocks (the client bounds its in-flight reads with it); tryAcquire does
// not (the server answers busy instead of queueing). Safe for concurrent use.
type slotPool struct {
	free chan int // every index not handed out is in free exactly once

	mu   sync.Mutex
	used []bool // guarded by mu; catches a double release, which would hand one slot to two readers
}

func newSlotPool(n int) *slotPool {
	p := &slotPool{free: make(chan int, n), used: make([]bool, n)}
	for i := 0; i < n; i++ {
		p.free <- i
	}
	return p
}

func (p *slotPool) size() int { return len(p.used) }

func (p *slotPool) acquire(ctx context.Context) (int, error) {
	select {
	case i := <-p.free:
		p.mark(i)
		return i, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for an arena slot: %w", ctx.Err())
	}
}

func (p *slotPool) tryAcquire() (int, bool) {
	select {
	case i := <-p.free:
		p.mark(i)
		return i, true
	default:
		return 0, false
	}
}

func (p *slotPool) mark(i int) {
	p.mu.Lock()
	p.used[i] = true
	p.mu.Unlock()
}

// release returns slot i. Releasing a slot that is not handed out is a
// programming error that would corrupt reads, so it panics.
func (p *slotPool) release(i int) {
	p.mu.Lock()
	if !p.used[i] {
		p.mu.Unlock()
		panic(fmt.Sprintf("rdma: slot %d released twice", i))
	}
	p.used[i] = false
	p.mu.Unlock()
	p.free <- i
}
