package idp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenrelay/tokenrelay/secret"
)

// DPoP (RFC 9449): tokens bound to a key the client proves it holds. A
// session's key is made at login (NewDPoPKey, in Exchange) and kept sealed
// in the session record as its 32-byte private scalar; every token request
// of the session and every request tokenrelay forwards with one of its
// tokens carries a fresh proof signed with it.

// DPoPAlg is the one algorithm tokenrelay signs DPoP proofs with: ES256,
// the one every DPoP server supports, with the most compact key to keep in
// a session record.
const DPoPAlg = "ES256"

// DPoPKeySize is the length of DPoPKey.Bytes.
const DPoPKeySize = 32

// dpopScheme is the token type and Authorization scheme of a DPoP-bound
// token.
const dpopScheme = "DPoP"

// DPoPKey is a P-256 key that DPoP proofs are signed with. It is
// immutable and safe for concurrent use.
type DPoPKey struct {
	priv *ecdsa.PrivateKey
	// jwk is the public key as the proofs' jwk header carries it.
	jwk map[string]string
	jkt string
}

// NewDPoPKey makes a new random key.
func NewDPoPKey() (*DPoPKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("idp: dpop key: %w", err)
	}
	return newDPoPKey(priv)
}

// ParseDPoPKey reads a key written by Bytes.
func ParseDPoPKey(b []byte) (*DPoPKey, error) {
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b)
	if err != nil {
		return nil, fmt.Errorf("idp: dpop key: %w", err)
	}
	return newDPoPKey(priv)
}

func newDPoPKey(priv *ecdsa.PrivateKey) (*DPoPKey, error) {
	jwk, err := jwkMembers(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	jkt, err := thumbprint(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return &DPoPKey{priv: priv, jwk: jwk, jkt: jkt}, nil
}

// Bytes returns the private scalar, DPoPKeySize bytes: all a session
// record needs to keep.
func (k *DPoPKey) Bytes() []byte {
	b, _ := k.priv.Bytes() // a P-256 key always encodes
	return b
}

// Thumbprint is the RFC 7638 thumbprint of the public key: the jkt a bound
// token's cnf claim names.
func (k *DPoPKey) Thumbprint() string { return k.jkt }

// dpopClaims are a proof's claims (RFC 9449 §4.2).
type dpopClaims struct {
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	ATH   string `json:"ath,omitempty"`
	Nonce string `json:"nonce,omitempty"`
	jwt.RegisteredClaims
}

// Proof signs a DPoP proof for one request: method and target URI (its
// query and fragment are left out, RFC 9449 §4.2), issued now, with a jti
// never used before, the hash of accessToken when the request carries one
// (ath), and the server's nonce when it gave one.
func (k *DPoPKey) Proof(method, target string, accessToken secret.String, nonce string, now time.Time) (string, error) {
	htu, err := proofURI(target)
	if err != nil {
		return "", err
	}
	c := dpopClaims{
		HTM:   method,
		HTU:   htu,
		Nonce: nonce,
		RegisteredClaims: jwt.RegisteredClaims{
			ID:       randomString(16),
			IssuedAt: jwt.NewNumericDate(now),
		},
	}
	if !accessToken.IsZero() {
		sum := sha256.Sum256([]byte(accessToken.Reveal()))
		c.ATH = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["typ"] = "dpop+jwt"
	tok.Header["jwk"] = k.jwk
	s, err := tok.SignedString(k.priv)
	if err != nil {
		return "", fmt.Errorf("idp: dpop proof: %w", err)
	}
	return s, nil
}

// proofURI is target without its query and fragment.
func proofURI(target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("idp: dpop proof: %q is not an absolute URI", target)
	}
	u.RawQuery, u.Fragment, u.RawFragment, u.ForceQuery = "", "", "", false
	return u.String(), nil
}

// AuthorizationScheme is the Authorization scheme of a token: DPoP for a
// token bound to a key, Bearer otherwise.
func AuthorizationScheme(bound bool) string {
	if bound {
		return dpopScheme
	}
	return "Bearer"
}

// nonceCache keeps the last DPoP-Nonce the provider sent, which the next
// proof carries (RFC 9449 §8). Nonces are the server's, not a session's:
// one for the whole provider. Safe for concurrent use.
type nonceCache struct{ v atomic.Pointer[string] }

func (c *nonceCache) get() string {
	if p := c.v.Load(); p != nil {
		return *p
	}
	return ""
}

// remember keeps the DPoP-Nonce of an answer, if it has one, and reports
// whether it differs from the one kept before.
func (c *nonceCache) remember(h http.Header) bool {
	n := strings.TrimSpace(h.Get("DPoP-Nonce"))
	if n == "" || n == c.get() {
		return false
	}
	c.v.Store(&n)
	return true
}

// errNotBound: the provider answered a token request that carried a DPoP
// proof with a token not bound to the key (token_type other than DPoP).
var errNotBound = errors.New("the provider ignored the DPoP proof: the token it issued is not DPoP-bound (does it support DPoP for this client?)")

// useDPoPNonce reports whether err is the provider asking for a proof
// with its nonce (RFC 9449 §8).
func useDPoPNonce(err error) bool {
	var te *TokenError
	return errors.As(err, &te) && te.Code == "use_dpop_nonce"
}
