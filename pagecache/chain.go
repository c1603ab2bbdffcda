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

// scatterFetcher is a Fetcher that can fill several buffers in order, so
// that a run of blocks lands straight in its slots. Safe for concurrent use.
type scatterFetcher interface {
	ReadChunkInto(ctx context.Context, c volume.Chunk, off int64, dsts [][]byte) (int, error)
}

// teeFetcher is a scatterFetcher that can also hand the needle's whole
// logical bytes, verified before it returns nil, to a sink: the disk tier
// keeps the needle while the memory tier keeps the run it asked for. Safe
// for concurrent use.
type teeFetcher interface {
	ReadChunkTee(ctx context.Context, c volume.Chunk, off int64, dsts [][]byte, whole volume.NeedleSink) (int, error)
}

// rangeFetcher reads just a byte range of a plain chunk, which it cannot
// verify; the cache checks it against a block table or counts it as
// unverified. Chunks it cannot cut answer volume.ErrNotServed. Safe for
// concurrent use.
type rangeFetcher interface {
	ReadRange(ctx context.Context, c volume.Chunk, off int64, dsts [][]byte) (int, error)
}

// readIntoTee is readInto that also fills sink with the whole needle when
// f can tee. Otherwise sink is left empty, and so never committed.
func readIntoTee(ctx context.Context, f Fetcher, c volume.Chunk, off int64, dsts [][]byte, sink volume.NeedleSink) (int, error) {
	if tf, ok := f.(teeFetcher); ok && sink != nil {
		return tf.ReadChunkTee(ctx, c, off, dsts, sink)
	}
	n, err := readInto(ctx, f, c, off, dsts)
	if sink != nil {
		sink.Reset()
	}
	return n, err
}

// readInto fills dsts from f: straight when f can scatter (which it is
// asked to even for one buffer, since a scattering fetcher streams into
// the caller's memory), otherwise through one buffer and a copy.
func readInto(ctx context.Context, f Fetcher, c volume.Chunk, off int64, dsts [][]byte) (int, error) {
	if sf, ok := f.(scatterFetcher); ok {
		return sf.ReadChunkInto(ctx, c, off, dsts)
	}
	if len(dsts) == 1 {
		return f.ReadChunk(ctx, c, off, dsts[0])
	}
	total := 0
	for _, d := range dsts {
		total += len(d)
	}
	buf := make([]byte, total)
	n, err := f.ReadChunk(ctx, c, off, buf)
	if err != nil {
		return 0, err
	}
	rest := buf[:n]
	for _, d := range dsts {
		rest = rest[copy(d, rest):]
	}
	return n, nil
}

// Chain tries its fetchers in order (RDMA, then HTTP): a step answering
// volume.ErrNotServed passes the read on to the next; any other error ends
// the read. A Chain is safe for concurrent use when its steps are.
type Chain []Fetcher

// ReadChunkInto is ReadChunk into several buffers, each step scattering if
// it can.
func (ch Chain) ReadChunkInto(ctx context.Context, c volume.Chunk, off int64, dsts [][]byte) (int, error) {
	var errs []error
	for _, f := range ch {
		n, err := readInto(ctx, f, c, off, dsts)
		if err == nil || !errors.Is(err, volume.ErrNotServed) {
			return n, err
		}
		errs = append(errs, err)
	}
	return 0, fmt.Errorf("read chunk %s: no fetcher could serve it: %w", c.FileID, errors.Join(errs...))
}

// ReadChunkTee is ReadChunkInto that tees the whole needle into sink
// where the serving step can.
func (ch Chain) ReadChunkTee(ctx context.Context, c volume.Chunk, off int64, dsts [][]byte, sink volume.NeedleSink) (int, error) {
	var errs []error
	for _, f := range ch {
		n, err := readIntoTee(ctx, f, c, off, dsts, sink)
		if err == nil || !errors.Is(err, volume.ErrNotServed) {
			return n, err
		}
		errs = append(errs, err)
	}
	return 0, fmt.Errorf("read chunk %s: no fetcher could serve it: %w", c.FileID, errors.Join(errs...))
}

// ReadRange asks the steps that read ranges, in order.
func (ch Chain) ReadRange(ctx context.Context, c volume.Chunk, off int64, dsts [][]byte) (int, error) {
	var errs []error
	for _, f := range ch {
		rf, ok := f.(rangeFetcher)
		if !ok {
			continue
		}
		n, err := rf.ReadRange(ctx, c, off, dsts)
		if err == nil || !errors.Is(err, volume.ErrNotServed) {
			return n, err
		}
		errs = append(errs, err)
	}
	return 0, fmt.Errorf("read range of chunk %s: no fetcher reads ranges: %w", c.FileID, errors.Join(append(errs, volume.ErrNotServed)...))
}

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
