// Package rdma is weedfuse's RDMA read path: a verbs engine (cgo, behind the
// "rdma" build tag, with a stub of the same API that reports
// errors.ErrUnsupported), a registered hugepage arena, the wire protocol, the
// Client (a chunk fetcher, first step of the RDMA → HTTP chain) and the Server
// that cmd/weedrdma runs beside each volume server.
//
// # Shape of a read
//
// Client and Server keep one TCP control connection per pair (TLS when
// configured) and one RC queue pair per pair, connected by hand
// (INIT→RTR→RTS, no rdma_cm) with the QPN, PSN, GID, LID and MTU exchanged in
// the first frames of the control connection. A read is:
//
//	client → server  readRequest{id, fid, jwt, releases}                    (TCP)
//	server            fetches the whole stored needle over loopback HTTP into a
//	                  registered slot, checks it against the volume server's
//	                  needle CRC32C (ETag) and refuses it if it does not match
//	server → client  readReply{id, status, addr, rkey, length, crc32c,
//	                  needle checksum, gzip}                                 (TCP)
//	client            RDMA READ addr/rkey → its own arena slot (QP), CRC32C check
//	                  against the reply's and the needle's, decode, copy into the
//	                  caller's buffer, release id (piggybacked)
//
// # Verification
//
// A read always moves a whole stored needle, never a range, by the same rule
// as the HTTP path (see package needle): SeaweedFS keeps checksums only over
// whole needles, the volume server's CRC32C of the stored bytes (its ETag
// header) and the filer's e_tag MD5, so a range would have nothing to be
// checked against. weedrdma asks for the needle as stored (Accept-Encoding:
// gzip, no Range), checks it against the ETag before caching or serving it,
// and passes the checksum on in the reply. The client computes one CRC32C
// over the bytes as they land and compares it twice: with the reply's
// transfer CRC (the READ itself) and with the needle's checksum (end to end:
// anything that went wrong in weedrdma's fetch, cache or memory). It then
// decodes the needle with needle.DecodeVerified (decrypt, gunzip, the e_tag
// MD5 where the volume server sent no CRC32C) and copies the caller's range
// out of it; partial reads of one needle share one fetch and a small cache
// of decoded needles. Every mismatch is counted ("crc", "needle_crc",
// "decode") and the read falls back to HTTP; the caller's buffer is written
// only after every check passed. A needle larger than weedrdma's slots is
// left to HTTP ("too_large").
//
// The READ is posted as up to eight signaled pieces, and the CRC32C is folded
// in piece by piece as each completes, so checking overlaps the transfer.
// ServerOptions.CorruptEveryN, CorruptStoredEveryN and ForgeEveryN (weedrdma
// -fault.*, only in a build with -tags rdmafault) inject corruption after and
// before the transfer CRC, or forge a reply with both CRCs recomputed, for
// tests: the transfer check catches the first, only the needle's checksum
// the second, only the filer's e_tag MD5 (always checked on this path where
// the chunk has one) the third.
//
// # Authentication and limits
//
// The control connection opens with a mutual HMAC-SHA256 challenge over
// fresh nonces with the shared secret from security.toml ([rdma] key; see
// auth.go), or relies on mutual TLS; the server spends no PD, CQ or QP on a
// peer before it passed. The server bounds peers overall and per source
// address, the bytes and the number of one peer's unreleased replies, and
// the time a peer may stay silent or leave a frame unread.
//
// # Why control messages ride TCP and not SEND/RECV
//
// Requests carry read JWTs and replies carry rkeys; on the TLS control
// connection neither is visible on the wire, while SEND/RECV over RoCE is
// cleartext. TCP also gives framing, ordering and back-pressure without
// pre-posted receive buffers or credit accounting, and an EOF that tells the
// server at once that a peer died so its QP and slots are reclaimed. The cost
// is one kernel round trip per request (tens of µs), small next to moving
// the whole needles (typically 4 MiB) that reads move; bulk bytes always
// move by RDMA READ. Small needles are where SEND/RECV would win; revisit
// then.
//
// # Memory
//
// The NIC only ever sees the arena: an mmap'd region (MAP_HUGETLB when
// hugepages are reserved, else anonymous memory with MADV_HUGEPAGE) cut into
// fixed-size slots. Each peer gets its own protection domain and registers the
// arena in it without any remote access. Each reply is exposed through a
// window over exactly its bytes under a fresh rkey: a type 2 memory window
// bound to the peer's QP, or, on a device without them, an MR of its own.
// The window is revoked on release, after ReplyTimeout and on disconnect;
// a READ anywhere else is a remote access error, after which the server
// drops the peer (its QP has left RTS).
// Go memory is never registered: bytes are copied from a slot into the
// caller's buffer after the CRC check.
//
// Everything that is not verbs-specific (framing, slot allocation, the needle
// cache, circuit breaker, backoff, sidecar mapping, CRC) is plain Go and is
// tested in both builds.
//
// Locks: a client connection's write lock (clientConn.wmu) is taken before
// its state lock (clientConn.mu), in the payload functions sendWith runs;
// Client.closeMu is held for reading across a Fetch, during which
// Client.mu is taken to find a peer. No lock is taken in the other order.
package rdma
