//go:build linux && cgo && rdma

package rdma

// Security and limits on real verbs (the integration/rxe VM): per-reply
// windows, authentication, the e_tag check against a forging server, and
// the per-peer and per-source limits.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weedfuse/weedfuse/internal/needle"
)

// qpPeer is a hand-driven client with a real QP: it asks for replies and
// RDMA-READs wherever it likes, the way a hostile client would, and keeps
// its control connection open after a failed READ.
type qpPeer struct {
	nc   net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	ar   *arena
	ep   *endpoint
	next uint64
}

func dialQP(t *testing.T, dev *device, addr string, secret []byte) *qpPeer {
	t.Helper()
	ar, err := newArena(8 << 20)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	q := &qpPeer{nc: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc), ar: ar}
	t.Cleanup(func() {
		nc.Close()
		if q.ep != nil {
			q.ep.close()
		}
		ar.free()
	})
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	defer nc.SetDeadline(time.Time{})
	cn, _ := newNonce()
	q.send(t, frameAuth, (&authHello{Version: protoVersion, Nonce: cn}).encode())
	_, payload, err := readFrame(q.br)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := decodeAuthChallenge(payload)
	if err != nil || ch.Status != statusOK {
		t.Fatalf("auth: %+v %v", ch, err)
	}
	if q.ep, err = dev.newEndpoint(ar, 16, true, ""); err != nil {
		t.Fatal(err)
	}
	h := hello{Version: protoVersion, QP: q.ep.local()}
	if secret != nil {
		h.Proof = proof(secret, labelClientHello, cn, ch.Nonce, qpBytes(h.QP))
	}
	q.send(t, frameHello, h.encode())
	_, payload, err = readFrame(q.br)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := decodeHello(payload)
	if err != nil || ans.Status != statusOK {
		t.Fatalf("hello: %+v %v", ans, err)
	}
	if err := q.ep.connect(ans.QP); err != nil {
		t.Fatal(err)
	}
	return q
}

func (q *qpPeer) send(t *testing.T, typ uint8, payload []byte) {
	t.Helper()
	if err := writeFrame(q.bw, typ, payload); err != nil {
		t.Fatal(err)
	}
	if err := q.bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// request asks for fid, releasing rel first, and returns the reply.
func (q *qpPeer) request(t *testing.T, fid string, rel ...uint64) readReply {
	t.Helper()
	q.next++
	q.send(t, frameRequest, (&readRequest{ID: q.next, FileID: fid, Releases: rel}).encode())
	q.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	typ, payload, err := readFrame(q.br)
	if err != nil || typ != frameReply {
		t.Fatalf("reply: type %d err %v", typ, err)
	}
	rep, err := decodeReply(payload)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// read RDMA-READs n bytes at raddr/rkey into the start of its arena and
// returns the completion's error.
func (q *qpPeer) read(n int, raddr uint64, rkey uint32) error {
	q.next++
	if _, err := q.ep.postRead(q.next, 0, n, raddr, rkey, n); err != nil {
		return err
	}
	res := make(chan error, 1)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		q.ep.poll(stop, func(_ uint64, err error) {
			select {
			case res <- err:
			default:
			}
		})
	}()
	defer func() { close(stop); <-done }()
	select {
	case err := <-res:
		return err
	case <-time.After(60 * time.Second):
		return errors.New("no completion in 60 s")
	}
}

// hungUp waits until the server closes q's control connection.
func (q *qpPeer) hungUp(t *testing.T) {
	t.Helper()
	q.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, q.br); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("the server did not hang up: %v", err)
	}
}

func isAccessError(err error) bool {
	return err != nil && strings.Contains(err.Error(), "remote access error")
}

