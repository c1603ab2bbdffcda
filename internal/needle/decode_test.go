package needle

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/weedfuse/weedfuse/internal/needle/needletest"
)

// decode is what a fetcher that moved a needle's raw bytes itself does
// with them, the server having sent no CRC32C: decode as the chunk says,
// check the length and the e_tag, and cut to c.Size.
func decode(c Chunk, stored []byte) ([]byte, error) {
	logical, err := DecodeVerified(c, stored, false, false, false)
	if err != nil {
		return nil, err
	}
	return logical[:c.Size:c.Size], nil
}

func TestDecode(t *testing.T) {
	key := needletest.RandomBytes(t, 32)
	text := needletest.TextBytes(100_000)
	binary := needletest.RandomBytes(t, 70_000)
	tests := []struct {
		name   string
		chunk  Chunk
		stored []byte
		want   []byte
	}{
		{"plain", Chunk{Size: int64(len(binary))}, binary, binary},
		{"plain with etag", Chunk{Size: int64(len(binary)), ETag: needletest.MD5ETag(binary)}, binary, binary},
		{"gzip", Chunk{Size: int64(len(text)), Compressed: true, ETag: needletest.MD5ETag(text)}, needletest.Gzip(text), text},
		{"compressed flag on bytes that are not gzip", Chunk{Size: int64(len(binary)), Compressed: true}, binary, binary},
		{"encrypted", Chunk{Size: int64(len(binary)), CipherKey: key, ETag: needletest.MD5ETag(binary)}, needletest.Seal(t, key, binary), binary},
		{"encrypted and gzipped", Chunk{Size: int64(len(text)), CipherKey: key, Compressed: true, ETag: needletest.MD5ETag(text)}, needletest.Seal(t, key, needletest.Gzip(text)), text},
		{"etag of another form is not checked", Chunk{Size: int64(len(binary)), ETag: "ecec08a7"}, binary, binary},
		{"multipart-style etag is not checked", Chunk{Size: int64(len(binary)), ETag: "5d41402abc4b2a76b9719d911017c592-3"}, binary, binary},
		{"empty", Chunk{}, nil, nil},
		// A truncated chunk shows the first Size bytes of its needle; its
		// e_tag stays the MD5 of the whole needle.
		{"plain, truncated", Chunk{Size: 50_000, ETag: needletest.MD5ETag(binary)}, binary, binary[:50_000]},
		{"gzip, truncated", Chunk{Size: 10_000, Compressed: true, ETag: needletest.MD5ETag(text)}, needletest.Gzip(text), text[:10_000]},
		{"encrypted and gzipped, truncated", Chunk{Size: 1, CipherKey: key, Compressed: true, ETag: needletest.MD5ETag(text)}, needletest.Seal(t, key, needletest.Gzip(text)), text[:1]},
		{"truncated to nothing", Chunk{Size: 0, ETag: needletest.MD5ETag(binary)}, binary, []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.chunk.FileID = "3,01637037d6"
			got, err := decode(tt.chunk, tt.stored)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("decoded %d bytes that differ from the %d expected", len(got), len(tt.want))
			}
		})
	}
}

func TestDecodeEncryptedETagOfStoredBytes(t *testing.T) {
	key := needletest.RandomBytes(t, 32)
	plain := needletest.RandomBytes(t, 1000)
	stored := needletest.Seal(t, key, plain)
	c := Chunk{FileID: "1,01", Size: 1000, CipherKey: key, ETag: needletest.MD5ETag(stored)}
	if _, err := decode(c, stored); err != nil {
		t.Errorf("an e_tag of the sealed bytes should pass: %v", err)
	}
}

func TestDecodeCorrupt(t *testing.T) {
	key := needletest.RandomBytes(t, 32)
	text := needletest.TextBytes(50_000)
	sealed := needletest.Seal(t, key, needletest.Gzip(text))
	flipped := bytes.Clone(sealed)
	flipped[100] ^= 1
	gz := needletest.Gzip(text)
	badCRC := bytes.Clone(gz)
	badCRC[len(badCRC)-6] ^= 1 // inside the CRC-32 trailer
	tests := []struct {
		name   string
		chunk  Chunk
		stored []byte
	}{
		{"etag mismatch", Chunk{Size: int64(len(text)), ETag: needletest.MD5ETag([]byte("other"))}, text},
		{"size mismatch", Chunk{Size: int64(len(text)) + 1}, text},
		{"gcm tag fails", Chunk{Size: int64(len(text)), CipherKey: key, Compressed: true}, flipped},
		{"wrong key", Chunk{Size: int64(len(text)), CipherKey: needletest.RandomBytes(t, 32), Compressed: true}, sealed},
		{"sealed too short", Chunk{Size: 1, CipherKey: key}, sealed[:20]},
		{"gzip truncated", Chunk{Size: int64(len(text)), Compressed: true}, gz[:len(gz)/2]},
		{"gzip crc", Chunk{Size: int64(len(text)), Compressed: true}, badCRC},
		{"needle shorter than size", Chunk{Size: int64(len(text)) + 1, Compressed: true}, gz},
		{"e_tag of the truncated prefix, not of the needle", Chunk{Size: 100, ETag: needletest.MD5ETag(text[:100])}, text},
		{"negative size", Chunk{Size: -1}, text},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.chunk.FileID = "3,01637037d6"
			_, err := decode(tt.chunk, tt.stored)
			if !errors.Is(err, ErrCorrupt) && tt.chunk.Size >= 0 {
				t.Errorf("err = %v, want ErrCorrupt", err)
			}
			if err == nil {
				t.Fatal("decoded")
			}
			if !strings.Contains(err.Error(), "3,01637037d6") {
				t.Errorf("error %q does not name the file id", err)
			}
		})
	}
}

// A cipher key of a length AES does not take is bad metadata, not a bad
// copy: it is refused as such, and no replica is blamed for it.
func TestDecodeBadKeyLengthIsNotCorrupt(t *testing.T) {
	key := needletest.RandomBytes(t, 32)
	text := needletest.TextBytes(1000)
	c := Chunk{FileID: "3,01637037d6", Size: int64(len(text)), CipherKey: key[:5]}
	_, err := decode(c, needletest.Seal(t, key, text))
	if !errors.Is(err, ErrBadCipherKey) || errors.Is(err, ErrCorrupt) {
		t.Errorf("err = %v, want ErrBadCipherKey and not ErrCorrupt", err)
	}
}

// TestDecodeWeedNeedle decodes a needle that weed 4.48 stored for a filer
// with -encryptVolumeData: c.txt, gzipped, then sealed. The chunk metadata
// is the filer's, and the stored bytes are the volume server's GET reply.
func TestDecodeWeedNeedle(t *testing.T) {
	stored, err := os.ReadFile("testdata/weed448-encrypted-gzipped.needle")
	if err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString("aA8FW7onFYRaPeFbJdIUBurbcVbgXF2HKDK/WMQ5TXc=")
	if err != nil {
		t.Fatal(err)
	}
	c := Chunk{FileID: "1,04b53d64f9", Size: 58890, CipherKey: key, Compressed: true, ETag: "uK7wvSmV6i/8xRj6FS493w=="}
	got, err := decode(c, stored)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&want, "encrypted line %d\n", i)
	}
	if string(got) != want.String() {
		t.Error("decoded bytes differ from the file weed stored")
	}
}
