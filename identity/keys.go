package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// signingKey is one key of the ring.
type signingKey struct {
	// id is the RFC 7638 thumbprint of the public key, the JWT kid.
	id      string
	alg     string // "ES256" or "EdDSA"
	private crypto.Signer
	// signFrom is when the key starts signing; it is published from the
	// moment it is stored. Zero for a key from a file.
	signFrom time.Time
	// jwk is the public key as the JWKS lists it.
	jwk jwkset.JWKMarshal
}

// method is the jwt signing method of k.
func (k *signingKey) method() jwt.SigningMethod {
	if k.alg == "EdDSA" {
		return jwt.SigningMethodEdDSA
	}
	return jwt.SigningMethodES256
}

// newSigningKey wraps a private key, computing its JWK and thumbprint.
func newSigningKey(priv crypto.Signer, signFrom time.Time) (*signingKey, error) {
	k, err := newPublishedKey(priv.Public())
	if err != nil {
		return nil, err
	}
	k.private, k.signFrom = priv, signFrom
	return k, nil
}

// newPublishedKey wraps a public key that is only published, never used to
// sign (a key file's predecessor), computing its JWK and thumbprint.
func newPublishedKey(pub crypto.PublicKey) (*signingKey, error) {
	k := &signingKey{}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return nil, errors.New("identity: an ECDSA key must be on P-256 for ES256")
		}
		k.alg = "ES256"
	case ed25519.PublicKey:
		k.alg = "EdDSA"
	default:
		return nil, fmt.Errorf("identity: unsupported key type %T (want ECDSA P-256 or Ed25519)", pub)
	}
	alg := jwkset.AlgES256
	if k.alg == "EdDSA" {
		alg = jwkset.AlgEdDSA
	}
	jwk, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{ALG: alg, USE: jwkset.UseSig}})
	if err != nil {
		return nil, fmt.Errorf("identity: public key as JWK: %w", err)
	}
	k.jwk = jwk.Marshal()
	k.id = thumbprint(k.jwk)
	k.jwk.KID = k.id
	return k, nil
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url): the hash
// of the key's required members, in lexicographic order, with no white
// space.
func thumbprint(j jwkset.JWKMarshal) string {
	var canonical string
	switch j.KTY {
	case jwkset.KtyEC:
		canonical = fmt.Sprintf(`{"crv":%q,"kty":%q,"x":%q,"y":%q}`, j.CRV, j.KTY, j.X, j.Y)
	default: // OKP
		canonical = fmt.Sprintf(`{"crv":%q,"kty":%q,"x":%q}`, j.CRV, j.KTY, j.X)
	}
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// generateKey makes a new private key for alg.
func generateKey(alg string) (crypto.Signer, error) {
	if alg == "EdDSA" {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// loadKeyFile reads a PEM private key. alg, when set, must match it.
func loadKeyFile(path, alg string) (*signingKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	priv, err := parsePrivateKey(block)
	if err != nil {
		return nil, err
	}
	k, err := newSigningKey(priv, time.Time{})
	if err != nil {
		return nil, err
	}
	if alg != "" && alg != k.alg {
		return nil, fmt.Errorf("the key is for %s, not %s", k.alg, alg)
	}
	return k, nil
}

// loadPreviousKeyFile reads the PEM key a key file replaced: a private key
// (the old key file itself) or its PUBLIC KEY, of either algorithm. Only
// its public half is kept.
func loadPreviousKeyFile(path string) (*signingKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	if block.Type == "PUBLIC KEY" {
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		return newPublishedKey(pub)
	}
	priv, err := parsePrivateKey(block)
	if err != nil {
		return nil, err
	}
	return newPublishedKey(priv.Public())
}

// readPEM reads the first PEM block of a file.
func readPEM(path string) (*pem.Block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	return block, nil
}

func parsePrivateKey(block *pem.Block) (crypto.Signer, error) {
	switch block.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported key type %T", key)
		}
		return signer, nil
	}
	return nil, fmt.Errorf("PEM block %q is not a private key (want PRIVATE KEY or EC PRIVATE KEY)", block.Type)
}

// storedRing is the JSON form of the ring, sealed before it is stored.
type storedRing struct {
	Keys []storedKey `json:"keys"`
}

type storedKey struct {
	// PKCS8 is the private key, DER.
	PKCS8    []byte `json:"pkcs8"`
	SignFrom int64  `json:"sign_from"` // Unix seconds
}

func encodeRing(keys []*signingKey) ([]byte, error) {
	var s storedRing
	for _, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.private)
		if err != nil {
			return nil, err
		}
		s.Keys = append(s.Keys, storedKey{PKCS8: der, SignFrom: k.signFrom.Unix()})
	}
	return json.Marshal(s)
}

func decodeRing(data []byte) ([]*signingKey, error) {
	var s storedRing
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, err
	}
	keys := make([]*signingKey, 0, len(s.Keys))
	for _, sk := range s.Keys {
		priv, err := parsePrivateKey(&pem.Block{Type: "PRIVATE KEY", Bytes: sk.PKCS8})
		if err != nil {
			return nil, err
		}
		k, err := newSigningKey(priv, time.Unix(sk.SignFrom, 0))
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key")
	}
	return keys, nil
}
