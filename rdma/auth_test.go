package rdma

import (
	"reflect"
	"strings"
	"testing"
)

func TestAuthFramesRoundTrip(t *testing.T) {
	n1, _ := newNonce()
	n2, _ := newNonce()
	if n1 == n2 {
		t.Fatal("two nonces alike")
	}
	a := authHello{Version: protoVersion, Nonce: n1}
	if got, err := decodeAuthHello(a.encode()); err != nil || got != a {
		t.Fatalf("authHello: %+v %v", got, err)
	}
	c := authChallenge{Version: protoVersion, Status: statusOK, Mode: authSecret, Nonce: n2,
		Proof: proof([]byte("k"), labelServer, n1, n2, nil)}
	if got, err := decodeAuthChallenge(c.encode()); err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("authChallenge: %+v %v", got, err)
	}
	if _, err := decodeAuthChallenge(append(c.encode(), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	h := hello{Version: protoVersion, QP: qpInfo{QPN: 7, PSN: 9, MTU: 3, RDAtomic: 2}, Proof: c.Proof}
	if got, err := decodeHello(h.encode()); err != nil || got != h {
		t.Fatalf("hello: %+v %v", got, err)
	}
	if len(h.encodeV2()) != len(h.encode())-proofLen {
		t.Fatal("v2 hello length")
	}
}

// TestProofs: a proof depends on the secret, the label, both nonces and the
// QP it covers, so none can be replayed for another role, session or QP.
func TestProofs(t *testing.T) {
	k := []byte("0123456789abcdef")
	n1, _ := newNonce()
	n2, _ := newNonce()
	q1, q2 := qpInfo{QPN: 1}, qpInfo{QPN: 2}
	base := proof(k, labelClientHello, n1, n2, qpBytes(q1))
	if !proofOK(base, proof(k, labelClientHello, n1, n2, qpBytes(q1))) {
		t.Fatal("a proof does not verify")
	}
	for name, other := range map[string][proofLen]byte{
		"secret": proof([]byte("0123456789abcdeX"), labelClientHello, n1, n2, qpBytes(q1)),
		"label":  proof(k, labelServerHello, n1, n2, qpBytes(q1)),
		"nonces": proof(k, labelClientHello, n2, n1, qpBytes(q1)),
		"qp":     proof(k, labelClientHello, n1, n2, qpBytes(q2)),
	} {
		if proofOK(base, other) {
			t.Errorf("proof does not depend on the %s", name)
		}
	}
}

func TestCheckSecret(t *testing.T) {
	for _, tc := range []struct {
		key  string
		fail bool
	}{
		{"", false}, // no secret
		{"short", true},
		{"0123456789abcde", true}, // 15 bytes
		{"0123456789abcdef", false},
		{"0123456789abcdef-secret", false},
	} {
		err := CheckSecret([]byte(tc.key))
		if (err != nil) != tc.fail || (err != nil && !strings.Contains(err.Error(), "at least")) {
			t.Errorf("CheckSecret(%q) = %v, want failure %v", tc.key, err, tc.fail)
		}
	}
}