// TestRXEWindows: each reply is readable through its own rkey over
// exactly its bytes, and through nothing else. A READ one byte past the
// window, a READ after the reply was released, after the server revoked it
// (ReplyTimeout), or through another peer's rkey fails with a remote access
// error; the server then finds that peer's QP out of RTS and drops it
// (QPErrors, the control connection closed), while a regular Client keeps
// reading over RDMA throughout. The same on both window modes: type 2
// memory windows, and per-reply MRs (forced, as on a device without MWs),
// and in the mode "auto" picks. Soft-RoCE does not enforce a memory
// window's bounds (the server's probe finds that, and auto then picks
// per-reply MRs); forced memory windows there still confine the rkey to
// its reply's peer and lifetime, and the test logs, not fails, the READs
// outside the bounds.
func TestRXEWindows(t *testing.T) {
	for _, mode := range []string{"auto", "mw", "mr"} {
		t.Run(mode, func(t *testing.T) {
			r := newRigWith(t, ServerOptions{Windows: mode, ReplyTimeout: 2 * time.Second})
			want := map[string]string{"mw": windowsMW, "mr": windowsMR, "auto": windowsMR}[mode]
			if mode == "auto" && r.srv.mwBounded {
				want = windowsMW
			}
			if st := r.srv.Stats(); st.WindowMode != want {
				t.Fatalf("window mode %q, want %q", st.WindowMode, want)
			}
			bounded := r.srv.windows == windowsMR || r.srv.mwBounded
			t.Logf("RDMA-WINDOW %s: mode %s, memory windows bounded by the device: %v", mode, want, r.srv.mwBounded)
			good := r.client(t, 2)
			ctx := context.Background()
			served := func(stage string) {
				t.Helper()
				dst := make([]byte, 1<<20)
				before := good.Stats().Reads
				if n, err := readChunk(good, ctx, r.chunk(fid1M), 0, dst); err != nil || !bytes.Equal(dst[:n], r.fv.needles[fid1M]) {
					t.Fatalf("%s: the other client: n=%d err=%v", stage, n, err)
				}
				if good.Stats().Reads != before+1 {
					t.Fatalf("%s: the other client's read was not served over RDMA", stage)
				}
			}
			served("start")
			dev := good.dev
			qpErrors := func() uint64 { return r.srv.Stats().QPErrors }
			dropped := func(stage string, q *qpPeer, want uint64) {
				t.Helper()
				waitFor(t, stage+": the server drops the peer", func() bool { return qpErrors() >= want })
				q.hungUp(t)
				served(stage)
			}

			// In the window: the bytes. One byte past it, or before it:
			// refused.
			var drops uint64
			outside := func(what string, fid string, at func(readReply) uint64) {
				t.Helper()
				q := dialQP(t, dev, r.srvAddr, nil)
				rep := q.request(t, fid)
				if rep.Status != statusOK {
					t.Fatalf("reply: %+v", rep)
				}
				if err := q.read(int(rep.Length), rep.Addr, rep.RKey); err != nil || !bytes.Equal(q.ar.mem[:rep.Length], r.fv.needles[fid]) {
					t.Fatalf("READ of the window: %v", err)
				}
				err := q.read(4096, at(rep), rep.RKey)
				t.Logf("RDMA-WINDOW %s: READ %s: %v", mode, what, err)
				switch {
				case isAccessError(err):
					drops++
					dropped(what, q, drops)
				case bounded:
					t.Fatalf("READ %s: %v, want a remote access error", what, err)
				default:
					t.Logf("RDMA-WINDOW %s: READ %s went through: this device does not bound memory windows (known for Soft-RoCE; auto picks per-reply MRs here)", mode, what)
					q.nc.Close() // its unreleased reply must not count as revoked below
				}
			}
			outside("one byte past the window", fid1M, func(rep readReply) uint64 { return rep.Addr + uint64(rep.Length) - 4095 })
			outside("one byte before the window", fid4M, func(rep readReply) uint64 { return rep.Addr - 1 })

			// After release: the rkey is dead.
			q := dialQP(t, dev, r.srvAddr, nil)
			rep := q.request(t, fid1M)
			if err := q.read(int(rep.Length), rep.Addr, rep.RKey); err != nil {
				t.Fatal(err)
			}
			// The release rides on the next request, so it is done when
			// that request's reply arrives.
			if rep2 := q.request(t, fid4M, rep.ID); rep2.Status != statusOK || rep2.RKey == rep.RKey {
				t.Fatalf("second reply %+v (first rkey %#x)", rep2, rep.RKey)
			}
			err := q.read(4096, rep.Addr, rep.RKey)
			t.Logf("RDMA-WINDOW %s: READ after release: %v", mode, err)
			if !isAccessError(err) {
				t.Fatalf("READ after release: %v, want a remote access error", err)
			}
			drops++
			dropped("after release", q, drops)

			// Unreleased past ReplyTimeout: revoked.
			waitFor(t, "no other peer holds a reply", func() bool { st := r.srv.Stats(); return st.Peers == 1 && st.PinnedSlots == 0 })
			revoked := r.srv.Stats().Revoked
			q = dialQP(t, dev, r.srvAddr, nil)
			rep = q.request(t, fid1M)
			time.Sleep(2 * time.Second) // ReplyTimeout
			waitFor(t, "the reply revoked", func() bool { return r.srv.Stats().Revoked > revoked })
			err = q.read(4096, rep.Addr, rep.RKey)
			t.Logf("RDMA-WINDOW %s: READ after the reply timed out: %v", mode, err)
			if !isAccessError(err) {
				t.Fatalf("READ after the reply was revoked: %v, want a remote access error", err)
			}
			drops++
			dropped("after revocation", q, drops)

			// Another peer's window: bound to that peer's QP (MW) or in
			// that peer's PD (MR), so useless to anyone else.
			a, b := dialQP(t, dev, r.srvAddr, nil), dialQP(t, dev, r.srvAddr, nil)
			rep = a.request(t, fid4M)
			if err := a.read(int(rep.Length), rep.Addr, rep.RKey); err != nil {
				t.Fatal(err)
			}
			err = b.read(4096, rep.Addr, rep.RKey)
			t.Logf("RDMA-WINDOW %s: READ through another peer's rkey: %v", mode, err)
			if !isAccessError(err) {
				t.Fatalf("READ through another peer's window: %v, want a remote access error", err)
			}
			drops++
			dropped("another peer's window", b, drops)
			// a is unharmed.
			if err := a.read(int(rep.Length), rep.Addr, rep.RKey); err != nil {
				t.Fatalf("the window's own peer after the other's violation: %v", err)
			}
			a.send(t, frameRelease, encodeRelease([]uint64{rep.ID}))
			st := r.srv.Stats()
			t.Logf("RDMA-WINDOW %s: server %+v", mode, st)
			waitFor(t, "slots unpinned", func() bool { return r.srv.Stats().PinnedSlots == 0 })
		})
	}
}

