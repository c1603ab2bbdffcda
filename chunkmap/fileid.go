package chunkmap

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/weedfuse/weedfuse/internal/filerpb"
	"github.com/weedfuse/weedfuse/internal/volume"
)

// ChunkFromFiler converts a filer chunk to the descriptor every fetcher takes.
// Size is the chunk's logical size; the encoding flags pass through untouched
// because decoding is the fetcher's job.
func ChunkFromFiler(c *filerpb.FileChunk) volume.Chunk {
	return volume.Chunk{
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
		return FormatFileID(f.GetVolumeId(), f.GetFileKey(), f.GetCookie())
	}
	return ""
}

// FormatFileID renders a file id as SeaweedFS does
// (weed/storage/needle/file_id.go): the volume id in decimal, a comma, then
// the hex of the 8-byte big-endian key followed by the 4-byte cookie, with the
// key's leading zero bytes (whole bytes, not nibbles) dropped. So key 0x123
// renders "0123", never "123", and key 0 leaves only the 8 cookie digits.
// The string is a cache key and a JWT claim, so it must match byte for byte.
func FormatFileID(vid uint32, key uint64, cookie uint32) string {
	var kc [12]byte
	binary.BigEndian.PutUint64(kc[:8], key)
	binary.BigEndian.PutUint32(kc[8:], cookie)
	skip := 0
	for skip < 8 && kc[skip] == 0 {
		skip++
	}
	var buf [10 + 1 + 2*len(kc)]byte
	b := strconv.AppendUint(buf[:0], uint64(vid), 10)
	b = append(b, ',')
	b = hex.AppendEncode(b, kc[skip:])
	return string(b)
}

// needleKey is the chunk's needle key, the equal-timestamp tie-break. The
// FileId string wins over Fid when both are set because it is the id that
// gets fetched. An id that does not parse yields 0.
func needleKey(c *filerpb.FileChunk) uint64 {
	id := c.GetFileId()
	if id == "" {
		return c.GetFid().GetFileKey()
	}
	comma := strings.IndexByte(id, ',')
	if comma < 0 {
		return 0
	}
	kc := id[comma+1:]
	// The cookie is always 8 hex digits; the key takes 1 to 16 before it.
	if len(kc) <= 8 || len(kc) > 24 {
		return 0
	}
	key, err := strconv.ParseUint(kc[:len(kc)-8], 16, 64)
	if err != nil {
		return 0
	}
	return key
}
