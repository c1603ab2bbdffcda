package rdma

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// clientConn is one live control connection and QP. readLoop, pollLoop and
// releaseLoop belong to it (wg); fail marks it dead, and the peer's run
// goroutine then calls teardown, which waits for them and destroys the QP.
// Only after teardown (gone closed) may a read whose RDMA READ never
// completed reuse its slot: until the QP is destroyed the NIC may write it.
type clientConn struct {
	c  *Client
	nc net.Conn
	br *bufio.Reader // owned by readLoop
	ep *endpoint
	wg sync.WaitGroup

	stop    chan struct{} // closed by fail: pollLoop returns
	dead    chan struct{} // closed by fail
	gone    chan struct{} // closed by teardown: the QP is destroyed
	relKick chan struct{} // a release is pending (buffered, 1)

	wmu sync.Mutex
	bw  *bufio.Writer // guarded by wmu

	epMu     sync.RWMutex // posting holds it shared; teardown exclusive
	epClosed bool         // guarded by epMu

	mu       sync.Mutex
	failErr  error                     // guarded by mu; set once, by fail
	replies  map[uint64]chan readReply // guarded by mu: requests awaiting a reply
	wcs      map[uint64]chan error     // guarded by mu: RDMA READ pieces awaiting completion
	releases []uint64                  // guarded by mu: reply ids to release
}

// fail marks the connection dead (once) and unblocks its goroutines.
func (cn *clientConn) fail(err error) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.failErr != nil {
		return
	}
	cn.failErr = err
	close(cn.stop)
	close(cn.dead)
	cn.nc.Close()
}

func (cn *clientConn) err() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.failErr
}

// teardown waits for the connection's goroutines, then destroys the QP and
// frees the endpoint. Called once, by the peer's run goroutine, after fail.
func (cn *clientConn) teardown() {
	cn.wg.Wait()
	cn.epMu.Lock()
	cn.epClosed = true
	cn.ep.close()
	cn.epMu.Unlock()
	close(cn.gone)
}

func (cn *clientConn) send(typ uint8, payload []byte) error {
	return cn.sendWith(typ, func() []byte { return payload })
}

// sendWith writes the frame that payload builds, under wmu; a nil payload
// writes nothing. Frames that carry releases take them inside payload, so
// that releases reach the server in the order they were taken: a request
// never overtakes a release taken before it, which weedrdma's per-peer
// limits on unreleased replies depend on.
func (cn *clientConn) sendWith(typ uint8, payload func() []byte) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	b := payload()
	if b == nil {
		return nil
	}
	if err := cn.nc.SetWriteDeadline(time.Now().Add(cn.c.opts.Timeout)); err != nil {
		return err
	}
	if err := writeFrame(cn.bw, typ, b); err != nil {
		return err
	}
	return cn.bw.Flush()
}

// readLoop delivers replies. A reply nobody waits for any more (its read
// timed out) is released at once.
func (cn *clientConn) readLoop() {
	for {
		typ, payload, err := readFrame(cn.br)
		if err == nil && typ != frameReply {
			err = fmt.Errorf("%w: unexpected frame type %d", errProtocol, typ)
		}
		var rep readReply
		if err == nil {
			rep, err = decodeReply(payload)
		}
		if err != nil {
			cn.fail(fmt.Errorf("control connection: %w", err))
			return
		}
		cn.mu.Lock()
		ch, ok := cn.replies[rep.ID]
		delete(cn.replies, rep.ID)
		cn.mu.Unlock()
		switch {
		case ok:
			ch <- rep
		case rep.Status == statusOK:
			cn.release(rep.ID)
		}
	}
}

// pollLoop delivers RDMA READ completions. A failed completion leaves the
// QP in the error state, so it also fails the connection.
func (cn *clientConn) pollLoop() {
	err := cn.ep.poll(cn.stop, func(wrid uint64, werr error) {
		cn.mu.Lock()
		ch, ok := cn.wcs[wrid]
		delete(cn.wcs, wrid)
		cn.mu.Unlock()
		if ok {
			ch <- werr
		}
		if werr != nil {
			cn.fail(werr)
		}
	})
	if err != nil {
		cn.fail(err)
	}
}

// releaseBatchDelay lets releases gather, and ride on a request frame if
// one is sent meanwhile, before a release frame of their own goes out.
const releaseBatchDelay = 2 * time.Millisecond

// keepAlive is how often an idle connection sends an empty release frame,
// well within weedrdma's default IdleTimeout (5 min).
const keepAlive = 30 * time.Second

