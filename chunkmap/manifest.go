package chunkmap

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/weedfuse/weedfuse/internal/filerpb"
)

// Errors Build wraps, with the manifest's file id, when manifests cannot be resolved.
var (
	ErrNoFetcher         = errors.New("manifest chunk but no fetcher")
	ErrManifestDepth     = fmt.Errorf("manifests nested deeper than %d", maxManifestDepth)
	ErrManifestCycle     = errors.New("manifest lists itself")
	ErrMalformedManifest = errors.New("malformed manifest")
	// ErrTooManyChunks: the chunk list, manifests expanded, holds more
	// entries than MaxChunks.
	ErrTooManyChunks = fmt.Errorf("chunk list expands to more than %d chunks", MaxChunks)
	// ErrTooManyManifests: the chunk list needs more than MaxManifests
	// distinct manifest blobs.
	ErrTooManyManifests = fmt.Errorf("chunk list needs more than %d manifest blobs", MaxManifests)
)

const (
	// maxManifestDepth bounds manifests of manifests. SeaweedFS writes one
	// level (weed/filer/filechunk_manifest.go groups 10,000 data chunks per
	// manifest) and its filer's ResolveChunkManifest recurses without a
	// bound (weed mount's ChunkGroup.SetChunks expands only one level); 8
	// levels leave room for any writer while stopping a corrupt chain.
	maxManifestDepth = 8
	// manifestFetches bounds concurrent manifest fetches of one chunk list.
	manifestFetches = 8

	// MaxChunks bounds the chunk entries (data chunks, manifest chunks and
	// empty chunks, counted each time a manifest's list is expanded) that
	// one file's chunk list may expand to. A manifest may list the same
	// child manifest many times, so a few KiB of blobs can stand for 10^9
	// chunks; the bound keeps Build's time and memory in proportion to a
	// real file. 2^20 chunks is 4 TiB at the filer's default 4 MiB chunks
	// (weed mount's 2 MiB: 2 TiB), far past files that are read through a
	// mount, and costs Build some 200 MiB at most (a leaf pointer, a sweep
	// entry, a span, a chunk descriptor each). It also keeps the sweep's
	// int32 sequence numbers far from overflow.
	MaxChunks = 1 << 20
	// MaxManifests bounds the distinct manifest blobs one Build fetches
	// (each once, however often it is listed). SeaweedFS packs 10,000 data
	// chunks into a manifest, so MaxChunks needs about 105; 1,024 leaves
	// ten times that for partly filled manifests and bounds the round
	// trips (at manifestFetches at a time) of a hostile list of tiny ones.
	MaxManifests = 1 << 10
)

// limits are the bounds one Build enforces; tests lower them.
type limits struct {
	chunks, manifests int
}

var defaultLimits = limits{chunks: MaxChunks, manifests: MaxManifests}

// resolver expands manifests depth first, so leaves keeps the order in which
// the chunks stand once every manifest is replaced by its children: that
// order is the last overlap tie-break. Each manifest blob is fetched once
// per Build, however many times it is listed: kids caches its chunks (or
// its error) by file id.
type resolver struct {
	f       Fetcher
	lim     limits
	leaves  []*filerpb.FileChunk
	entries int // chunk entries expanded so far, against lim.chunks
	kids    map[string]manifestResult
}

type manifestResult struct {
	chunks []*filerpb.FileChunk
	err    error
}

