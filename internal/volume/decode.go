package volume

import (
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
)

// ErrCorrupt marks bytes that do not match the chunk's metadata: a wrong
// length, a failed AES-GCM tag, a broken gzip stream or an ETag mismatch.
// A fetcher that sees it treats that copy as bad and reads another.
var ErrCorrupt = errors.New("chunk bytes do not match its metadata")

// Decode turns the whole stored bytes of a needle into the chunk's logical
// bytes, for a fetcher (such as the RDMA client) that moved the raw needle
// data itself. It undoes weed's upload path, which gzips first and then
// encrypts (weed/operation/upload_content.go: "encrypt(gzip(data))"):
//
//  1. CipherKey set: AES-256-GCM open, the 12-byte nonce prepended to the
//     sealed data (weed/util/cipher.go).
//  2. Compressed: gunzip. Like weed's util.DecompressData, data that does
//     not start with the gzip magic is taken as it is.
//  3. The result must be Size bytes long and match the ETag (see below).
//
// The result may share memory with stored when there is nothing to decode.
// Every mismatch is an error wrapping ErrCorrupt.
//
// The ETag check: a chunk's e_tag is the standard base64 of an MD5 digest
// (operation.UploadResult.ToPbFileChunk takes the volume server's
// Content-MD5, the MD5 of the upload before the server's own gzip). weed
// 4.48 writes the MD5 of the logical bytes for plain, gzipped and encrypted
// chunks alike (checked against a live filer). For an encrypted chunk an
// uploader that hashed the ciphertext it sent would write the MD5 of the
// stored bytes instead, so that matches too; GCM has already authenticated
// those bytes. Any other form (empty; the 8-hex-digit needle checksum that
// very old filers stored; anything that is not base64 of 16 bytes) is not
// checked, since its meaning is not certain.
func Decode(c Chunk, stored []byte) ([]byte, error) {
	data := stored
	if len(c.CipherKey) > 0 {
		plain, err := decrypt(c.CipherKey, stored)
		if err != nil {
			return nil, fmt.Errorf("decode chunk %s: decrypt: %w", c.FileID, err)
		}
		data = plain
	}
	if c.Compressed && isGzip(data) {
		var plain []byte
		var err error
		if c.Size < 0 {
			plain, err = gunzipAll(data)
		} else {
			plain, err = gunzip(data, c.Size)
		}
		if err != nil {
			return nil, fmt.Errorf("decode chunk %s: gunzip: %w", c.FileID, err)
		}
		data = plain
	}
	if c.Size >= 0 && int64(len(data)) != c.Size {
		return nil, fmt.Errorf("decode chunk %s: %d logical bytes, want %d: %w", c.FileID, len(data), c.Size, ErrCorrupt)
	}
	if err := checkETag(c, data, stored); err != nil {
		return nil, err
	}
	return data, nil
}

// decrypt opens AES-GCM data sealed with the nonce prepended.
func decrypt(key, sealed []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		// A key of the wrong length is bad metadata, not a bad replica,
		// but no replica can serve it either way.
		return nil, fmt.Errorf("cipher key: %w: %w", err, ErrCorrupt)
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

// gunzip inflates data that should hold exactly size bytes. The output is
// allocated once at that size; a longer stream is corrupt, not grown into.
// gunzipAll inflates a gzip stream of unknown length, up to MaxNeedle bytes.
func gunzipAll(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	out, err := io.ReadAll(io.LimitReader(zr, MaxNeedle+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	if len(out) > MaxNeedle {
		return nil, fmt.Errorf("inflates to more than %d bytes: %w", MaxNeedle, ErrCorrupt)
	}
	return out, nil
}

func gunzip(data []byte, size int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	out := make([]byte, size)
	n, err := io.ReadFull(zr, out)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return nil, fmt.Errorf("inflates to %d bytes, want %d: %w", n, size, ErrCorrupt)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	// Reading on to the end of the stream is what makes gzip check its
	// CRC-32 and length trailer.
	var probe [1]byte
	extra, err := zr.Read(probe[:])
	switch {
	case extra > 0:
		return nil, fmt.Errorf("inflates to more than %d bytes: %w", size, ErrCorrupt)
	case errors.Is(err, io.EOF):
		return out, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	return nil, fmt.Errorf("gzip stream does not end after %d bytes: %w", size, ErrCorrupt)
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

// checkETag verifies logical (and, for an encrypted chunk, stored) bytes
// against the chunk's ETag, as described at Decode.
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
