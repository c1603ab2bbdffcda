// Package needle holds what every fetcher of chunk bytes shares about a
// SeaweedFS needle: the Chunk descriptor and the Request a fetcher is
// handed (with its NeedleSink), file ids, CRC32C and the needle's checksum,
// how a whole needle is asked of a volume server and its answer read
// (GetPath, Bearer, ContentGzip, CheckStoredCRC),
// the decoding of gzip-compressed and AES-256-GCM-encrypted chunks and the
// checks that come with it, the size limits, and NeedleCache, the cache of
// whole verified needles that lets a chunk read a piece at a time cost one
// fetch.
//
// The HTTP reader (internal/volume) and the RDMA client (package rdma) both
// fetch needles and must decode and verify them exactly alike. The rules
// live here, in one package, so that neither carries a copy of the other's
// and the RDMA client needs nothing of the HTTP reader. It is the lowest
// room of the read path and imports nothing of weedfuse's.
//
// # Verification
//
// SeaweedFS keeps exactly two checksums over chunk data, and both cover a
// whole needle, never a byte range:
//   - the needle's CRC32C (Castagnoli) over its stored bytes, which the
//     volume server sends as the ETag header ("5dfee6dc", 8 hex digits,
//     quoted; very old servers stored a masked form, also accepted): see
//     NeedleCRC, CRCMatches and CheckStoredCRC;
//   - the filer's e_tag, the MD5 of the needle's logical bytes (see
//     Chunk.ETag), checked by DecodeVerified.
//
// So a fetcher that is to return verified bytes fetches a whole needle. A
// copy that fails a check is corrupt (ErrCorrupt), and the fetcher reads
// another.
package needle
