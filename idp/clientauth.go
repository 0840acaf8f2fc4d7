package idp

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Client authentication at the token, revocation and pushed authorization
// endpoints. The configured method is used exactly, and alone: the
// credentials appear once, in the place the method says, and a refused
// request is never sent again with another method.

// clientAssertionType is RFC 7523 §2.2's client_assertion_type.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long a client assertion is valid: long enough
// for clock skew, short enough that a captured one is soon useless (and
// its jti is single-use at the provider anyway).
const assertionLifetime = 60 * time.Second

// minRSABits is the smallest RSA key accepted for client assertions.
const minRSABits = 2048

// signingKey is the private key of private_key_jwt, with what its
// assertions need. It is read-only after construction.
type signingKey struct {
	key crypto.Signer
	// algs are the JWS algorithms the key can sign with, preferred first.
	algs []string
	// kid is the key's RFC 7638 JWK thumbprint.
	kid string
}

// parseSigningKey reads a PEM private key: PKCS #8, SEC 1 (EC) or PKCS #1
// (RSA); RSA of at least 2048 bits, EC on P-256, P-384 or P-521, or
// Ed25519. Encrypted keys are refused: the file is a mounted secret.
func parseSigningKey(data []byte) (*signingKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block in the private key file")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not an unencrypted private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	return newSigningKey(key)
}

// newSigningKey describes key: its algorithms and thumbprint.
func newSigningKey(key any) (*signingKey, error) {
	var algs []string
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA private key of %d bits; at least %d are required", k.N.BitLen(), minRSABits)
		}
		algs = []string{"RS256", "PS256", "RS384", "PS384", "RS512", "PS512"}
	case *ecdsa.PrivateKey:
		alg, ok := ecAlgs[k.Curve]
		if !ok {
			return nil, fmt.Errorf("EC private key on %s; P-256, P-384 or P-521 are supported", k.Curve.Params().Name)
		}
		algs = []string{alg}
	case ed25519.PrivateKey:
		algs = []string{"EdDSA"}
	default:
		return nil, fmt.Errorf("private key of type %T is not supported (RSA, EC or Ed25519)", key)
	}
	signer := key.(crypto.Signer)
	kid, err := thumbprint(signer.Public())
	if err != nil {
		return nil, err
	}
	return &signingKey{key: signer, algs: algs, kid: kid}, nil
}

var ecAlgs = map[elliptic.Curve]string{
	elliptic.P256(): "ES256",
	elliptic.P384(): "ES384",
	elliptic.P521(): "ES512",
}

// alg picks the algorithm for the provider: the key's preferred one that
// the provider lists (token_endpoint_auth_signing_alg_values_supported),
// or its preferred one when the provider lists none. An empty string
// means the provider accepts none the key can make.
func (k *signingKey) alg(supported []string) string {
	if len(supported) == 0 {
		return k.algs[0]
	}
	for _, a := range k.algs {
		if slices.Contains(supported, a) {
			return a
		}
	}
	return ""
}

// jwkMembers returns the required members of the public JWK of pub
// (RFC 7638 §3.2), the ones its thumbprint hashes.
func jwkMembers(pub crypto.PublicKey) (map[string]string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}, nil
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		return map[string]string{
			"kty": "EC", "crv": k.Curve.Params().Name,
			"x": b64(k.X.FillBytes(make([]byte, size))), "y": b64(k.Y.FillBytes(make([]byte, size))),
		}, nil
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(k)}, nil
	}
	return nil, fmt.Errorf("public key of type %T has no JWK form here", pub)
}

// thumbprint is the RFC 7638 JWK SHA-256 thumbprint of pub, base64url:
// SHA-256 of the required members in lexicographic order, without
// whitespace. encoding/json writes map keys sorted and nothing else.
func thumbprint(pub crypto.PublicKey) (string, error) {
	members, err := jwkMembers(pub)
	if err != nil {
		return "", err
	}
	canonical, err := json.Marshal(members)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canonical)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// clientAssertion signs a fresh client assertion (RFC 7523 §3): issuer and
// subject the client id, audience the provider's issuer identifier (as
// draft-ietf-oauth-rfc7523bis requires, so an assertion is valid at one
// provider only; the token endpoint when the provider has no issuer), a
// jti never used before, and a short lifetime.
func (p *Provider) clientAssertion() (string, error) {
	now := p.opts.Now()
	aud := p.opts.Issuer
	if aud == "" {
		aud = p.tokenURL
	}
	claims := jwt.RegisteredClaims{
		Issuer:    p.opts.ClientID,
		Subject:   p.opts.ClientID,
		Audience:  jwt.ClaimStrings{aud},
		ID:        randomString(16),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(assertionLifetime)),
	}
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(p.assertionAlg), claims)
	tok.Header["kid"] = p.signing.kid
	s, err := tok.SignedString(p.signing.key)
	if err != nil {
		return "", fmt.Errorf("idp: sign client assertion: %w", err)
	}
	return s, nil
}

// formRequest builds a form POST authenticated with the configured client
// authentication method, and with it only: the credentials appear exactly
// once, in the place the method says. A private_key_jwt request gets a
// new assertion (a new jti) each time it is built.
func (p *Provider) formRequest(ctx context.Context, endpoint string, form url.Values) (*http.Request, error) {
	switch p.opts.AuthMethod {
	case AuthMethodPost:
		form.Set("client_id", p.opts.ClientID)
		form.Set("client_secret", p.opts.ClientSecret.Reveal())
	case AuthMethodPrivateKeyJWT:
		assertion, err := p.clientAssertion()
		if err != nil {
			return nil, err
		}
		form.Set("client_id", p.opts.ClientID)
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", assertion)
	case AuthMethodNone, AuthMethodTLS:
		// tls_client_auth: the certificate on the connection
		// authenticates; client_id says whose it is (RFC 8705 §2).
		if p.opts.ClientID != "" {
			form.Set("client_id", p.opts.ClientID)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if p.opts.AuthMethod == AuthMethodBasic {
		// RFC 6749 §2.3.1: id and secret are form-url-encoded before
		// they are put in the Basic credentials.
		req.SetBasicAuth(url.QueryEscape(p.opts.ClientID), url.QueryEscape(p.opts.ClientSecret.Reveal()))
	}
	return req, nil
}
