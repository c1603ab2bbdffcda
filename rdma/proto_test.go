package rdma

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"testing"
)

func TestProtocolRoundTrip(t *testing.T) {
	gid := [16]byte{0: 0xfe, 15: 7}
	tests := []struct {
		name string
		typ  uint8
		msg  any
	}{
		{"hello client", frameHello, hello{Version: protoVersion, QP: qpInfo{QPN: 0x11, PSN: 0xabcdef, LID: 3, MTU: 3, RDAtomic: 16, GID: gid}}},
		{"hello refusal", frameHello, hello{Version: protoVersion, Status: statusBusy, Err: "no QP"}},
		{"request", frameRequest, readRequest{ID: 1 << 60, FileID: "3,01637037d6", JWT: "a.b.c"}},
		{"request releases", frameRequest, readRequest{ID: 9, FileID: "7,ff00000001", Releases: []uint64{1, 2, 1 << 63}}},
		{"request range", frameRequest, readRequest{ID: 10, FileID: "7,ff00000001", Offset: 1 << 40, Length: 4096}},
		{"reply range", frameReply, readReply{ID: 13, Status: statusOK, Length: 4096, CRC: 2, HasSum: true, Range: true, NeedleSum: 3}},
		{"reply ok", frameReply, readReply{ID: 9, Status: statusOK, Addr: 0x7f0000001000, RKey: 0x1234, Length: 1 << 20, CRC: 0xdeadbeef,
			HasSum: true, NeedleSum: 0xdeadbeef}},
		{"reply ok gzip", frameReply, readReply{ID: 11, Status: statusOK, Length: 7, CRC: 1, HasSum: true, Gzip: true}},
		{"reply ok no checksum", frameReply, readReply{ID: 12, Status: statusOK, Length: 1 << 22, CRC: 0xffffffff, Gzip: true}},
		{"reply error", frameReply, readReply{ID: 10, Status: 404, Err: "not found"}},
		{"release", frameRelease, []uint64{5, 6, 7}},
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	for _, tc := range tests {
		var p []byte
		switch m := tc.msg.(type) {
		case hello:
			p = m.encode()
		case readRequest:
			p = m.encode()
		case readReply:
			p = m.encode()
		case []uint64:
			p = encodeRelease(m)
		}
		if err := writeFrame(w, tc.typ, p); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	r := bufio.NewReader(&buf)
	for _, tc := range tests {
		typ, p, err := readFrame(r)
		if err != nil || typ != tc.typ {
			t.Fatalf("%s: frame type %d err %v", tc.name, typ, err)
		}
		var got any
		switch tc.typ {
		case frameHello:
			got, err = decodeHello(p)
		case frameRequest:
			got, err = decodeRequest(p)
		case frameReply:
			got, err = decodeReply(p)
		case frameRelease:
			got, err = decodeRelease(p)
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !reflect.DeepEqual(got, tc.msg) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.msg)
		}
	}
}

func TestProtocolRejects(t *testing.T) {
	if _, err := decodeRequest((&readRequest{ID: 1, FileID: "1,0100000001", Offset: 5}).encode()); err == nil {
		t.Error("an offset without a length decoded")
	}
	req := (&readRequest{ID: 1, FileID: "1,0100000001"}).encode()
	reply := (&readReply{ID: 1, Status: statusOK, Length: 10, CRC: 2, HasSum: true, NeedleSum: 2}).encode()
	flags := len(reply) - 5 // the reply's flags byte, before the needle checksum
	tests := []struct {
		name   string
		decode func([]byte) error
		p      []byte
	}{
		{"short request", func(p []byte) error { _, err := decodeRequest(p); return err }, req[:len(req)-1]},
		{"trailing bytes", func(p []byte) error { _, err := decodeRequest(p); return err }, append(append([]byte{}, req...), 0)},
		{"short reply", func(p []byte) error { _, err := decodeReply(p); return err }, reply[:len(reply)-1]},
		{"reply trailing bytes", func(p []byte) error { _, err := decodeReply(p); return err }, append(append([]byte{}, reply...), 0)},
		{"unknown reply flags", func(p []byte) error { _, err := decodeReply(p); return err }, func() []byte {
			b := append([]byte{}, reply...)
			b[flags] |= 0x80
			return b
		}()},
		{"needle checksum without its flag", func(p []byte) error { _, err := decodeReply(p); return err }, func() []byte {
			b := append([]byte{}, reply...)
			b[flags] &^= replyHasSum
			return b
		}()},
		{"version 1 reply", func(p []byte) error { _, err := decodeReply(p); return err }, func() []byte {
			// v1: id, status, err, addr, rkey, length, crc, size u64.
			b := append([]byte{}, reply[:len(reply)-5]...)
			return append(b, 0, 0, 0, 0, 0, 0x40, 0, 0)
		}()},
		{"version 1 request", func(p []byte) error { _, err := decodeRequest(p); return err }, func() []byte {
			// v1: id, flags, fid, offset u64, length u32, jwt, releases.
			b := []byte{0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 12}
			b = append(b, "1,0100000001"...)
			return append(b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0)
		}()},
		{"release count lies", func(p []byte) error { _, err := decodeRelease(p); return err }, []byte{0, 3, 0, 0, 0, 0, 0, 0, 0, 1}},
		{"too many releases", func(p []byte) error { _, err := decodeRelease(p); return err }, []byte{0xff, 0xff}},
		{"empty hello", func(p []byte) error { _, err := decodeHello(p); return err }, nil},
		{"reply string past end", func(p []byte) error { _, err := decodeReply(p); return err }, []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 200, 0x10, 0}},
		{"short request", func(p []byte) error { _, err := decodeRequest(p); return err }, req[:3]},
	}
	for _, tc := range tests {
		if err := tc.decode(tc.p); !errors.Is(err, errProtocol) {
			t.Errorf("%s: err %v, want a protocol error", tc.name, err)
		}
	}
	// A header announcing more than maxFrame bytes is refused before any allocation.
	r := bufio.NewReader(bytes.NewReader([]byte{frameRequest, 0x7f, 0xff, 0xff, 0xff}))
	if _, _, err := readFrame(r); !errors.Is(err, errProtocol) {
		t.Errorf("oversized frame: err %v", err)
	}
	r = bufio.NewReader(bytes.NewReader([]byte{frameRequest, 0, 0, 0, 9, 1, 2}))
	if _, _, err := readFrame(r); !errors.Is(err, errProtocol) {
		t.Errorf("truncated frame: err %v", err)
	}
}

