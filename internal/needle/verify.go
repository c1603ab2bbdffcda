package needle

import "fmt"

// DecodeVerified turns the whole stored bytes of a needle, as a fetcher
// received them (volume.Reader over HTTP, the RDMA client over its own
// transfer), into all of its logical bytes under the one rule both apply:
// decoded as the volume server sent them (gzipEncoded: with "Content-Encoding: gzip";
// see decodeNeedle for why that and not only c.Compressed decides) and as
// the chunk says, at least c.Size logical bytes, and the e_tag MD5 checked
// when no needle CRC32C was checked (crcChecked false: the server sent none)
// or when verifyETag asks for it (volume.Options.VerifyETag). The caller must have
// checked the stored bytes against the needle CRC32C when there was one.
//
// The result is not cut to c.Size: one decoded needle can
// then serve every chunk that names it (see Chunk.Size), and the caller
// checks each one's length. It may share memory with stored. Every
// mismatch is an error wrapping ErrCorrupt.
func DecodeVerified(c Chunk, stored []byte, gzipEncoded, crcChecked, verifyETag bool) ([]byte, error) {
	if c.Size < 0 {
		return nil, fmt.Errorf("decode chunk %s: negative size %d", c.FileID, c.Size)
	}
	logical, err := decodeNeedle(c, stored, gzipEncoded)
	if err != nil {
		return nil, err
	}
	if err := CheckLength(c, logical); err != nil {
		return nil, err
	}
	if verifyETag || !crcChecked {
		if err := checkETag(c, logical, stored); err != nil {
			return nil, err
		}
	}
	return logical, nil
}

// CRCSumMatches is CRCMatches for a fetcher that has computed the CRC32C of
// the stored bytes already (the RDMA client folds it in as they land, to
// check the transfer): crc is their raw CRC32C, sum the needle's checksum
// from NeedleCRC. It accepts the same two forms.
func CRCSumMatches(crc, sum uint32) bool {
	return crc == sum || (crc>>15|crc<<17)+0xa282ead8 == sum
}
