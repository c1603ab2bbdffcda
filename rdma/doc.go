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
//	client → server  readRequest{id, fid, offset, length, jwt, releases}   (TCP)
//	server            fetches the needle over loopback HTTP into a registered slot
//	server → client  readReply{id, status, addr, rkey, length, crc32c}     (TCP)
//	client            RDMA READ addr/rkey → its own arena slot (QP), CRC32C check,
//	                  copy into the caller's buffer, release id (piggybacked)
//
// The READ is posted as up to eight signaled pieces, and the CRC32C is folded
// in piece by piece as each completes, so checking overlaps the transfer.
// The caller's buffer is written only once the whole CRC matched; a mismatch
// is counted and the read falls back to HTTP like any other failure.
// ServerOptions.CorruptEveryN (weedrdma -fault.corruptEvery) injects such
// mismatches for tests.
//
// # Why control messages ride TCP and not SEND/RECV
//
// Requests carry read JWTs and replies carry rkeys; on the TLS control
// connection neither is visible on the wire, while SEND/RECV over RoCE is
// cleartext. TCP also gives framing, ordering and back-pressure without
// pre-posted receive buffers or credit accounting, and an EOF that tells the
// server at once that a peer died so its QP and slots are reclaimed. The cost
// is one kernel round trip per request (tens of µs), small next to moving
// the 64 KiB–4 MiB blocks the page cache asks for; bulk bytes always move by
// RDMA READ. Small random reads are where SEND/RECV would win; revisit then.
//
// # Memory
//
// The NIC only ever sees the arena: an mmap'd region (MAP_HUGETLB when
// hugepages are reserved, else anonymous memory with MADV_HUGEPAGE) cut into
// fixed-size slots. Each peer gets its own protection domain and registers the
// arena in it, so an rkey handed to one peer is useless on another peer's QP.
// Go memory is never registered: bytes are copied from a slot into the
// caller's buffer after the CRC check.
//
// Everything that is not verbs-specific (framing, slot allocation, the needle
// cache, circuit breaker, backoff, sidecar mapping, CRC) is plain Go and is
// tested in both builds.
package rdma