// A read deadline that passes in the middle of a frame stays visible as a
// net.Error timeout through readFrame's error, so the server counts a peer
// that stalls mid-frame as idle, as one that stalls between frames.
func TestReadFrameKeepsTimeout(t *testing.T) {
	r := bufio.NewReader(io.MultiReader(bytes.NewReader([]byte{frameRequest, 0, 0, 0, 9, 1, 2}), timeoutReader{}))
	_, _, err := readFrame(r)
	var ne net.Error
	if !errors.Is(err, errProtocol) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("stalled frame: err %v, want errProtocol wrapping a timeout", err)
	}
}

// timeoutReader fails every read as a passed read deadline does.
type timeoutReader struct{}

func (timeoutReader) Read([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }

// FuzzFrameDecoder feeds arbitrary bytes through the frame reader and every
// payload decoder, as a server or client does with what it receives: garbage
// must produce errors, never a panic or a huge allocation, and whatever
// decodes must re-encode to the very bytes it came from (one encoding per
// message, so no two peers can read one frame differently).
func FuzzFrameDecoder(f *testing.F) {
	f.Add((&readRequest{ID: 1, FileID: "3,01637037d6", JWT: "x", Releases: []uint64{4}}).encode())
	f.Add((&readReply{ID: 2, Status: 200, Length: 5, CRC: 9, HasSum: true, Gzip: true, NeedleSum: 9}).encode())
	f.Add((&readReply{ID: 3, Status: 502, Err: "crc32c differs"}).encode())
	f.Add((&hello{Version: protoVersion}).encode())
	f.Add([]byte{frameRequest, 0, 0, 0, 3, 1, 2, 3})
	f.Add((&authHello{Version: protoVersion, Nonce: [nonceLen]byte{1}}).encode())
	f.Add((&authChallenge{Version: protoVersion, Status: 403, Err: "no", Mode: authSecret}).encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		// The auth frames come before the peer has proved anything.
		if a, err := decodeAuthHello(data); err == nil && !bytes.Equal(a.encode(), data) {
			t.Fatalf("auth hello %+v re-encodes differently", a)
		}
		if a, err := decodeAuthChallenge(data); err == nil && !bytes.Equal(a.encode(), data) {
			t.Fatalf("auth challenge %+v re-encodes differently", a)
		}
		if h, err := decodeHello(data); err == nil && !bytes.Equal(h.encode(), data) {
			t.Fatalf("hello %+v re-encodes differently", h)
		}
		if r, err := decodeRequest(data); err == nil && !bytes.Equal(r.encode(), data) {
			t.Fatalf("request %+v re-encodes differently", r)
		}
		if r, err := decodeReply(data); err == nil && !bytes.Equal(r.encode(), data) {
			t.Fatalf("reply %+v re-encodes differently", r)
		}
		if ids, err := decodeRelease(data); err == nil && !bytes.Equal(encodeRelease(ids), data) {
			t.Fatalf("release %v re-encodes differently", ids)
		}
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			_, p, err := readFrame(r)
			if err != nil {
				return
			}
			if len(p) > maxFrame {
				t.Fatalf("payload of %d bytes passed the frame limit", len(p))
			}
			_, _ = decodeRequest(p)
			_, _ = decodeReply(p)
		}
	})
}
