package rdma

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Wire protocol of the control connection. Every frame is a 5-byte header,
// {type u8, payload length u32 big-endian}, then the payload. Payloads are
// fixed fields in big-endian order, strings and lists with a u16 length
// prefix. A frame that does not decode exactly (short, trailing bytes, bad
// lengths) is a protocol error and ends the connection: there is no way to
// resynchronize a byte stream after a framing error.

// handshakeTimeout bounds the hello exchange and QP setup of a new control
// connection.
const handshakeTimeout = 10 * time.Second

const (
	// protoVersion 3: the connection opens with an authentication
	// exchange (auth.go) before the hellos. Version 2: a request names a
	// whole stored needle (no range) and a reply carries the needle's own
	// checksum. A peer of another version is refused, and its reads fall
	// back to HTTP.
	protoVersion = 3

	frameHello   = 1 // both directions, once, after auth: version + queue pair parameters + proof
	frameRequest = 2 // client → server
	frameReply   = 3 // server → client
	frameRelease = 4 // client → server: slots the client is done reading (an empty list is a keepalive)
	frameAuth    = 5 // both directions, once, first: nonces and the server's proof

	frameHeaderLen = 5
	// maxFrame bounds a payload so a garbage length cannot make a peer
	// allocate gigabytes. The largest legitimate frame is a request with a
	// long JWT and a full release list.
	maxFrame = 64 << 10
	// maxReleases bounds one frame's release list (8 bytes each).
	maxReleases = 4096
	maxString   = 8 << 10
)

// Reply statuses follow HTTP so that a volume server's answer passes through
// unchanged; statusOK is the only success.
const (
	statusOK         = 200
	statusBadRequest = 400
	statusAuth       = 401 // no or wrong shared secret
	statusLimit      = 429 // a per-peer limit (pinned bytes, unreleased replies)
	statusTooLarge   = 413
	statusNoRange    = 416 // a range of a needle stored gzip-encoded: ask for the whole needle
	statusUpstream   = 502
	statusBusy       = 503
	statusTimeout    = 504
)

var errProtocol = errors.New("rdma protocol error")

// qpInfo is what one side of a queue pair tells the other to connect it.
type qpInfo struct {
	QPN      uint32
	PSN      uint32 // 24 bits, from crypto/rand
	LID      uint16
	MTU      uint8 // enum ibv_mtu: 1=256 … 5=4096
	RDAtomic uint8 // outstanding RDMA READs this side can initiate (client) or serve (server)
	GID      [16]byte
}

// hello opens a control connection in both directions. Status is zero from
// the client; the server answers statusOK or an error status and closes.
type hello struct {
	Version uint16
	Status  uint16
	Err     string
	QP      qpInfo
	Proof   [proofLen]byte // HMAC over the nonces and QP (auth.go); zero without a secret
}

// readRequest asks for the whole stored bytes of a needle, as the volume
// server keeps them (it is asked with Accept-Encoding: gzip), or, with
// Length > 0, for the range [Offset, Offset+Length) of them (clipped at the
// needle's end). Only a whole needle is covered by the volume server's
// checksum: weedrdma checks the whole needle against it and answers a range
// with the range's own CRC32C (a verified range). Releases piggybacks reply
// ids whose slots the client no longer reads.
type readRequest struct {
	ID       uint64
	FileID   string
	JWT      string
	Releases []uint64
	Offset   uint64
	Length   uint32
}

// Reply flags.
const (
	replyHasSum = 1 << iota // NeedleSum holds the volume server's checksum of the needle
	replyGzip               // the volume server sent the needle as Content-Encoding: gzip
	replyRange              // the reply is the requested range; CRC covers it, NeedleSum the whole needle
	replyFlags  = replyHasSum | replyGzip | replyRange
)

// readReply answers a request. On statusOK the Length stored bytes of the
// needle lie at Addr/RKey in the server's registered memory until the client
// releases ID, and CRC is the CRC32C of those bytes as the server sends them
// (the transfer check). HasSum says the volume server gave the needle's
// checksum (its ETag header), which is NeedleSum: the client checks the
// bytes it received against it end to end. Gzip says the volume server sent
// them gzip-encoded, which decoding needs to know. On any other status the
// server holds nothing.
type readReply struct {
	ID        uint64
	Status    uint16
	Err       string
	Addr      uint64
	RKey      uint32
	Length    uint32
	CRC       uint32
	HasSum    bool
	Gzip      bool
	Range     bool
	NeedleSum uint32
}

// encoder appends big-endian fields.
type encoder struct{ b []byte }

func (e *encoder) u8(v uint8)   { e.b = append(e.b, v) }
func (e *encoder) u16(v uint16) { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *encoder) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) str(s string) {
	if len(s) > maxString {
		s = s[:maxString] // only error texts can be this long; callers bound the rest
	}
	e.u16(uint16(len(s)))
	e.b = append(e.b, s...)
}
func (e *encoder) ids(ids []uint64) {
	e.u16(uint16(len(ids)))
	for _, id := range ids {
		e.u64(id)
	}
}

