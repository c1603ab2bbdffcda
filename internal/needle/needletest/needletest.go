// Package needletest makes the needle bytes that tests of fetchers need:
// random and compressible payloads, gzip, AES-GCM sealing as weed seals a
// chunk, and a filer's MD5 e_tag; and a volume server that trickles its
// answers (Trickler), for the deadlines of every fetch path.
// internal/needle's tests, internal/volume's, pagecache's and fs's share it,
// as net/http's tests share httptest. It imports nothing of ours.
package needletest

import (
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"testing"
)

// RandomBytes returns n random bytes.
func RandomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TextBytes returns n bytes that compress well.
func TextBytes(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		b.WriteString("line " + strconv.Itoa(i) + " of some compressible text\n")
	}
	return b.Bytes()[:n]
}

// Gzip compresses data.
func Gzip(data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}

// Seal encrypts as weed's util.Encrypt does: AES-GCM, a random nonce
// prepended.
func Seal(t testing.TB, key, plain []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, gcm.NonceSize())
	rand.Read(nonce)
	return gcm.Seal(nonce, nonce, plain, nil)
}

// MD5ETag is the filer's e_tag of data: its MD5, base64.
func MD5ETag(data []byte) string {
	sum := md5.Sum(data)
	return base64.StdEncoding.EncodeToString(sum[:])
}
