// Package volume reads chunk bytes from SeaweedFS volume servers over HTTP:
// the Reader, a fetcher of needle.Request, with whole-needle GETs on a
// keep-alive pool, ranged GETs, replica failover, read JWTs (with the
// settings from weed's security.toml) and TLS. GETs over plain HTTP go out
// on a small keep-alive client of the package's own (connPool), at half
// net/http's CPU per request; those over TLS, and any answer that client
// does not read, go through net/http. What a chunk is, and how a
// needle's bytes are checked and decoded (gzip, AES-256-GCM), is package
// needle's, which the RDMA client shares.
//
// # Verification
//
// No byte leaves this package unverified when SeaweedFS holds anything to
// verify it against: the needle's CRC32C, which the volume server sends as
// the ETag header, or the filer's e_tag, an MD5 (see package needle). Both
// cover a whole needle, never a byte range.
//
// So every read but a Range request, whatever range it asks for, fetches
// the whole stored needle and checks its CRC32C against the header, which
// costs next to nothing. The MD5 costs about 1.4 ms of CPU per MiB and is
// checked when the response carried no usable CRC header (an old server)
// or when Options.VerifyETag asks for it. A copy that fails a check is
// corrupt (needle.ErrCorrupt), and the next replica is read. A ranged read
// has nothing to be checked against here: a flipped byte in it would reach
// the reader, so a Range request is made only by a caller that checks the
// bytes itself or counts them as unverified. Decoded needles are kept in a
// small cache and concurrent readers share one fetch, so reading a chunk a
// block at a time costs one fetch.
//
// It imports internal/needle and nothing else of weedfuse's.
package volume
