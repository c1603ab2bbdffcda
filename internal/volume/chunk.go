// Package volume reads chunk bytes from SeaweedFS volume servers over HTTP:
// Range requests on a keep-alive pool, replica failover, read JWTs (with
// the settings from weed's security.toml), and the decoding of
// gzip-compressed and AES-256-GCM-encrypted chunks.
//
// It is the lowest room of the read path and imports nothing of weedfuse's.
// Its Chunk type is the descriptor every fetcher (HTTP here, RDMA in package
// rdma) is handed, so that all of them decode a chunk the same way.
package volume

import "errors"

// Chunk describes one stored chunk (a needle) as the filer lists it. It carries
// everything a fetcher needs to return the chunk's logical bytes.
type Chunk struct {
	// FileID is the needle's "vid,keycookie" file id.
	FileID string
	// Size is the chunk's logical (decoded) length in bytes.
	Size int64
	// CipherKey, when set, means the stored bytes are AES-256-GCM sealed
	// with this key and the nonce prepended.
	CipherKey []byte
	// Compressed means the stored bytes are gzip-compressed.
	Compressed bool
	// ETag is the filer's e_tag for the chunk, or empty. Filers write the
	// standard base64 of the MD5 of the chunk's logical bytes (for example
	// "QCnwRUJN/mB0Ti6LoQGzhQ=="); whole-chunk reads verify that form and
	// skip any other (see Decode).
	ETag string
}

// Whole reports whether a fetcher must read the stored needle in full to
// return any range of it (an encrypted or compressed chunk).
func (c Chunk) Whole() bool { return len(c.CipherKey) > 0 || c.Compressed }

// ErrNotServed is returned by a fetcher in a chain that cannot serve this
// chunk at all (not connected, unhealthy, unsupported encoding). The next
// fetcher in the chain is tried. Any other error is a real read error.
var ErrNotServed = errors.New("fetcher cannot serve this chunk")
