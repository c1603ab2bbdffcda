package fs

import (
	"context"
	"sync"
)

// ctxMutex is a mutex whose lock gives up when the caller's context ends.
// Its zero value is unlocked; it must not be copied after first use.
type ctxMutex struct {
	once sync.Once
	// slot holds a value while the mutex is locked. Made at first use, so
	// that the zero value works.
	slot chan struct{}
}

// lock locks m, or returns ctx's error once ctx is done first.
func (m *ctxMutex) lock(ctx context.Context) error {
	m.once.Do(func() { m.slot = make(chan struct{}, 1) })
	// A free mutex is taken whatever ctx says: select would pick between
	// a free slot and a done ctx at random.
	select {
	case m.slot <- struct{}{}:
		return nil
	default:
	}
	select {
	case m.slot <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// unlock unlocks m, which must be locked.
func (m *ctxMutex) unlock() { <-m.slot }
