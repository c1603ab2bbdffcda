package volume

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestSignReadJWT(t *testing.T) {
	key := []byte("readsecret123")
	token := SignReadJWT(key, "6,0246cd8abf", 10*time.Second)
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q has %d parts", token, len(parts))
	}
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil || string(header) != `{"alg":"HS256","typ":"JWT"}` {
		t.Errorf("header %q, %v", header, err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)); parts[2] != want {
		t.Errorf("signature %q, want %q", parts[2], want)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Fid string `json:"fid"`
		Exp int64  `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Fid != "6,0246cd8abf" {
		t.Errorf("fid claim %q", claims.Fid)
	}
	if d := claims.Exp - time.Now().Add(10*time.Second).Unix(); d < -2 || d > 2 {
		t.Errorf("exp claim %d is %ds off now+10s", claims.Exp, d)
	}

	if !validJWT(key, "Bearer "+token, "6,0246cd8abf") {
		t.Error("the fake volume server rejects the token")
	}
	if validJWT(key, "Bearer "+token, "6,0246cd8abe") {
		t.Error("the token opened another file id")
	}
	if validJWT([]byte("other"), "Bearer "+token, "6,0246cd8abf") {
		t.Error("the token verified under another key")
	}
}

func TestSignReadJWTWithoutExpiry(t *testing.T) {
	token := SignReadJWT([]byte("k"), "1,01", 0)
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if err != nil || string(payload) != `{"fid":"1,01"}` {
		t.Errorf("payload %q, %v; want no exp claim", payload, err)
	}
}

func TestSignReadJWTWithoutKey(t *testing.T) {
	if token := SignReadJWT(nil, "1,01", time.Minute); token != "" {
		t.Errorf("token %q without a key", token)
	}
}
