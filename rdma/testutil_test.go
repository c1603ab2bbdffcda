package rdma

import (
	"context"
	"hash/crc32"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
)

var timeZero time.Time

// staticLocator places every volume on the same volume servers. It serves
// both the Client and volume.Reader (which also invalidates).
type staticLocator []string

func (l staticLocator) Locations(context.Context, uint32) ([]string, error) { return l, nil }

func (l staticLocator) Invalidate(uint32) {}

// readChunk fetches [off, off+len(dst)) of ch into dst through f, the
// Client or the HTTP reader.
func readChunk(f interface {
	Fetch(context.Context, needle.Request) (int, error)
}, ctx context.Context, ch needle.Chunk, off int64, dst []byte) (int, error) {
	return f.Fetch(ctx, needle.Request{Chunk: ch, Off: off, Dsts: [][]byte{dst}})
}

// castagnoli and stdCRC are hash/crc32's CRC32C, the reference that
// needle.CRC32C's pick is measured and checked against.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func stdCRC(crc uint32, p []byte) uint32 { return crc32.Update(crc, castagnoli, p) }