// decoder reads big-endian fields; the first short read sets err and every
// later read returns zero, so a decode function checks err once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("%w: short payload", errProtocol)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}
func (d *decoder) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}
func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}
func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}
func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}
func (d *decoder) str() string {
	n := int(d.u16())
	if n > maxString && d.err == nil {
		d.err = fmt.Errorf("%w: string of %d bytes", errProtocol, n)
	}
	return string(d.take(n))
}
func (d *decoder) ids() []uint64 {
	n := int(d.u16())
	if d.err == nil && n > maxReleases {
		d.err = fmt.Errorf("%w: %d releases", errProtocol, n)
	}
	if d.err != nil || n == 0 {
		return nil
	}
	ids := make([]uint64, n) // n ≤ maxReleases: bounded
	for i := range ids {
		ids[i] = d.u64()
	}
	return ids
}

// done reports the sticky error, or trailing bytes as an error.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errProtocol, len(d.b))
	}
	return d.err
}

func (h *hello) encode() []byte {
	e := encoder{b: make([]byte, 0, 64)}
	e.u16(h.Version)
	e.u16(h.Status)
	e.str(h.Err)
	e.u32(h.QP.QPN)
	e.u32(h.QP.PSN)
	e.u16(h.QP.LID)
	e.u8(h.QP.MTU)
	e.u8(h.QP.RDAtomic)
	e.b = append(e.b, h.QP.GID[:]...)
	e.b = append(e.b, h.Proof[:]...)
	return e.b
}

// encodeV2 is the hello as protocol 2 had it (no proof): how a refusal of a
// version 2 client is worded, so that it can read why.
func (h *hello) encodeV2() []byte {
	b := h.encode()
	return b[:len(b)-proofLen]
}

func decodeHello(p []byte) (hello, error) {
	d := decoder{b: p}
	var h hello
	h.Version = d.u16()
	h.Status = d.u16()
	h.Err = d.str()
	h.QP.QPN = d.u32()
	h.QP.PSN = d.u32()
	h.QP.LID = d.u16()
	h.QP.MTU = d.u8()
	h.QP.RDAtomic = d.u8()
	copy(h.QP.GID[:], d.take(16))
	copy(h.Proof[:], d.take(proofLen))
	return h, d.done()
}

func (r *readRequest) encode() []byte {
	e := encoder{b: make([]byte, 0, 16+len(r.FileID)+len(r.JWT)+8*len(r.Releases))}
	e.u64(r.ID)
	e.str(r.FileID)
	e.str(r.JWT)
	e.ids(r.Releases)
	e.u64(r.Offset)
	e.u32(r.Length)
	return e.b
}

func decodeRequest(p []byte) (readRequest, error) {
	d := decoder{b: p}
	var r readRequest
	r.ID = d.u64()
	r.FileID = d.str()
	r.JWT = d.str()
	r.Releases = d.ids()
	r.Offset = d.u64()
	r.Length = d.u32()
	if r.Length == 0 && r.Offset != 0 && d.err == nil {
		d.err = fmt.Errorf("%w: offset %d without a length", errProtocol, r.Offset)
	}
	return r, d.done()
}

func (r *readReply) encode() []byte {
	e := encoder{b: make([]byte, 0, 40+len(r.Err))}
	e.u64(r.ID)
	e.u16(r.Status)
	e.str(r.Err)
	e.u64(r.Addr)
	e.u32(r.RKey)
	e.u32(r.Length)
	e.u32(r.CRC)
	var flags uint8
	if r.HasSum {
		flags |= replyHasSum
	}
	if r.Gzip {
		flags |= replyGzip
	}
	if r.Range {
		flags |= replyRange
	}
	e.u8(flags)
	e.u32(r.NeedleSum)
	return e.b
}

func decodeReply(p []byte) (readReply, error) {
	d := decoder{b: p}
	var r readReply
	r.ID = d.u64()
	r.Status = d.u16()
	r.Err = d.str()
	r.Addr = d.u64()
	r.RKey = d.u32()
	r.Length = d.u32()
	r.CRC = d.u32()
	flags := d.u8()
	if flags&^replyFlags != 0 && d.err == nil {
		d.err = fmt.Errorf("%w: unknown reply flags %#x", errProtocol, flags)
	}
	r.HasSum, r.Gzip, r.Range = flags&replyHasSum != 0, flags&replyGzip != 0, flags&replyRange != 0
	r.NeedleSum = d.u32()
	if !r.HasSum && r.NeedleSum != 0 && d.err == nil {
		// Exactly one encoding per reply: a decoded reply re-encodes to
		// the bytes it came from.
		d.err = fmt.Errorf("%w: needle checksum %08x without its flag", errProtocol, r.NeedleSum)
	}
	return r, d.done()
}

func encodeRelease(ids []uint64) []byte {
	e := encoder{b: make([]byte, 0, 2+8*len(ids))}
	e.ids(ids)
	return e.b
}

func decodeRelease(p []byte) ([]uint64, error) {
	d := decoder{b: p}
	ids := d.ids()
	return ids, d.done()
}

// writeFrame writes one frame to w; the caller flushes and serializes writers.
func writeFrame(w *bufio.Writer, typ uint8, payload []byte) error {
	if len(payload) > maxFrame {
		return fmt.Errorf("%w: frame of %d bytes", errProtocol, len(payload))
	}
	var h [frameHeaderLen]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(len(payload)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// readFrame reads one frame. The payload is freshly allocated (decoders keep
// no reference into a reused buffer).
func readFrame(r *bufio.Reader) (uint8, []byte, error) {
	var h [frameHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("%w: frame length %d", errProtocol, n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, fmt.Errorf("%w: truncated frame: %w", errProtocol, err)
	}
	return h[0], p, nil
}
