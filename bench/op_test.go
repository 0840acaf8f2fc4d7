package bench

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The OpenID Provider's client registration, shared by the harness (which
// writes tokenrelay's configuration) and the op role.
const (
	opClientID     = "bench-client"
	opClientSecret = "bench-client-secret"
	opKeyID        = "bench-rsa"
	apiAudience    = "bench-api"
)

// op is a minimal OpenID Provider for the benchmarks: discovery, JWKS, an
// authorization endpoint that approves at once, and a token endpoint for
// the authorization-code and refresh-token grants. Tokens are RS256 JWTs
// signed for real on every call. Refresh tokens are single use: each
// refresh spends the one presented and issues a new one, and a spent or
// unknown one is refused with invalid_grant and counted as reuse, as a
// provider with rotation does. It counts every grant exactly.
//
// The end-to-end tests use a certified provider (oidc-provider); this one
// is small and fast so that the benchmark measures tokenrelay, and its cost
// per call is known (one RSA signature, plus -bench.storm.latency).
//
// op is safe for concurrent use.
type op struct {
	key     *rsa.PrivateKey
	latency time.Duration
	issuer  atomic.Pointer[string]

	mu    sync.Mutex
	codes map[string]codeGrant // guarded by mu
	live  map[string]string    // live refresh token -> subject; guarded by mu
	// Counters, guarded by mu.
	exchanges, refreshes, reuse, minted int64
}

// codeGrant is what an authorization code stands for.
type codeGrant struct {
	subject, nonce, challenge, redirect string
	ttl                                 int // access-token lifetime, seconds
}

func newOP() (*op, error) {
	key, err := readKey(os.Getenv(envKey))
	if err != nil {
		return nil, err
	}
	latency, err := time.ParseDuration(os.Getenv(envLatency))
	if err != nil {
		return nil, err
	}
	return &op{key: key, latency: latency, codes: map[string]codeGrant{}, live: map[string]string{}}, nil
}

func (p *op) setIssuer(base string) { p.issuer.Store(&base) }

func (p *op) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		p.discovery(w)
	case "/jwks":
		p.jwks(w)
	case "/authorize":
		p.authorize(w, r)
	case "/token":
		p.token(w, r)
	case "/bench/mint":
		p.mint(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (p *op) discovery(w http.ResponseWriter) {
	iss := *p.issuer.Load()
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                iss + "/authorize",
		"token_endpoint":                        iss + "/token",
		"jwks_uri":                              iss + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func (p *op) jwks(w http.ResponseWriter) {
	pub := p.key.PublicKey
	b64 := base64.RawURLEncoding.EncodeToString
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "alg": "RS256", "use": "sig", "kid": opKeyID,
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

// authorize approves every request at once. The harness adds bench_sub
// (the user) and bench_ttl (the access-token lifetime in seconds) to the
// URL tokenrelay redirected to.
func (p *op) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != opClientID || q.Get("code_challenge_method") != "S256" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	ttl, err := strconv.Atoi(q.Get("bench_ttl"))
	if err != nil || ttl < 1 {
		ttl = 3600
	}
	code := randomString()
	p.mu.Lock()
	p.codes[code] = codeGrant{
		subject: q.Get("bench_sub"), nonce: q.Get("nonce"), challenge: q.Get("code_challenge"),
		redirect: q.Get("redirect_uri"), ttl: ttl,
	}
	p.mu.Unlock()
	back, err := url.Parse(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	back.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}, "iss": {*p.issuer.Load()}}.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (p *op) token(w http.ResponseWriter, r *http.Request) {
	if id, secret, ok := r.BasicAuth(); !ok || id != opClientID || secret != opClientSecret {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		p.exchange(w, r.PostForm)
	case "refresh_token":
		p.refresh(w, r.PostForm.Get("refresh_token"))
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
	}
}

func (p *op) exchange(w http.ResponseWriter, form url.Values) {
	p.mu.Lock()
	g, ok := p.codes[form.Get("code")]
	delete(p.codes, form.Get("code"))
	p.exchanges++
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(form.Get("code_verifier")))
	if !ok || g.redirect != form.Get("redirect_uri") || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	now := time.Now()
	id, err := signToken(p.key, jwt.MapClaims{
		"iss": *p.issuer.Load(), "aud": opClientID, "sub": g.subject, "nonce": g.nonce,
		"sid": randomString(), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"name": "Bench User " + g.subject, "email": g.subject + "@bench.example",
	})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	p.issue(w, g.subject, g.ttl, id)
}

// refresh spends rt and issues new tokens, after the configured latency.
func (p *op) refresh(w http.ResponseWriter, rt string) {
	p.mu.Lock()
	p.refreshes++
	sub, ok := p.live[rt]
	delete(p.live, rt)
	if !ok {
		p.reuse++
	}
	p.mu.Unlock()
	time.Sleep(p.latency)
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	p.issue(w, sub, 3600, "")
}

// issue answers a token response: a signed access token living ttl
// seconds, a new live refresh token and, when given, an ID token.
func (p *op) issue(w http.ResponseWriter, sub string, ttl int, idToken string) {
	at, err := signToken(p.key, accessClaims(*p.issuer.Load(), sub, ttl))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	rt := p.newRefreshToken(sub)
	res := map[string]any{
		"access_token": at, "token_type": "Bearer", "expires_in": ttl, "refresh_token": rt,
		"scope": "openid profile email offline_access",
	}
	if idToken != "" {
		res["id_token"] = idToken
	}
	writeJSON(w, http.StatusOK, res)
}

func (p *op) newRefreshToken(sub string) string {
	rt := randomString()
	p.mu.Lock()
	p.live[rt] = sub
	p.mu.Unlock()
	return rt
}

// mint hands the harness n live refresh tokens, for measuring the token
// endpoint's own latency (the floor) without tokenrelay.
func (p *op) mint(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 1 || n > 10000 {
		http.Error(w, "n must be 1..10000", http.StatusBadRequest)
		return
	}
	out := make([]string, n)
	for i := range out {
		out[i] = p.newRefreshToken("floor-" + strconv.Itoa(i))
	}
	p.mu.Lock()
	p.minted += int64(n)
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// accessClaims are the claims of an access token for the API, living ttl
// seconds from now.
func accessClaims(issuer, sub string, ttl int) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": issuer, "aud": apiAudience, "sub": sub, "client_id": opClientID,
		"scope": "openid profile email offline_access", "jti": randomString(),
		"iat": now.Unix(), "exp": now.Add(time.Duration(ttl) * time.Second).Unix(),
	}
}

// signToken signs claims with RS256 under the OP's key id.
func signToken(key *rsa.PrivateKey, claims jwt.MapClaims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = opKeyID
	return t.SignedString(key)
}

func (p *op) stats() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return map[string]int64{"exchanges": p.exchanges, "refreshes": p.refreshes, "reuse": p.reuse, "minted": p.minted}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// randomString is 128 random bits, base64url.
func randomString() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
