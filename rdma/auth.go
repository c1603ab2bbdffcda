package rdma

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Authentication of the control connection (protocol 3). Before the server
// spends a PD, CQ or QP on a peer, both sides prove that they hold the
// shared secret (security.toml's [rdma] key), with HMAC-SHA256 over two
// fresh nonces, so neither a client nor a server without it gets through:
//
//	client → server  auth{version, client nonce}
//	server → client  auth{version, status, mode, server nonce, server proof}
//	client → server  hello{version, QP, client proof}     (client checks the server's proof first)
//	server → client  hello{version, status, QP, server hello proof}
//
// The hello proofs also cover the queue pair parameters, so a machine in the
// middle cannot splice its own QP into an authenticated exchange. A server
// without a secret (mutual TLS, or -insecure) says so in mode; a client that
// holds a secret refuses such a server, since it could not prove itself.

const (
	nonceLen = 32
	proofLen = sha256.Size

	authSecret = 1 // mode bit: the server requires (and proves) the shared secret
)

// authHello is the client's first frame.
type authHello struct {
	Version uint16
	Nonce   [nonceLen]byte
}

// authChallenge is the server's answer to it.
type authChallenge struct {
	Version uint16
	Status  uint16
	Err     string
	Mode    uint8
	Nonce   [nonceLen]byte
	Proof   [proofLen]byte
}

func (a *authHello) encode() []byte {
	e := encoder{b: make([]byte, 0, 2+nonceLen)}
	e.u16(a.Version)
	e.b = append(e.b, a.Nonce[:]...)
	return e.b
}

func decodeAuthHello(p []byte) (authHello, error) {
	d := decoder{b: p}
	var a authHello
	a.Version = d.u16()
	copy(a.Nonce[:], d.take(nonceLen))
	return a, d.done()
}

func (a *authChallenge) encode() []byte {
	e := encoder{b: make([]byte, 0, 8+len(a.Err)+nonceLen+proofLen)}
	e.u16(a.Version)
	e.u16(a.Status)
	e.str(a.Err)
	e.u8(a.Mode)
	e.b = append(e.b, a.Nonce[:]...)
	e.b = append(e.b, a.Proof[:]...)
	return e.b
}

func decodeAuthChallenge(p []byte) (authChallenge, error) {
	d := decoder{b: p}
	var a authChallenge
	a.Version = d.u16()
	a.Status = d.u16()
	a.Err = d.str()
	a.Mode = d.u8()
	copy(a.Nonce[:], d.take(nonceLen))
	copy(a.Proof[:], d.take(proofLen))
	return a, d.done()
}

func newNonce() ([nonceLen]byte, error) {
	var n [nonceLen]byte
	_, err := rand.Read(n[:])
	return n, err
}

// Proof labels: each proof says who makes it and over what, so that no
// proof can be replayed as another.
const (
	labelServer      = "weedrdma v3 server"
	labelClientHello = "weedrdma v3 client hello"
	labelServerHello = "weedrdma v3 server hello"
)

// proof is HMAC-SHA256(secret, label || client nonce || server nonce || extra).
func proof(secret []byte, label string, cn, sn [nonceLen]byte, extra []byte) [proofLen]byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write(cn[:])
	m.Write(sn[:])
	m.Write(extra)
	var out [proofLen]byte
	copy(out[:], m.Sum(nil))
	return out
}

func proofOK(got, want [proofLen]byte) bool { return hmac.Equal(got[:], want[:]) }

// qpBytes is the part of a hello that the hello proofs cover.
func qpBytes(q qpInfo) []byte {
	h := hello{QP: q}
	return h.encode()
}

var errAuth = errors.New("rdma authentication failed")

// minSecret is the shortest [rdma] key accepted.
const minSecret = 16

// CheckSecret checks the [rdma] key of security.toml (read with the rest of
// the file by volume.LoadSecurityTOML, as RDMAKey), which weedrdma and the
// mounts share:
//
//	[rdma]
//	key = "a long random string shared by every weedrdma and mount"
//
// An empty key is no secret and no error; a key shorter than 16 bytes is an
// error.
func CheckSecret(key []byte) error {
	if len(key) > 0 && len(key) < minSecret {
		return fmt.Errorf("rdma: [rdma] key is %d bytes, want at least %d", len(key), minSecret)
	}
	return nil
}
