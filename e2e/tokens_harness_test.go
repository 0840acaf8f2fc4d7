package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// Resources of the OP's test-only resource servers (op.js --resources).
const (
	resOrders  = "urn:tokenrelay:orders"
	resBilling = "urn:tokenrelay:billing"
	resService = "urn:tokenrelay:service"
	resReports = "urn:tokenrelay:reports"
)

// audUpstream is an API that trusts only access tokens of its own
// audience, as a resource server behind tokenrelay should: each token is
// verified against the OP's JWKS (RS256, iss, typ at+jwt, exp, iat, aud
// its resource). A DPoP upstream also verifies the proof as RFC 9449 §4.3
// says (typ dpop+jwt, ES256 signed by the key in its jwk header, htm, htu,
// ath, iat within a minute, a jti never seen before) and that the token is
// bound to that key (cnf.jkt), and refuses a Bearer token. It answers 200
// with what it verified, or 401 with why not, and records both.
type audUpstream struct {
	URL  string
	aud  string
	dpop bool
	// public, when set, is the URL the upstream is reached at through an
	// ingress: a proof's htu names it rather than the Host the ingress
	// sends.
	public string
	keys   keyfunc.Keyfunc

	mu      sync.Mutex
	seen    []audSeen // accepted requests, guarded by mu
	refused []string  // why requests were refused, guarded by mu
	jtis    map[string]bool
}

// audSeen is one request an audUpstream accepted.
type audSeen struct {
	Sub      string `json:"sub"`
	Aud      string `json:"aud"`
	JTI      string `json:"jti"`
	ClientID string `json:"client_id"`
	// JKT is the token's cnf.jkt (DPoP upstreams), ProofNonce the proof's
	// nonce.
	JKT        string `json:"jkt,omitempty"`
	ProofNonce string `json:"proof_nonce,omitempty"`
}

func newAudUpstream(t *testing.T, o *op, aud string, dpop bool) *audUpstream {
	t.Helper()
	return newAudUpstreamAt(t, o, aud, dpop, "")
}

// newAudUpstreamAt is newAudUpstream for an app behind an ingress at
// public (scheme://host:port): proofs name that URL, and GET /healthz
// (the ingress's readiness probe) answers 200 unchecked.
func newAudUpstreamAt(t *testing.T, o *op, aud string, dpop bool, public string) *audUpstream {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	keys, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{o.Issuer + "/jwks"}, keyfunc.Override{Client: o.client})
	if err != nil {
		t.Fatalf("jwks: %v", err)
	}
	u := &audUpstream{aud: aud, dpop: dpop, public: public, keys: keys, jtis: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if public != "" && r.URL.Path == "/healthz" {
			return
		}
		seen, err := u.verify(r, o.Issuer)
		u.mu.Lock()
		defer u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			u.refused = append(u.refused, err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_token", "message": err.Error()})
			return
		}
		u.seen = append(u.seen, seen)
		_ = json.NewEncoder(w).Encode(seen)
	}))
	t.Cleanup(srv.Close)
	u.URL = srv.URL
	return u
}

// tokenClaims are the claims of the OP's JWT access tokens the upstream
// reads.
type tokenClaims struct {
	ClientID string `json:"client_id"`
	Cnf      struct {
		JKT string `json:"jkt"`
	} `json:"cnf"`
	jwt.RegisteredClaims
}

