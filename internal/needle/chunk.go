package needle

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// Chunk describes one stored chunk (a needle) as the filer lists it. It carries
// everything a fetcher needs to return the chunk's logical bytes.
type Chunk struct {
	// FileID is the needle's "vid,keycookie" file id.
	FileID string
	// Size is the chunk's logical (decoded) length in bytes. It may be less
	// than the needle's logical length, never more: weed mount truncates a
	// file by lowering the Size of the chunks that cross the new end and
	// leaves their needles (and e_tags) as they were, so a chunk is the
	// first Size logical bytes of its needle.
	Size int64
	// CipherKey, when set, means the stored bytes are AES-256-GCM sealed
	// with this key and the nonce prepended.
	CipherKey []byte
	// Compressed means the stored bytes are gzip-compressed.
	Compressed bool
	// ETag is the filer's e_tag for the chunk, or empty. Filers write the
	// standard base64 of the MD5 of the needle's logical bytes, all of
	// them even when Size shows only a prefix (for example
	// "QCnwRUJN/mB0Ti6LoQGzhQ=="); that form is verified and any other is
	// not (see checkETag).
	ETag string
}

// MaxChunkSize is the largest Size a data chunk may claim. A needle's
// length is a 32-bit field on the volume server (weed/storage/needle:
// DataSize uint32, and the whole needle's Size an int32), and weed cuts a
// file into chunks of -maxMB (4 MiB by default) before it compresses them,
// so no stored chunk is longer. A chunk list claiming more is corrupt or
// hostile: its reads fail with ErrChunkTooLarge rather than walk its
// blocks or lift the bounds on what a reply may hold. (A manifest chunk's
// Size spans its children and is not bound by this.)
const MaxChunkSize = 4 << 30

// ErrChunkTooLarge marks a read of a chunk whose Size exceeds MaxChunkSize.
var ErrChunkTooLarge = fmt.Errorf("chunk larger than a needle can be (%d bytes)", int64(MaxChunkSize))

// CheckSize refuses a chunk whose Size is negative or past MaxChunkSize.
func (c Chunk) CheckSize() error {
	if c.Size < 0 || c.Size > MaxChunkSize {
		return fmt.Errorf("chunk %s claims %d bytes: %w", c.FileID, c.Size, ErrChunkTooLarge)
	}
	return nil
}

// ErrBadCipherKey marks a chunk whose CipherKey has a length AES does not
// take. It is bad metadata, the same for every replica, so it does not
// wrap ErrCorrupt: no replica is to blame and none is worth a request.
var ErrBadCipherKey = errors.New("cipher key of a length AES does not take (16, 24 or 32 bytes)")

// CheckCipherKey refuses a chunk whose CipherKey, when set, is not 16, 24
// or 32 bytes long, before any fetch: no reply could be decrypted with it.
func (c Chunk) CheckCipherKey() error {
	switch len(c.CipherKey) {
	case 0, 16, 24, 32:
		return nil
	}
	return fmt.Errorf("chunk %s has a %d-byte cipher key: %w", c.FileID, len(c.CipherKey), ErrBadCipherKey)
}

// Key names the decoded bytes of the chunk's needle: the file id, plus what
// changes how its stored bytes decode (the cipher key and the compression
// flag). Two entries naming one needle with different keys or flags must
// never share a cache entry: an encrypted file would read back as
// ciphertext. Size is not part of it: a chunk is a prefix of its needle,
// and caches keep the whole needle. The e_tag is: it names the content, so
// a cache directory that outlived its cluster (a fresh cluster reuses file
// ids) cannot answer for another needle that happens to share the id.
func (c Chunk) Key() string {
	if len(c.CipherKey) == 0 && !c.Compressed && c.ETag == "" {
		return c.FileID
	}
	// Plain concatenation, no hash: block keys are made on every read.
	flag := "p"
	if c.Compressed {
		flag = "z"
	}
	return c.FileID + "|" + flag + "|" + hex.EncodeToString(c.CipherKey) + "|" + c.ETag
}

// Plain reports whether the chunk's stored bytes are its logical bytes as
// the filer describes it: neither encrypted nor compressed. Only such a
// chunk can be read by byte range. (A volume server may still hold it
// gzipped; asked without gzip, it decodes before it cuts the range.)
func (c Chunk) Plain() bool { return len(c.CipherKey) == 0 && !c.Compressed }

// ErrNotServed is returned by a fetcher in a chain that cannot serve this
// chunk at all (not connected, unhealthy, unsupported encoding). The next
// fetcher in the chain is tried. Any other error is a real read error.
var ErrNotServed = errors.New("fetcher cannot serve this chunk")
