package volume

import (
	"slices"
	"sync"
	"time"
)

// A replica that failed sits out a cooldown that starts short and doubles
// with each further failure, so a dead server costs one failed request per
// cooldown rather than a timeout on every read, and a briefly sick one is
// back within a second.
const (
	penaltyBase = 500 * time.Millisecond
	penaltyMax  = 30 * time.Second
)

// penaltyBox orders a volume's replicas so that recently failed ones are
// tried last. It is safe for concurrent use.
type penaltyBox struct {
	mu sync.RWMutex
	// boxed holds the addresses that failed since their last success.
	boxed map[string]penalty
}

type penalty struct {
	failures int
	lastFail time.Time
	until    time.Time
}

func newPenaltyBox() *penaltyBox {
	return &penaltyBox{boxed: map[string]penalty{}}
}

// order returns addrs with the replicas still cooling down moved to the
// end, least recently failed first: when every replica is in the box, the
// one that has had longest to recover is tried first. The Locator's order
// is kept otherwise. addrs itself is returned, unchanged and not copied,
// when none is in the box, which is the common case.
func (b *penaltyBox) order(addrs []string, now time.Time) []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	inBox := func(addr string) bool {
		p, ok := b.boxed[addr]
		return ok && now.Before(p.until)
	}
	if len(b.boxed) == 0 || !slices.ContainsFunc(addrs, inBox) {
		return addrs
	}
	ordered := make([]string, 0, len(addrs))
	var cooling []string
	for _, addr := range addrs {
		if inBox(addr) {
			cooling = append(cooling, addr)
		} else {
			ordered = append(ordered, addr)
		}
	}
	slices.SortStableFunc(cooling, func(x, y string) int {
		return b.boxed[x].lastFail.Compare(b.boxed[y].lastFail)
	})
	return append(ordered, cooling...)
}

// fail boxes addr for a cooldown that doubles with each failure since its
// last success.
func (b *penaltyBox) fail(addr string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.boxed[addr]
	p.failures++
	// The shift stops growing once past the cap (500ms << 6 = 32s), so it
	// cannot overflow however long a replica stays dead.
	cooldown := min(penaltyBase<<min(p.failures-1, 6), penaltyMax)
	p.lastFail = now
	p.until = now.Add(cooldown)
	b.boxed[addr] = p
}

// succeed lets addr out of the box and forgets its failures.
func (b *penaltyBox) succeed(addr string) {
	b.mu.RLock()
	_, ok := b.boxed[addr]
	b.mu.RUnlock()
	if !ok {
		return
	}
	b.mu.Lock()
	delete(b.boxed, addr)
	b.mu.Unlock()
}