func (u *audUpstream) verify(r *http.Request, issuer string) (audSeen, error) {
	scheme, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	want := "Bearer"
	if u.dpop {
		want = "DPoP"
	}
	if scheme != want || raw == "" {
		return audSeen{}, fmt.Errorf("authorization scheme %q, want %s", scheme, want)
	}
	var c tokenClaims
	tok, err := jwt.ParseWithClaims(raw, &c, u.keys.KeyfuncCtx(r.Context()),
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(issuer), jwt.WithAudience(u.aud),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil {
		return audSeen{}, fmt.Errorf("access token: %w", err)
	}
	if tok.Header["typ"] != "at+jwt" {
		return audSeen{}, fmt.Errorf("access token typ %v", tok.Header["typ"])
	}
	seen := audSeen{Sub: c.Subject, Aud: strings.Join(c.Audience, " "), JTI: c.ID, ClientID: c.ClientID}
	if !u.dpop {
		if c.Cnf.JKT != "" {
			return audSeen{}, errors.New("a DPoP-bound token sent as Bearer")
		}
		return seen, nil
	}
	jkt, nonce, err := u.verifyProof(r, raw)
	if err != nil {
		return audSeen{}, fmt.Errorf("DPoP proof: %w", err)
	}
	if c.Cnf.JKT != jkt {
		return audSeen{}, fmt.Errorf("token bound to %q, proof signed by %q", c.Cnf.JKT, jkt)
	}
	seen.JKT, seen.ProofNonce = jkt, nonce
	return seen, nil
}

// verifyProof checks the request's DPoP proof for token and returns the
// thumbprint of its key and its nonce.
func (u *audUpstream) verifyProof(r *http.Request, token string) (jkt, nonce string, err error) {
	claims := jwt.MapClaims{}
	proof, err := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"})).ParseWithClaims(r.Header.Get("DPoP"), claims, func(p *jwt.Token) (any, error) {
		m, _ := p.Header["jwk"].(map[string]any)
		x, _ := m["x"].(string)
		y, _ := m["y"].(string)
		if m["kty"] != "EC" || m["crv"] != "P-256" || m["d"] != nil || x == "" || y == "" {
			return nil, errors.New("jwk is not a public P-256 key")
		}
		xb, _ := base64.RawURLEncoding.DecodeString(x)
		yb, _ := base64.RawURLEncoding.DecodeString(y)
		sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
		jkt = base64.RawURLEncoding.EncodeToString(sum[:])
		return &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(xb), Y: new(big.Int).SetBytes(yb)}, nil
	})
	if err != nil {
		return "", "", err
	}
	if proof.Header["typ"] != "dpop+jwt" {
		return "", "", fmt.Errorf("typ %v", proof.Header["typ"])
	}
	sum := sha256.Sum256([]byte(token))
	base := "http://" + r.Host
	if u.public != "" {
		base = u.public
	}
	checks := map[string]any{"htm": r.Method, "htu": base + r.URL.EscapedPath(), "ath": base64.RawURLEncoding.EncodeToString(sum[:])}
	for name, want := range checks {
		if claims[name] != want {
			return "", "", fmt.Errorf("%s = %v, want %v", name, claims[name], want)
		}
	}
	iat, err := claims.GetIssuedAt()
	if err != nil || iat == nil || time.Since(iat.Time).Abs() > time.Minute {
		return "", "", fmt.Errorf("iat %v is not within a minute of now", iat)
	}
	jti, _ := claims["jti"].(string)
	u.mu.Lock()
	replay := jti == "" || u.jtis[jti]
	u.jtis[jti] = true
	u.mu.Unlock()
	if replay {
		return "", "", fmt.Errorf("jti %q empty or seen before", jti)
	}
	nonce, _ = claims["nonce"].(string)
	return jkt, nonce, nil
}

// Seen returns the requests the upstream accepted, and why it refused
// others.
func (u *audUpstream) Seen() ([]audSeen, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]audSeen(nil), u.seen...), append([]string(nil), u.refused...)
}

// routesYAML replaces the routes of a generated configuration with routes
// (a YAML list, each item starting "  - ").
func routesYAML(t *testing.T, yaml, routes string) string {
	t.Helper()
	i := strings.Index(yaml, "\nroutes:\n")
	if i < 0 {
		t.Fatal("the generated configuration has no routes")
	}
	return yaml[:i] + "\nroutes:\n" + routes
}

// editYAML replaces old with new in a generated configuration, which must
// hold it.
func editYAML(t *testing.T, yaml, old, new string) string {
	t.Helper()
	if !strings.Contains(yaml, old) {
		t.Fatalf("the generated configuration has no %q", old)
	}
	return strings.Replace(yaml, old, new, 1)
}

// getJSON sends GET url through the browser (its cookies) and decodes a 200
// JSON answer into v.
func getJSON(t *testing.T, b *browser, url string, v any) observed {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "application/json")
	o, err := b.do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if o.Status != http.StatusOK {
		t.Fatalf("GET %s = %d %s", url, o.Status, o.Body)
	}
	if v != nil {
		if err := json.Unmarshal(o.Body, v); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, o.Body)
		}
	}
	return o
}
