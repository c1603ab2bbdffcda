package volume

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// fetchRange is Fetch of a Range request: it reads the logical bytes
// [off, off+total) of a plain chunk (see needle.Chunk.Plain) with one ranged GET
// per attempt, into dsts in order, and returns how many it wrote: fewer
// than dsts hold only at the chunk's end. Replicas, retries and JWTs are as
// for a whole needle.
//
// Nothing here can verify the bytes: SeaweedFS keeps no checksum over a
// range (see the package doc). The caller checks them against what it
// knows (a table of block checksums made when the needle was once read
// whole) or counts them as unverified. A server that ignores the Range
// header and answers the whole needle is checked as a whole needle is.
// A chunk that is not plain is refused: its stored bytes cannot be cut.
func (r *Reader) fetchRange(ctx context.Context, c needle.Chunk, off int64, dsts [][]byte) (int, error) {
	if !c.Plain() {
		return 0, fmt.Errorf("read range of chunk %s: not plain bytes: %w", c.FileID, needle.ErrNotServed)
	}
	if err := c.CheckSize(); err != nil {
		return 0, fmt.Errorf("read range: %w", err)
	}
	total := int64(0)
	for _, d := range dsts {
		total += int64(len(d))
	}
	if off < 0 || off > c.Size {
		return 0, fmt.Errorf("read range of chunk %s: offset %d outside its %d bytes", c.FileID, off, c.Size)
	}
	want := min(total, c.Size-off)
	if want == 0 {
		return 0, nil
	}
	dsts = trimPieces(dsts, want)
	vid, _, _, err := needle.ParseFileID(c.FileID)
	if err != nil {
		r.failed.Add(1)
		return 0, fmt.Errorf("read range: %w", err)
	}
	rng := "bytes=" + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+want-1, 10)
	err = r.withReplicas(ctx, vid, c.FileID, func(ctx context.Context, addr string) error {
		return r.request(ctx, addr, c, rng, func(resp *http.Response, body io.Reader) error {
			switch resp.StatusCode {
			case http.StatusPartialContent:
			case http.StatusOK: // the whole needle after all: check it whole
				logical, err := r.readNeedle(c, resp, body)
				if err != nil {
					return err
				}
				needle.Scatter(dsts, logical[off:])
				return nil
			default:
				return &statusError{code: resp.StatusCode, status: resp.Status}
			}
			if ce := resp.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
				return fmt.Errorf("ranged answer with Content-Encoding %q: %w", ce, needle.ErrCorrupt)
			}
			if err := checkContentRange(resp.Header.Get("Content-Range"), off, want, c.Size); err != nil {
				return err
			}
			if resp.ContentLength >= 0 && resp.ContentLength != want {
				return fmt.Errorf("ranged answer of %d bytes, %d asked for: %w", resp.ContentLength, want, needle.ErrCorrupt)
			}
			for _, dst := range dsts {
				if got, err := io.ReadFull(body, dst); err != nil {
					return fmt.Errorf("ranged body ended %d bytes into a %d-byte piece: %w", got, len(dst), unexpectedEOF(err))
				}
			}
			r.rangeFetches.Add(1)
			r.rangeBytes.Add(want)
			return nil
		})
	})
	if err != nil {
		r.failed.Add(1)
		return 0, err
	}
	r.reads.Add(1)
	r.bytes.Add(want)
	return int(want), nil
}

// checkContentRange checks that a 206 answer holds exactly the bytes asked
// for, of a needle at least size long: "bytes FIRST-LAST/TOTAL".
func checkContentRange(h string, off, n, size int64) error {
	spec, ok := strings.CutPrefix(h, "bytes ")
	first, rest, ok2 := strings.Cut(spec, "-")
	last, totalS, ok3 := strings.Cut(rest, "/")
	if !ok || !ok2 || !ok3 {
		return fmt.Errorf("ranged answer with Content-Range %q: %w", h, needle.ErrCorrupt)
	}
	f, err1 := strconv.ParseInt(first, 10, 64)
	l, err2 := strconv.ParseInt(last, 10, 64)
	if err1 != nil || err2 != nil || f != off || l != off+n-1 {
		return fmt.Errorf("ranged answer with Content-Range %q, want bytes %d-%d: %w", h, off, off+n-1, needle.ErrCorrupt)
	}
	if totalS != "*" {
		if t, err := strconv.ParseInt(totalS, 10, 64); err != nil || t < size {
			return fmt.Errorf("ranged answer with Content-Range %q for a %d-byte chunk: %w", h, size, needle.ErrCorrupt)
		}
	}
	return nil
}