func (cn *clientConn) releaseLoop() {
	ka := time.NewTicker(keepAlive)
	defer ka.Stop()
	for {
		select {
		case <-cn.dead:
			return
		case <-ka.C:
			if err := cn.send(frameRelease, encodeRelease(nil)); err != nil {
				cn.fail(err)
				return
			}
			continue
		case <-cn.relKick:
		}
		select {
		case <-cn.dead:
			return
		case <-time.After(releaseBatchDelay):
		}
		if err := cn.sendWith(frameRelease, func() []byte {
			cn.mu.Lock()
			ids := cn.takeReleasesLocked()
			cn.mu.Unlock()
			if len(ids) == 0 {
				return nil
			}
			return encodeRelease(ids)
		}); err != nil {
			cn.fail(err)
			return
		}
	}
}

func (cn *clientConn) takeReleasesLocked() []uint64 {
	n := min(len(cn.releases), maxReleases)
	ids := cn.releases[:n:n]
	cn.releases = cn.releases[n:]
	if len(cn.releases) > 0 {
		select {
		case cn.relKick <- struct{}{}:
		default:
		}
	}
	return ids
}

func (cn *clientConn) release(id uint64) {
	cn.mu.Lock()
	cn.releases = append(cn.releases, id)
	cn.mu.Unlock()
	select {
	case cn.relKick <- struct{}{}:
	default:
	}
}

// request sends req (with pending releases piggybacked) and waits for its
// reply. A reply with a status other than OK is returned as a fallback.
func (cn *clientConn) request(ctx context.Context, req readRequest) (readReply, error) {
	req.ID = cn.c.nextID.Add(1)
	ch := make(chan readReply, 1)
	cn.mu.Lock()
	if cn.failErr != nil {
		cn.mu.Unlock()
		return readReply{}, fallbackf(reasonTransport, true, "connection lost")
	}
	cn.replies[req.ID] = ch
	cn.mu.Unlock()
	if err := cn.sendWith(frameRequest, func() []byte {
		cn.mu.Lock()
		req.Releases = cn.takeReleasesLocked()
		cn.mu.Unlock()
		return req.encode()
	}); err != nil {
		cn.fail(err)
		return readReply{}, &fallback{reason: reasonTransport, sick: true, err: err}
	}
	var rep readReply
	select {
	case rep = <-ch:
	case <-cn.dead:
		return readReply{}, fallbackf(reasonTransport, true, "connection lost: %v", cn.err())
	case <-ctx.Done():
		cn.mu.Lock()
		_, waiting := cn.replies[req.ID]
		delete(cn.replies, req.ID)
		cn.mu.Unlock()
		if !waiting { // the reply raced in: release what it pinned
			if rep := <-ch; rep.Status == statusOK {
				cn.release(rep.ID)
			}
		}
		return readReply{}, fallbackf(reasonTimeout, true, "waiting for the reply: %v", ctx.Err())
	}
	switch rep.Status {
	case statusOK:
		return rep, nil
	case statusNoRange:
		return rep, fallbackf(reasonNoRange, false, "server: %s", rep.Err)
	case statusBusy, statusLimit:
		return rep, fallbackf(reasonBusy, false, "server busy: %d %s", rep.Status, rep.Err)
	case statusTooLarge:
		return rep, fallbackf(reasonTooLarge, false, "server: %s", rep.Err)
	default:
		return rep, fallbackf(reasonServer, false, "server: %d %s", rep.Status, rep.Err)
	}
}

// transfer RDMA-READs the reply's Length bytes through arena slot, releases
// the reply, and returns the bytes with their CRC32C, folded in piece by
// piece as they land. A needle that fits in the slot stays there: the bytes
// returned are the slot's, valid while the caller holds it. A larger one
// moves slot by slot into memory of the client's own.
func (cn *clientConn) transfer(ctx context.Context, rep readReply, slot int) ([]byte, uint32, error) {
	defer cn.release(rep.ID)
	c := cn.c
	off := slot * c.opts.SlotBytes
	mem := c.ar.mem[off : off+c.opts.SlotBytes]
	n := int(rep.Length)
	if n <= len(mem) {
		crc, err := cn.readSlot(ctx, mem[:n], off, rep.Addr, rep.RKey, 0)
		return mem[:n], crc, err
	}
	out := make([]byte, n)
	crc := uint32(0)
	for done := 0; done < n; {
		k := min(len(mem), n-done)
		var err error
		if crc, err = cn.readSlot(ctx, mem[:k], off, rep.Addr+uint64(done), rep.RKey, crc); err != nil {
			return nil, 0, err
		}
		copy(out[done:], mem[:k])
		done += k
	}
	return out, crc, nil
}