// TestRXEAuth: with a shared secret, a client that holds it reads over
// RDMA; one without it, or with another, is refused before the server
// spends a QP on it (QPs stays at the good client's one), and so is a
// hand-made peer whose hello proof is wrong (401). A client holding a
// secret refuses a server that does not prove it (a server without one).
func TestRXEAuth(t *testing.T) {
	secret := []byte("0123456789abcdef-shared")
	r := newRigWith(t, ServerOptions{Secret: secret})
	ctx := context.Background()
	dst := make([]byte, 1<<20)
	good := r.clientWith(t, ClientOptions{Secret: secret})
	if n, err := readChunk(good, ctx, r.chunk(fid1M), 0, dst); err != nil || !bytes.Equal(dst[:n], r.fv.needles[fid1M]) {
		t.Fatalf("client with the secret: n=%d err=%v", n, err)
	}
	refused := func(name string, c *Client) {
		t.Helper()
		_, err := readChunk(c, ctx, r.chunk(fid1M), 0, dst)
		t.Logf("RDMA-AUTH %s: %v", name, err)
		if !errors.Is(err, needle.ErrNotServed) || c.Stats().Connected != 0 || c.Stats().Reads != 0 {
			t.Fatalf("%s: %v, stats %+v", name, err, c.Stats())
		}
	}
	refused("no secret", r.clientWith(t, ClientOptions{Timeout: 5 * time.Second}))
	refused("wrong secret", r.clientWith(t, ClientOptions{Secret: []byte("fedcba9876543210-wrong"), Timeout: 5 * time.Second}))
	p, ans := dialRaw(t, r.srvAddr, protoVersion)
	if ans.Status != statusAuth {
		t.Fatalf("hand-made peer without a proof: %+v", ans)
	}
	p.nc.Close()
	p, ans = dialRawFrom(t, r.srvAddr, "", protoVersion, []byte("fedcba9876543210-wrong"))
	if ans.Status != statusAuth {
		t.Fatalf("hand-made peer with a wrong proof: %+v", ans)
	}
	p.nc.Close()
	waitFor(t, "auth failures counted", func() bool { return r.srv.Stats().AuthFailures >= 4 })
	if st := r.srv.Stats(); st.QPs != 1 {
		t.Fatalf("server holds %d QPs, want 1 (the authenticated client's): %+v", st.QPs, st)
	}
	if n, err := readChunk(good, ctx, r.chunk(fid4M), 0, make([]byte, 4<<20)); err != nil || n != 4<<20 {
		t.Fatalf("client with the secret, after the refusals: %v", err)
	}
	// The client pins the server's identity: a server without the secret
	// cannot prove it, and the client does not use it.
	open := newRig(t)
	c := open.clientWith(t, ClientOptions{Secret: secret, Timeout: 5 * time.Second})
	_, err := readChunk(c, ctx, open.chunk(fid1M), 0, dst)
	t.Logf("RDMA-AUTH server without the secret: %v", err)
	if !errors.Is(err, needle.ErrNotServed) || c.Stats().Connected != 0 {
		t.Fatalf("client with a secret against a server without: %v", err)
	}
	if st := open.srv.Stats(); st.QPs != 0 {
		t.Fatalf("unproven server: the client went on to the hello (%d QPs)", st.QPs)
	}
	t.Logf("RDMA-AUTH server %+v", r.srv.Stats())
}

