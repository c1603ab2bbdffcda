package volume

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"time"
)

// jwtHeader is the base64url of {"alg":"HS256","typ":"JWT"}, the header
// golang-jwt writes for HS256; it never changes, so it is encoded once.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// readClaims are the claims weed's volume server checks on a read
// (weed/security/jwt.go, SeaweedFileIdClaims): the file id, and an expiry
// that weed only sets when expires_after_seconds is positive.
type readClaims struct {
	Fid string `json:"fid"`
	Exp int64  `json:"exp,omitempty"`
}

// SignReadJWT returns the HS256 JWT that authorizes reading one file id from
// a volume server whose security.toml has jwt.signing.read.key = key. It is
// sent as "Authorization: Bearer <token>". expiresAfter <= 0 leaves out the
// exp claim, as weed does for expires_after_seconds = 0. An empty key returns
// "": the cluster does not check read JWTs.
//
// cmd/weedfuse hands it to the RDMA client too (rdma.ClientOptions.ReadJWT),
// since weedrdma passes the client's token on to the volume server.
func SignReadJWT(key []byte, fid string, expiresAfter time.Duration) string {
	if len(key) == 0 {
		return ""
	}
	claims := readClaims{Fid: fid}
	if expiresAfter > 0 {
		claims.Exp = time.Now().Add(expiresAfter).Unix()
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		// A struct of a string and an int always marshals.
		panic(err)
	}
	signingInput := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signingInput))
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}