// resolve appends the data chunks of list to r.leaves; path holds the file
// ids of the manifests being expanded, outermost first.
func (r *resolver) resolve(ctx context.Context, list []*filerpb.FileChunk, path []string) error {
	// Count before any work: a list expanded many times costs its length
	// each time.
	if len(list) > r.lim.chunks-r.entries {
		return fmt.Errorf("%w (%d so far, a list of %d more)", r.tooMany(), r.entries, len(list))
	}
	r.entries += len(list)
	for _, c := range list {
		if err := checkRange(c); err != nil {
			return err
		}
	}
	// Fetch this list's manifests not yet fetched concurrently, each
	// distinct file id once, then expand them in list order, so
	// concurrency never changes the leaf order.
	var todo []*filerpb.FileChunk
	for _, c := range list {
		// A zero-size manifest covers no bytes (its Size spans its children),
		// so like SeaweedFS's ResolveChunkManifest we never fetch it.
		if !c.GetIsChunkManifest() || c.GetSize() == 0 {
			continue
		}
		fid := FileID(c)
		if err := r.checkRef(c, fid, path); err != nil {
			return err
		}
		if _, ok := r.kids[fid]; ok {
			continue
		}
		if len(r.kids) >= r.lim.manifests {
			return fmt.Errorf("resolve manifest %s: %w", fid, ErrTooManyManifests)
		}
		if r.kids == nil {
			r.kids = map[string]manifestResult{}
		}
		r.kids[fid] = manifestResult{} // claimed; filled in below
		todo = append(todo, c)
	}
	if len(todo) > 0 {
		got := make([]manifestResult, len(todo))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(manifestFetches)
		for i, c := range todo {
			g.Go(func() error {
				got[i].chunks, got[i].err = r.fetchManifest(gctx, c)
				return got[i].err
			})
		}
		err := g.Wait()
		for i, c := range todo {
			r.kids[FileID(c)] = got[i]
		}
		if err != nil {
			return err
		}
	}
	for _, c := range list {
		switch {
		case c.GetSize() == 0:
		case !c.GetIsChunkManifest():
			r.leaves = append(r.leaves, c)
		default:
			fid := FileID(c)
			kids := r.kids[fid]
			if kids.err != nil {
				return kids.err
			}
			// The blob passed checkManifest for the reference that
			// fetched it; another reference may stand elsewhere.
			if err := checkManifest(c, kids.chunks); err != nil {
				return fmt.Errorf("resolve manifest %s: %w", fid, err)
			}
			// Cap the capacity so that siblings never share a backing array.
			inner := append(path[:len(path):len(path)], fid)
			if err := r.resolve(ctx, kids.chunks, inner); err != nil {
				return fmt.Errorf("resolve manifest %s: %w", fid, err)
			}
		}
	}
	return nil
}

// tooMany is ErrTooManyChunks, naming the bound in force when a test lowered it.
func (r *resolver) tooMany() error {
	if r.lim.chunks == MaxChunks {
		return ErrTooManyChunks
	}
	return fmt.Errorf("%w (bound lowered to %d)", ErrTooManyChunks, r.lim.chunks)
}

// checkRef vets one reference to manifest chunk c, standing under the
// manifests in path, before its blob is fetched or reused.
func (r *resolver) checkRef(c *filerpb.FileChunk, fid string, path []string) error {
	switch {
	case fid == "":
		return fmt.Errorf("chunkmap: manifest chunk at offset %d size %d has no file id", c.GetOffset(), c.GetSize())
	case r.f == nil:
		return fmt.Errorf("resolve manifest %s: %w", fid, ErrNoFetcher)
	case len(path) >= maxManifestDepth:
		return fmt.Errorf("resolve manifest %s: %w", fid, ErrManifestDepth)
	case slices.Contains(path, fid):
		return fmt.Errorf("resolve manifest %s: %w", fid, ErrManifestCycle)
	}
	return nil
}

// fetchManifest reads and decodes one manifest blob into the chunks it lists.
func (r *resolver) fetchManifest(ctx context.Context, c *filerpb.FileChunk) ([]*filerpb.FileChunk, error) {
	fid := FileID(c)
	// The fetcher calls parse once per copy of the blob, never
	// concurrently, and returns after the first that passes: m then holds
	// that blob's chunks.
	var m filerpb.FileChunkManifest
	parse := func(blob []byte) error {
		m.Reset()
		if err := proto.Unmarshal(blob, &m); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformedManifest, err)
		}
		return checkManifest(c, m.GetChunks())
	}
	if _, err := r.f.ReadNeedleChecked(ctx, ChunkFromFiler(c), parse); err != nil {
		return nil, fmt.Errorf("resolve manifest %s: %w", fid, err)
	}
	return m.GetChunks(), nil
}

// checkManifest sanity-checks the chunks that manifest chunk c lists, so
// that a blob which parses by chance (protobuf accepts much) is caught as
// corrupt. Every child needs a file id, and starts at or after c's Offset:
// SeaweedFS sets a manifest chunk's range to the span of its children
// (weed/filer/filechunk_manifest.go, mergeIntoManifest). The end of that
// span is not checked: weed mount truncates a file by lowering the Size of
// every chunk that crosses the new end, manifest chunks included
// (weed/mount/weedfs_attr.go, SetAttr), so children may legitimately reach
// past Offset+Size.
func checkManifest(c *filerpb.FileChunk, children []*filerpb.FileChunk) error {
	for i, k := range children {
		switch {
		case FileID(k) == "":
			return fmt.Errorf("%w: child %d at offset %d has no file id", ErrMalformedManifest, i, k.GetOffset())
		case k.GetOffset() < c.GetOffset():
			return fmt.Errorf("%w: child %s at offset %d starts before the manifest's offset %d",
				ErrMalformedManifest, FileID(k), k.GetOffset(), c.GetOffset())
		}
	}
	return nil
}
