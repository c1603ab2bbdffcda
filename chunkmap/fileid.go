package chunkmap

import (
	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/internal/needle"
)

// ChunkFromFiler converts a filer chunk to the descriptor every fetcher takes.
// Size is the chunk's logical size; the encoding flags pass through untouched
// because decoding is the fetcher's job.
func ChunkFromFiler(c *filerpb.FileChunk) needle.Chunk {
	return needle.Chunk{
		FileID:     FileID(c),
		Size:       int64(c.GetSize()),
		CipherKey:  c.GetCipherKey(),
		Compressed: c.GetIsCompressed(),
		ETag:       c.GetETag(),
	}
}

// FileID returns the chunk's "vid,keycookie" file id: the FileId string when
// set, else formatted from Fid, else "". Unlike SeaweedFS's
// GetFileIdString it never caches the result in c, so callers may share chunks.
func FileID(c *filerpb.FileChunk) string {
	if id := c.GetFileId(); id != "" {
		return id
	}
	if f := c.GetFid(); f != nil {
		return needle.FormatFileID(f.GetVolumeId(), f.GetFileKey(), f.GetCookie())
	}
	return ""
}

// needleKey is the chunk's needle key, the equal-timestamp tie-break. The
// FileId string wins over Fid when both are set because it is the id that
// gets fetched. An id that does not parse yields 0.
func needleKey(c *filerpb.FileChunk) uint64 {
	id := c.GetFileId()
	if id == "" {
		return c.GetFid().GetFileKey()
	}
	_, key, _, err := needle.ParseFileID(id)
	if err != nil {
		return 0
	}
	return key
}
