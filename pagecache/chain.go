package pagecache

import (
	"context"
	"errors"
	"fmt"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// Fetcher fetches what a needle.Request asks: it fills r.Dsts in order and
// returns how many bytes it wrote, fewer than r.Len() only when the chunk
// ends first. A fetcher that cannot serve the request (the chunk at all,
// or a Range) returns an error wrapping needle.ErrNotServed, so that a
// Chain asks its next step; one that cannot tee serves r.Dsts and leaves
// r.Whole empty, which the cache then does not keep. Implementations must
// be safe for concurrent use.
type Fetcher interface {
	Fetch(ctx context.Context, r needle.Request) (int, error)
}

// Chain tries its fetchers in order (RDMA, then HTTP): a step answering
// needle.ErrNotServed passes the request on to the next; any other error
// ends it. A Chain is safe for concurrent use when its steps are.
type Chain []Fetcher

// Fetch implements Fetcher.
func (ch Chain) Fetch(ctx context.Context, r needle.Request) (int, error) {
	// The steps' refusals, for the error when none serves. Held on the
	// stack: an RDMA step refuses every Range, and its refusal must cost
	// the HTTP step that serves it no allocation.
	var buf [4]error
	errs := buf[:0]
	for _, f := range ch {
		n, err := f.Fetch(ctx, r)
		if err == nil || !errors.Is(err, needle.ErrNotServed) {
			return n, err
		}
		errs = append(errs, err)
	}
	return 0, fmt.Errorf("read chunk %s: no fetcher could serve it: %w", r.Chunk.FileID, errors.Join(errs...))
}
