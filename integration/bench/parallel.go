package main

import (
	"context"
	"sync"
)

// forEach calls fn(ctx, i) for every i in [0, n) on workers goroutines and
// returns once all calls have returned: the first error, or ctx's. After an
// error no new call starts.
func forEach(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	// Nil unless fn failed or the caller's ctx ended.
	return context.Cause(ctx)
}
