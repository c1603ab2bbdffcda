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
)

// resolver expands manifests depth first, so leaves keeps the order in which
// the chunks stand once every manifest is replaced by its children: that
// order is the last overlap tie-break.
type resolver struct {
	f      Fetcher
	leaves []*filerpb.FileChunk
}

// resolve appends the data chunks of list to r.leaves; path holds the file
// ids of the manifests being expanded, outermost first.
func (r *resolver) resolve(ctx context.Context, list []*filerpb.FileChunk, path []string) error {
	// Fetch this list's manifests concurrently, then expand them in list
	// order, so concurrency never changes the leaf order.
	for _, c := range list {
		if err := checkRange(c); err != nil {
			return err
		}
	}
	var kids [][]*filerpb.FileChunk
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(manifestFetches)
	for i, c := range list {
		// A zero-size manifest covers no bytes (its Size spans its children),
		// so like SeaweedFS's ResolveChunkManifest we never fetch it.
		if !c.GetIsChunkManifest() || c.GetSize() == 0 {
			continue
		}
		if kids == nil {
			kids = make([][]*filerpb.FileChunk, len(list))
		}
		g.Go(func() error {
			var err error
			kids[i], err = r.fetchManifest(gctx, c, path)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i, c := range list {
		switch {
		case c.GetSize() == 0:
		case !c.GetIsChunkManifest():
			r.leaves = append(r.leaves, c)
		default:
			fid := FileID(c)
			// Cap the capacity so that siblings never share a backing array.
			inner := append(path[:len(path):len(path)], fid)
			if err := r.resolve(ctx, kids[i], inner); err != nil {
				return fmt.Errorf("resolve manifest %s: %w", fid, err)
			}
		}
	}
	return nil
}

// fetchManifest reads and decodes one manifest blob into the chunks it lists.
func (r *resolver) fetchManifest(ctx context.Context, c *filerpb.FileChunk, path []string) ([]*filerpb.FileChunk, error) {
	fid := FileID(c)
	switch {
	case fid == "":
		return nil, fmt.Errorf("chunkmap: manifest chunk at offset %d size %d has no file id", c.GetOffset(), c.GetSize())
	case r.f == nil:
		return nil, fmt.Errorf("resolve manifest %s: %w", fid, ErrNoFetcher)
	case len(path) >= maxManifestDepth:
		return nil, fmt.Errorf("resolve manifest %s: %w", fid, ErrManifestDepth)
	case slices.Contains(path, fid):
		return nil, fmt.Errorf("resolve manifest %s: %w", fid, ErrManifestCycle)
	}
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