// readSlot RDMA-READs len(mem) bytes from raddr/rkey into mem (the arena at
// off) in pieces and returns crc updated with them, each piece folded in as
// soon as its completion arrives, while later pieces are still moving. On
// any failure the connection is failed and readSlot returns only after the
// QP is destroyed, since until then the NIC may still write into the slot.
func (cn *clientConn) readSlot(ctx context.Context, mem []byte, off int, raddr uint64, rkey uint32, crc uint32) (uint32, error) {
	c := cn.c
	piece, count := splitPieces(len(mem), c.opts.crcPieces, cn.ep.maxMessage())
	first := c.nextID.Add(uint64(count)) - uint64(count) + 1
	wcs := make([]chan error, count)
	cn.mu.Lock()
	for i := range wcs {
		wcs[i] = make(chan error, 1) // pollLoop never blocks on a send
		cn.wcs[first+uint64(i)] = wcs[i]
	}
	cn.mu.Unlock()
	posted, err := cn.post(first, off, len(mem), raddr, rkey, piece)
	if err == nil && posted != count {
		err = fmt.Errorf("posted %d work requests, planned %d", posted, count)
	}
	if err != nil {
		cn.mu.Lock()
		for i := range wcs {
			delete(cn.wcs, first+uint64(i))
		}
		cn.mu.Unlock()
		cn.fail(err)
		<-cn.gone
		return 0, &fallback{reason: reasonTransport, sick: true, err: err}
	}
	for i, wc := range wcs {
		select {
		case err := <-wc:
			if err != nil { // pollLoop has failed the connection
				<-cn.gone
				return 0, &fallback{reason: reasonTransport, sick: true, err: err}
			}
		case <-cn.dead:
			<-cn.gone
			return 0, fallbackf(reasonTransport, true, "connection lost during RDMA READ: %v", cn.err())
		case <-ctx.Done():
			// The READ may still land in the slot: kill the QP and wait until
			// it is destroyed before the slot is reused.
			cn.fail(fmt.Errorf("RDMA READ timed out: %w", ctx.Err()))
			<-cn.gone
			return 0, fallbackf(reasonTimeout, true, "RDMA READ: %v", ctx.Err())
		}
		crc = c.opts.crcFunc(crc, mem[i*piece:min((i+1)*piece, len(mem))])
	}
	return crc, nil
}

func (cn *clientConn) post(wrid uint64, off, n int, raddr uint64, rkey uint32, piece int) (int, error) {
	cn.epMu.RLock()
	defer cn.epMu.RUnlock()
	if cn.epClosed {
		return 0, errors.New("queue pair destroyed")
	}
	return cn.ep.postRead(wrid, off, n, raddr, rkey, piece)
}

// fetch asks for the chunk's whole stored needle, RDMA-READs it through
// slot and checks the one CRC32C computed as its bytes landed twice: against
// weedrdma's, which covers the transfer from its memory, and against the
// needle's own from the volume server, which covers everything since the
// volume server read it from disk (weedrdma's fetch, cache and memory, and
// the transfer). Then it decodes the needle exactly as the HTTP path would
// (needle.DecodeVerified, which checks the e_tag MD5 where no CRC was
// there to check) and hands all its logical bytes to use. They may lie in
// the slot, unless keep.
func (cn *clientConn) fetch(ctx context.Context, ch needle.Chunk, slot int, keep bool, use func([]byte)) error {
	c := cn.c
	rep, err := cn.request(ctx, readRequest{FileID: ch.FileID, JWT: c.jwt(ch.FileID)})
	if err != nil {
		return err
	}
	if limit := needle.StoredLimit(ch); int64(rep.Length) > limit {
		cn.release(rep.ID)
		return fallbackf(reasonTooLarge, false, "needle of %d stored bytes, over the %d-byte bound", rep.Length, limit)
	}
	stored, crc, err := cn.transfer(ctx, rep, slot)
	if err != nil {
		return err
	}
	if crc != rep.CRC {
		c.crcFailures.Add(1)
		return fallbackf(reasonCRC, true, "CRC32C %08x, server said %08x", crc, rep.CRC)
	}
	c.fetches.Add(1)
	c.fetchedBytes.Add(uint64(len(stored)))
	if !rep.HasSum {
		c.unchecked.Add(1)
	} else if !needle.CRCSumMatches(crc, rep.NeedleSum) {
		c.needleCRCFailures.Add(1)
		return fallbackf(reasonNeedleCRC, true, "CRC32C %08x of the %d stored bytes differs from the volume server's %08x",
			crc, len(stored), rep.NeedleSum)
	}
	if keep && len(stored) <= c.opts.SlotBytes {
		stored = bytes.Clone(stored) // the slot is reused once this fetch ends
	}
	// verifyETag always: the CRC32Cs above come from the server and
	// catch corruption; only the filer's e_tag catches a forger.
	logical, err := needle.DecodeVerified(ch, stored, rep.Gzip, rep.HasSum, true)
	if err != nil {
		return &fallback{reason: reasonDecode, err: err}
	}
	use(logical)
	return nil
}
