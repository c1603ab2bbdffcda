package pagecache

import (
	"context"
	"errors"
	"fmt"

	"github.com/weedfuse/weedfuse/internal/volume"
)

// Fetcher reads the logical bytes [off, off+len(dst)) of one chunk into dst
// and returns how many it wrote; fewer than len(dst) only when the chunk ends
// first. Implementations must be safe for concurrent use. A fetcher that
// cannot serve a chunk at all returns an error wrapping volume.ErrNotServed.
type Fetcher interface {
	ReadChunk(ctx context.Context, c volume.Chunk, off int64, dst []byte) (int, error)
}

// Chain tries its fetchers in order (RDMA, then HTTP): a step answering
// volume.ErrNotServed passes the read on to the next; any other error ends
// the read. A Chain is safe for concurrent use when its steps are.
type Chain []Fetcher

// ReadChunk implements Fetcher.
func (ch Chain) ReadChunk(ctx context.Context, c volume.Chunk, off int64, dst []byte) (int, error) {
	var errs []error
	for _, f := range ch {
		n, err := f.ReadChunk(ctx, c, off, dst)
		if err == nil || !errors.Is(err, volume.ErrNotServed) {
			return n, err
		}
		errs = append(errs, err)
	}
	return 0, fmt.Errorf("read chunk %s: no fetcher could serve it: %w", c.FileID, errors.Join(errs...))
}
