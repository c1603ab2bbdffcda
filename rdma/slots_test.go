package rdma

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSlotPool(t *testing.T) {
	p := newSlotPool(3)
	seen := map[int]bool{}
	for i := 0; i < 3; i++ {
		s, ok := p.tryAcquire()
		if !ok || seen[s] || s < 0 || s >= 3 {
			t.Fatalf("tryAcquire %d: slot %d ok=%v", i, s, ok)
		}
		seen[s] = true
	}
	if _, ok := p.tryAcquire(); ok {
		t.Fatal("tryAcquire succeeded on an empty pool")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire on empty pool: %v", err)
	}
	got := make(chan int)
	go func() {
		s, _ := p.acquire(context.Background())
		got <- s
	}()
	p.release(1)
	if s := <-got; s != 1 {
		t.Fatalf("blocked acquire got %d, want the released 1", s)
	}
	p.release(0)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("double release did not panic")
			}
		}()
		p.release(0)
	}()
}