// TestRXEForgedReplies: a server that forges every other reply, flipping a
// byte and sending the transfer CRC32C and the needle checksum of the
// flipped bytes, so that every CRC check passes. The filer's e_tag MD5,
// which the RDMA path checks always (not only with VerifyETag), catches
// every one; the reads fall back and the chain's HTTP step returns the
// right bytes.
func TestRXEForgedReplies(t *testing.T) {
	r := newRigWith(t, ServerOptions{ForgeEveryN: 2})
	c := r.clientWith(t, ClientOptions{MaxConcurrent: 2, WholeCacheBytes: -1})
	h := r.http(t)
	var httpReads atomic.Int64
	for i := 0; i < 6; i++ {
		for _, rg := range [][2]int64{{0, 1 << 20}, {4321, 1 << 19}} {
			fid := []string{fid1M, fid4M}[i%2]
			want := r.fv.needles[fid][rg[0] : rg[0]+rg[1]]
			if err := checkChain(c, h, r.chunk(fid), rg[0], want, &httpReads); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, sst := c.Stats(), r.srv.Stats()
	t.Logf("RDMA-FORGED forged=%d caught_by_etag=%d crc_failures=%d needle_crc_failures=%d rdma_reads=%d http_reads=%d",
		sst.Forged, st.Fallbacks["decode"], st.CRCFailures, st.NeedleCRCFailures, st.Reads, httpReads.Load())
	if sst.Forged == 0 || st.Fallbacks["decode"] != sst.Forged || st.CRCFailures != 0 || st.NeedleCRCFailures != 0 || st.Reads == 0 {
		t.Fatal("every forged reply must pass the CRCs and be caught by the e_tag")
	}
}

// TestRXELimits: each limit refuses the client that exceeds it, with a
// clear status, while a regular Client keeps reading over RDMA.
func TestRXELimits(t *testing.T) {
	ctx := context.Background()
	servedBy := func(t *testing.T, r *rig, c *Client, stage string) {
		t.Helper()
		dst := make([]byte, 1<<20)
		before := c.Stats().Reads
		if n, err := readChunk(c, ctx, r.chunk(fid1M), 0, dst); err != nil || !bytes.Equal(dst[:n], r.fv.needles[fid1M]) || c.Stats().Reads != before+1 {
			t.Fatalf("%s: the other client: n=%d err=%v", stage, n, err)
		}
	}
	t.Run("peers", func(t *testing.T) {
		r := newRigWith(t, ServerOptions{MaxPeers: 3})
		good := r.client(t, 1)
		servedBy(t, r, good, "start")
		p1, a1 := dialRaw(t, r.srvAddr, protoVersion)
		p2, a2 := dialRaw(t, r.srvAddr, protoVersion)
		p3, a3 := dialRaw(t, r.srvAddr, protoVersion)
		defer p1.nc.Close()
		defer p2.nc.Close()
		defer p3.nc.Close()
		t.Logf("RDMA-LIMIT peers: third extra peer: %d %s", a3.Status, a3.Err)
		if a1.Status != statusOK || a2.Status != statusOK || a3.Status != statusBusy || !strings.Contains(a3.Err, "too many peers") {
			t.Fatalf("peers: %+v %+v %+v", a1, a2, a3)
		}
		servedBy(t, r, good, "peer limit")
		p1.nc.Close()
		waitFor(t, "a peer slot free", func() bool { return r.srv.Stats().Peers == 2 })
		p4, a4 := dialRaw(t, r.srvAddr, protoVersion)
		defer p4.nc.Close()
		if a4.Status != statusOK || r.srv.Stats().RefusedPeers != 1 {
			t.Fatalf("after one left: %+v %+v", a4, r.srv.Stats())
		}
	})
	t.Run("perSource", func(t *testing.T) {
		r := newRigWith(t, ServerOptions{MaxPeersPerSource: 2})
		good := r.client(t, 1) // from 127.0.0.1
		p1, a1 := dialRawFrom(t, r.srvAddr, "127.0.0.2", protoVersion, nil)
		p2, a2 := dialRawFrom(t, r.srvAddr, "127.0.0.2", protoVersion, nil)
		p3, a3 := dialRawFrom(t, r.srvAddr, "127.0.0.2", protoVersion, nil)
		defer p1.nc.Close()
		defer p2.nc.Close()
		defer p3.nc.Close()
		t.Logf("RDMA-LIMIT perSource: third peer from 127.0.0.2: %d %s", a3.Status, a3.Err)
		if a1.Status != statusOK || a2.Status != statusOK || a3.Status != statusBusy || !strings.Contains(a3.Err, "127.0.0.2") {
			t.Fatalf("per source: %+v %+v %+v", a1, a2, a3)
		}
		servedBy(t, r, good, "per-source limit")
	})
	t.Run("replies", func(t *testing.T) {
		r := newRigWith(t, ServerOptions{MaxReplies: 2})
		good := r.client(t, 1)
		p, _ := dialRaw(t, r.srvAddr, protoVersion)
		defer p.nc.Close()
		reqs := []string{fid1M, fid4M, fidGz}
		var reps []readReply
		for i, fid := range reqs {
			p.send(t, frameRequest, (&readRequest{ID: uint64(i + 1), FileID: fid}).encode())
			reps = append(reps, p.reply(t))
		}
		t.Logf("RDMA-LIMIT replies: third unreleased reply: %d %s", reps[2].Status, reps[2].Err)
		if reps[0].Status != statusOK || reps[1].Status != statusOK || reps[2].Status != statusLimit || !strings.Contains(reps[2].Err, "unreleased replies") {
			t.Fatalf("replies: %+v", reps)
		}
		servedBy(t, r, good, "reply limit")
		p.send(t, frameRequest, (&readRequest{ID: 9, FileID: fidGz, Releases: []uint64{1}}).encode())
		if rep := p.reply(t); rep.Status != statusOK {
			t.Fatalf("after a release: %+v", rep)
		}
	})
	t.Run("pinned", func(t *testing.T) {
		r := newRigWith(t, ServerOptions{MaxPinnedBytes: 5 << 20})
		good := r.client(t, 1)
		p, _ := dialRaw(t, r.srvAddr, protoVersion)
		defer p.nc.Close()
		var reps []readReply
		for i, fid := range []string{fid4M, fid1M, fidMasked} {
			p.send(t, frameRequest, (&readRequest{ID: uint64(i + 1), FileID: fid}).encode())
			reps = append(reps, p.reply(t))
		}
		t.Logf("RDMA-LIMIT pinned: reply past 5 MiB: %d %s", reps[2].Status, reps[2].Err)
		if reps[0].Status != statusOK || reps[1].Status != statusOK || reps[2].Status != statusLimit || !strings.Contains(reps[2].Err, "pinned") {
			t.Fatalf("pinned: %+v", reps)
		}
		servedBy(t, r, good, "pinned-bytes limit")
		if st := r.srv.Stats(); st.LimitReplies != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("idle", func(t *testing.T) {
		r := newRigWith(t, ServerOptions{IdleTimeout: 1500 * time.Millisecond})
		good := r.client(t, 1)
		p, _ := dialRaw(t, r.srvAddr, protoVersion)
		defer p.nc.Close()
		// The regular client keeps reading (its frames keep it alive)
		// while the raw peer says nothing.
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
			servedBy(t, r, good, "idle peer")
			time.Sleep(100 * time.Millisecond)
		}
		p.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, p.br); err != nil {
			t.Fatalf("idle peer not dropped: %v", err)
		}
		if st := r.srv.Stats(); st.IdleDrops != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("write", func(t *testing.T) {
		r := newRigWith(t, ServerOptions{WriteTimeout: time.Second})
		good := r.client(t, 1)
		p, _ := dialRaw(t, r.srvAddr, protoVersion)
		defer p.nc.Close()
		// Requests whose error replies echo a long file id, never read:
		// the server's writes block once the socket buffers are full.
		long := strings.Repeat("x", maxString-64)
		go func() {
			for i := 0; i < 20000; i++ {
				p.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
				if err := writeFrame(p.bw, frameRequest, (&readRequest{ID: uint64(i + 1), FileID: long}).encode()); err != nil {
					return
				}
				if p.bw.Flush() != nil {
					return
				}
			}
		}()
		waitFor(t, "the peer that reads nothing dropped", func() bool { return r.srv.Stats().WriteDrops >= 1 })
		servedBy(t, r, good, "write deadline")
		t.Logf("RDMA-LIMIT write: server %+v", r.srv.Stats())
	})
}

// TestRXERangeReads: with RangeReads, a partial read of a needle stored as
// is moves only its range, through a window over just those bytes,
// checked against the range's CRC32C; a needle stored gzip-encoded is read
// whole (the server refuses a range of it, 416), and a range corrupted
// after its CRC is caught and read over HTTP. A READ one byte past the
// range's window is refused (where the device bounds windows).
func TestRXERangeReads(t *testing.T) {
	r := newRigWith(t, ServerOptions{CorruptEveryN: 2})
	c := r.clientWith(t, ClientOptions{MaxConcurrent: 2, WholeCacheBytes: -1, RangeReads: true})
	h := r.http(t)
	var httpReads atomic.Int64
	var want int64
	ranges := []struct {
		fid     string
		off, n  int64
		isRange bool
	}{
		{fid1M, 0, 4096, true}, {fid1M, 12345, 100000, true}, {fid4M, 3 << 20, 1 << 20, true},
		{fid4M, 2<<20 - 500, 1000, true}, {fid1M, 1<<20 - 777, 777, true}, {fid4M, 1 << 19, 1 << 20, true},
	}
	for i := 0; i < 3; i++ {
		for _, rg := range ranges {
			if err := checkChain(c, h, r.chunk(rg.fid), rg.off, r.fv.needles[rg.fid][rg.off:rg.off+rg.n], &httpReads); err != nil {
				t.Fatal(err)
			}
			want += rg.n
		}
	}
	gz := r.chunk(fidGz)
	if err := checkChain(c, h, gz, 1000, r.fv.needles[fidGz][1000:6000], &httpReads); err != nil {
		t.Fatal(err)
	}
	st, sst := c.Stats(), r.srv.Stats()
	t.Logf("RDMA-RANGE range_fetches=%d range_bytes=%d whole_fetches=%d crc_failures=%d (server corrupted %d) http_reads=%d server_bytes_offered=%d",
		st.RangeFetches, st.RangeBytes, st.Fetches, st.CRCFailures, sst.Corrupted, httpReads.Load(), sst.BytesOffered)
	if st.RangeFetches == 0 || st.RangeFetches+st.CRCFailures < uint64(3*len(ranges)) || st.Fetches != 1 ||
		st.CRCFailures == 0 || int64(st.RangeBytes) > want || sst.BytesOffered > uint64(want)+uint64(len(r.fv.needles[fidGz])) {
		t.Fatalf("client %+v server %+v", st, sst)
	}

	// The window covers the range only.
	q := dialQP(t, c.dev, r.srvAddr, nil)
	q.next++
	q.send(t, frameRequest, (&readRequest{ID: q.next, FileID: fid4M, Offset: 1 << 20, Length: 8192}).encode())
	_, payload, err := readFrame(q.br)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := decodeReply(payload)
	if err != nil || rep.Status != statusOK || !rep.Range || rep.Length != 8192 {
		t.Fatalf("range reply %+v %v", rep, err)
	}
	if err := q.read(8192, rep.Addr, rep.RKey); err != nil || !bytes.Equal(q.ar.mem[:8192], r.fv.needles[fid4M][1<<20:1<<20+8192]) {
		t.Fatalf("READ of the range: %v", err)
	}
	err = q.read(4096, rep.Addr+8192-4095, rep.RKey)
	t.Logf("RDMA-RANGE READ one byte past the range's window (%s): %v", r.srv.WindowMode(), err)
	if (r.srv.windows == windowsMR || r.srv.mwBounded) && !isAccessError(err) {
		t.Fatalf("READ past the range: %v, want a remote access error", err)
	}
}
