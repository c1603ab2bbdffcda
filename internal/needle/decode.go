package needle

import (
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrCorrupt marks bytes that do not match the chunk's metadata or the
// server's checksum: a needle shorter than the chunk, a failed CRC32C or
// AES-GCM tag, a broken gzip stream, an e_tag mismatch. A fetcher that sees
// it treats that copy as bad and reads another.
var ErrCorrupt = errors.New("chunk bytes do not match its metadata")

// MaxNeedle bounds the stored and the logical length of a needle read
// whole, unless the chunk itself says it is longer. It keeps a bad reply or
// a gzip bomb from exhausting memory.
const MaxNeedle = 64 << 20

// StoredLimit bounds the stored bytes of c's needle that a fetcher reads
// whole: the body of an HTTP reply, the length an RDMA reply announces. A
// truncated chunk's needle may be far longer than the chunk (see
// Chunk.Size), so the bound is MaxNeedle; a chunk larger than that may be
// as long as it says, plus sealing (28 bytes) and a gzip that did not pay.
func StoredLimit(c Chunk) int64 {
	size := min(c.Size, MaxChunkSize) // a larger claim is refused before any fetch
	return max(MaxNeedle, size+size/8+64<<10)
}

// decodeNeedle returns all the logical bytes of a needle, not cut to
// c.Size, from its stored bytes. It undoes weed's upload path, which gzips
// first and then encrypts (weed/operation/upload_content.go:
// "encrypt(gzip(data))"):
//
//  1. CipherKey set: AES-256-GCM open, the 12-byte nonce prepended to the
//     sealed data (weed/util/cipher.go).
//  2. Compressed: gunzip. Like weed's util.DecompressData, data that does
//     not start with the gzip magic is taken as it is.
//
// The result may share memory with stored when there is nothing to decode.
// Every mismatch is an error wrapping ErrCorrupt. gzipEncoded says that the volume server
// sent them as "Content-Encoding: gzip", which it does only for a needle
// stored compressed whose bytes start with the gzip magic, whatever the
// filer's is_compressed says (the server gzips some uploads itself). For an
// encrypted needle that header would describe the sealed bytes, not the
// plaintext, so only c.Compressed counts there.
func decodeNeedle(c Chunk, stored []byte, gzipEncoded bool) ([]byte, error) {
	data := stored
	encrypted := len(c.CipherKey) > 0
	if encrypted {
		if err := c.CheckCipherKey(); err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		plain, err := decrypt(c.CipherKey, stored)
		if err != nil {
			return nil, fmt.Errorf("decode chunk %s: decrypt: %w", c.FileID, err)
		}
		data = plain
	}
	if (gzipEncoded && !encrypted) || (c.Compressed && isGzip(data)) {
		plain, err := gunzip(data, c.Size, max(MaxNeedle, c.Size))
		if err != nil {
			return nil, fmt.Errorf("decode chunk %s: gunzip: %w", c.FileID, err)
		}
		data = plain
	}
	return data, nil
}

// CheckLength rejects a needle that holds fewer logical bytes than the
// chunk shows (see Chunk.Size), with an error wrapping ErrCorrupt.
func CheckLength(c Chunk, logical []byte) error {
	if int64(len(logical)) < c.Size {
		return fmt.Errorf("chunk %s: needle holds %d logical bytes, chunk shows %d: %w", c.FileID, len(logical), c.Size, ErrCorrupt)
	}
	return nil
}

// decrypt opens AES-GCM data sealed with the nonce prepended. The key's
// length was checked (Chunk.CheckCipherKey).
func decrypt(key, sealed []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("cipher key: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize()+gcm.Overhead() {
		return nil, fmt.Errorf("%d sealed bytes are too few: %w", len(sealed), ErrCorrupt)
	}
	nonce, body := sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():]
	plain, err := gcm.Open(nil, nonce, body, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	return plain, nil
}

func isGzip(data []byte) bool {
	return len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b
}

// gunzip inflates a whole gzip stream of at most limit bytes. The output is
// sized up front from the stream's length trailer (ISIZE, the length mod
// 2^32 of the last member) when that is plausible, else from want, so the
// common case allocates once; either is only a hint. Reading to the end of
// the stream is what makes gzip check its CRC-32 and length trailers.
func gunzip(data []byte, want, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	hint := want
	if len(data) >= 4 {
		if isize := int64(binary.LittleEndian.Uint32(data[len(data)-4:])); isize <= limit {
			hint = isize
		}
	}
	// One spare byte lets the Read that finds the end of the stream run
	// without growing the buffer.
	out := make([]byte, 0, max(hint, 0)+1)
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := zr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if int64(len(out)) > limit {
			return nil, fmt.Errorf("inflates to more than %d bytes: %w", limit, ErrCorrupt)
		}
		switch {
		case errors.Is(err, io.EOF):
			return out, nil
		case err != nil:
			return nil, fmt.Errorf("%w: %w", err, ErrCorrupt)
		}
	}
}

// etagMD5 returns the digest a chunk's ETag holds, if it is of the one form
// whose meaning is certain: standard base64 of 16 bytes.
func etagMD5(etag string) (digest [md5.Size]byte, ok bool) {
	if len(etag) != base64.StdEncoding.EncodedLen(md5.Size) {
		return digest, false
	}
	n, err := base64.StdEncoding.Decode(digest[:], []byte(etag))
	return digest, err == nil && n == md5.Size
}

// CheckETagDigest checks sum, the MD5 of a plain chunk's logical bytes that
// a fetcher summed as they streamed by, against the chunk's ETag, as
// described at checkETag: only an e_tag of the one form whose meaning is
// certain is checked, and a mismatch is an error wrapping ErrCorrupt.
func CheckETagDigest(c Chunk, sum [md5.Size]byte) error {
	if want, ok := etagMD5(c.ETag); ok && sum != want {
		return fmt.Errorf("chunk %s: md5 differs from e_tag %s: %w", c.FileID, c.ETag, ErrCorrupt)
	}
	return nil
}

// checkETag verifies a needle's logical bytes, all of them (and, for an
// encrypted chunk, its stored bytes), against the chunk's ETag.
//
// A chunk's e_tag is the standard base64 of an MD5 digest
// (operation.UploadResult.ToPbFileChunk takes the volume server's
// Content-MD5, the MD5 of the upload before the server's own gzip). weed
// 4.48 writes the MD5 of the logical bytes for plain, gzipped and encrypted
// chunks alike (checked against a live filer). For an encrypted chunk an
// uploader that hashed the ciphertext it sent would write the MD5 of the
// stored bytes instead, so that matches too; GCM has already authenticated
// those bytes. Any other form (empty; the 8-hex-digit needle checksum that
// very old filers stored; anything that is not base64 of 16 bytes) is not
// checked, since its meaning is not certain.
func checkETag(c Chunk, logical, stored []byte) error {
	want, ok := etagMD5(c.ETag)
	if !ok || md5.Sum(logical) == want {
		return nil
	}
	if len(c.CipherKey) > 0 && md5.Sum(stored) == want {
		return nil
	}
	return fmt.Errorf("chunk %s: md5 differs from e_tag %s: %w", c.FileID, c.ETag, ErrCorrupt)
}
