package idp

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenrelay/tokenrelay/secret"
)

// testNow is the injected clock of every test provider.
var testNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func fixedNow() time.Time { return testNow }

// Keys are generated once per test binary: RSA generation is slow on a
// shared machine.
var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	keys := map[string]crypto.Signer{}
	for _, kid := range []string{"rsa1", "rsa2", "rsa3"} {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[kid] = k
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	keys["ec1"] = ec
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	keys["ed1"] = ed
	return keys
})

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwk is the public JWK of key, named kid.
func jwk(kid string, key crypto.Signer) map[string]any {
	switch k := key.Public().(type) {
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		pt, err := k.ECDH()
		if err != nil {
			panic(err)
		}
		raw := pt.Bytes() // 0x04 || X || Y
		return map[string]any{"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "kid": kid, "use": "sig", "crv": "Ed25519", "x": b64(k)}
	}
	panic("unknown key type")
}

// testOP is a fake OpenID Provider: discovery, JWKS (whose keys the test can
// rotate, with a fetch counter), and token, revocation and userinfo
// endpoints whose handlers the test sets.
type testOP struct {
	t testing.TB
	// url is the issuer; client reaches it.
	url    string
	client *http.Client

	mu sync.Mutex // guards the fields below
	// doc is the discovery document; nil fields are filled with defaults.
	doc       map[string]any
	docStatus int
	jwksKIDs  []string
	token     http.HandlerFunc
	revoke    http.HandlerFunc
	userinfo  http.HandlerFunc
	par       http.HandlerFunc

	discoveryFetches atomic.Int64
	jwksFetches      atomic.Int64
}

func newTestOP(t *testing.T) *testOP {
	t.Helper()
	op, mux := newTestOPHandler(t)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	op.url, op.client = srv.URL, srv.Client()
	return op
}

// newTestOPInMemory is a testOP reached through an in-memory transport, for
// testing/synctest bubbles (no network, so every wait is durable).
func newTestOPInMemory(t testing.TB) *testOP {
	t.Helper()
	op, mux := newTestOPHandler(t)
	op.url = "https://op.test"
	op.client = &http.Client{Transport: handlerTransport{mux}}
	return op
}

// handlerTransport serves requests with a handler, in memory.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

func newTestOPHandler(t testing.TB) (*testOP, *http.ServeMux) {
	op := &testOP{t: t, jwksKIDs: []string{"rsa1", "ec1", "ed1"}, docStatus: http.StatusOK}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		op.discoveryFetches.Add(1)
		op.mu.Lock()
		doc := map[string]any{
			"issuer":                                op.url,
			"authorization_endpoint":                op.url + "/authorize",
			"token_endpoint":                        op.url + "/token",
			"jwks_uri":                              op.url + "/jwks",
			"userinfo_endpoint":                     op.url + "/userinfo",
			"revocation_endpoint":                   op.url + "/revoke",
			"end_session_endpoint":                  op.url + "/logout",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256", "EdDSA", "HS256", "none"},
		}
		for k, v := range op.doc {
			if v == nil {
				delete(doc, k)
			} else {
				doc[k] = v
			}
		}
		status := op.docStatus
		op.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(doc)
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		op.jwksFetches.Add(1)
		op.mu.Lock()
		keys := []any{}
		for _, kid := range op.jwksKIDs {
			keys = append(keys, jwk(kid, testKeys()[kid]))
		}
		op.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	})
	for path, h := range map[string]*http.HandlerFunc{"/token": &op.token, "/revoke": &op.revoke, "/userinfo": &op.userinfo, "/par": &op.par} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			op.mu.Lock()
			fn := *h
			op.mu.Unlock()
			if fn == nil {
				http.NotFound(w, r)
				return
			}
			fn(w, r)
		})
	}
	return op, mux
}

func (op *testOP) set(f func(op *testOP)) {
	op.mu.Lock()
	defer op.mu.Unlock()
	f(op)
}

// options are Options for a confidential oidc client of op.
func (op *testOP) options() Options {
	return Options{
		Type:         TypeOIDC,
		Issuer:       op.url,
		ClientID:     "client-1",
		ClientSecret: "s3cret",
		AuthMethod:   AuthMethodBasic,
		Scopes:       []string{"openid", "offline_access"},
		RedirectURL:  "https://app.example/.auth/callback",
		ClockSkew:    new(time.Minute),
		Claims:       []string{"sub", "email", "name"},
		HTTPClient:   op.client,
		Now:          fixedNow,
	}
}

// provider builds a Provider from op.options() changed by mutate.
func (op *testOP) provider(mutate func(*Options)) *Provider {
	op.t.Helper()
	o := op.options()
	if mutate != nil {
		mutate(&o)
	}
	p, err := New(context.Background(), o)
	if err != nil {
		op.t.Fatalf("New: %v", err)
	}
	op.t.Cleanup(p.Close)
	return p
}

// sign signs claims with the key kid and the algorithm that goes with it,
// with extra header fields.
func sign(t testing.TB, kid string, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	key := testKeys()[kid]
	var m jwt.SigningMethod
	switch key.(type) {
	case *rsa.PrivateKey:
		m = jwt.SigningMethodRS256
	case *ecdsa.PrivateKey:
		m = jwt.SigningMethodES256
	case ed25519.PrivateKey:
		m = jwt.SigningMethodEdDSA
	}
	tok := jwt.NewWithClaims(m, claims)
	tok.Header["kid"] = kid
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// idClaims are valid ID-token claims for op's client.
func (op *testOP) idClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss":   op.url,
		"aud":   "client-1",
		"sub":   "user-42",
		"sid":   "sid-7",
		"email": "u@example.com",
		"nonce": "n-0S6",
		"iat":   testNow.Add(-10 * time.Second).Unix(),
		"exp":   testNow.Add(time.Hour).Unix(),
	}
}

// logoutClaims are valid logout-token claims for op's client.
func (op *testOP) logoutClaims(jti string) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":    op.url,
		"aud":    "client-1",
		"sub":    "user-42",
		"sid":    "sid-7",
		"jti":    jti,
		"iat":    testNow.Add(-10 * time.Second).Unix(),
		"events": map[string]any{backchannelLogoutEvent: map[string]any{}},
	}
}

// recorded is one request a test endpoint saw.
type recorded struct {
	method string
	header http.Header
	body   string
	query  url.Values
}

// recordingHandler records each request into *into and answers with
// status and body.
func recordingHandler(mu *sync.Mutex, into *[]recorded, status int, header map[string]string, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		*into = append(*into, recorded{method: r.Method, header: r.Header.Clone(), body: string(b), query: r.URL.Query()})
		mu.Unlock()
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// answer is a handler that replies with status, headers and body.
func answer(status int, header map[string]string, body string) http.HandlerFunc {
	var mu sync.Mutex
	var sink []recorded
	return recordingHandler(&mu, &sink, status, header, body)
}

func secretString(s string) secret.String { return secret.String(s) }
