package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/idptest"
	"github.com/tokenrelay/tokenrelay/session"
)

// tokenEnv is the request path over the real session manager and an
// idptest endpoint that answers refreshes, client credentials and token
// exchanges, with one upstream per route.
type tokenEnv struct {
	*pxEnv
	idp *idptest.TokenEndpoint
	mgr *session.Manager
	ups map[string]*pxUpstream
}

// tokenRoutes are routes of every token type, each to its own upstream
// named after the route.
var tokenRoutes = []Route{
	{Name: "a", Path: "/a/", Resource: "https://a.example"},
	{Name: "b", Path: "/b/", Resource: "https://b.example", Scopes: []string{"b:read"}},
	{Name: "own", Path: "/own/"},
	{Name: "svc", Path: "/svc/", Token: TokenClient, Resource: "https://svc.example"},
	{Name: "mix", Path: "/mix/", Token: TokenUserOrClient, Resource: "https://mix.example"},
	{Name: "pub", Path: "/pub/", Token: TokenUserOrNone, Resource: "https://pub.example"},
	{Name: "x", Path: "/x/", Token: TokenExchange, Resource: "https://x.example"},
	{Name: "gate", Path: "/gate/", Token: TokenNone},
}

func newTokenEnv(t *testing.T, reply func(name string) func(http.ResponseWriter, *http.Request, []byte), opts ...func(*Options)) *tokenEnv {
	t.Helper()
	p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
	mgr, err := session.NewManager(session.ManagerOptions{
		Backend:     session.NewMemoryStore(time.Now),
		Secret:      []byte(strings.Repeat("s", 32)),
		Refresher:   p,
		Exchanger:   p,
		ClientGrant: p,
		Now:         time.Now,
		Registerer:  prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &tokenEnv{idp: p, mgr: mgr, ups: map[string]*pxUpstream{}}
	var routes []Route
	mux := http.NewServeMux()
	for _, r := range tokenRoutes {
		var fn func(http.ResponseWriter, *http.Request, []byte)
		if reply != nil {
			fn = reply(r.Name)
		}
		u := newPxUpstreamInProcess(r.Name, fn)
		e.ups[r.Name] = u
		mux.Handle(r.Name+".upstream.test/", u.handler)
		r.Upstream = u.url().String()
		routes = append(routes, r)
	}
	o := Options{
		Sessions: mgr, Transport: handlerTransport{mux}, Now: time.Now, Routes: routes,
		Retry: RetryOptions{RetryOn401: new(true)},
	}
	for _, opt := range opts {
		opt(&o)
	}
	e.pxEnv = newPxEnvInProcess(t, o)
	return e
}

// login starts a session at the endpoint, bound to key when it is set.
func (e *tokenEnv) login(t *testing.T, key *idp.DPoPKey) session.Ticket {
	t.Helper()
	at, rt, exp := e.idp.Grant()
	rec := session.Record{AccessToken: at, RefreshToken: rt, AccessExpiry: exp, Subject: "user-1"}
	if key != nil {
		rec.DPoPKey = key.Bytes()
	}
	tk, err := e.mgr.Create(context.Background(), rec, session.ViaLogin)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// get sends GET path (with tk's cookie unless it is zero, and a client
// Authorization header that must never pass) and returns the status and
// what the route's upstream received as Authorization.
func (e *tokenEnv) get(t *testing.T, path string, tk session.Ticket) (int, string) {
	t.Helper()
	r := e.req(t, http.MethodGet, path, nil)
	if tk != (session.Ticket{}) {
		withTicket(r, tk)
	}
	r.Header.Set("Authorization", "Bearer from-the-client")
	name := strings.Split(path, "/")[1]
	before := len(e.ups[name].requests())
	res, _ := e.do(t, r)
	seen := e.ups[name].requests()
	if len(seen) == before {
		return res.StatusCode, "<not forwarded>"
	}
	return res.StatusCode, seen[len(seen)-1].Header.Get("Authorization")
}

// TestRouteTokens: each route type gets its own token, and only its own:
// the session's token of the route's resource (one per resource, never
// another route's), the session's login token, tokenrelay's own client
// token (with or without a session), a token exchanged for the route's
// resource, or none; a client's own Authorization never passes.
func TestRouteTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTokenEnv(t, nil)
		tk := e.login(t, nil)
		a, b := idp.NewTarget("https://a.example", nil).Key(), idp.NewTarget("https://b.example", []string{"b:read"}).Key()
		withSession := []struct{ path, want string }{
			{"/a/1", "Bearer at-2@" + a},
			{"/b/1", "Bearer at-3@" + b},
			{"/a/2", "Bearer at-2@" + a}, // cached in the record
			{"/own/1", "Bearer at-1"},
			{"/svc/1", "Bearer ct-1@https://svc.example "},
			{"/mix/1", "Bearer at-4@https://mix.example "},
			{"/pub/1", "Bearer at-5@https://pub.example "},
			{"/x/1", "Bearer xt-1(at-1)@https://x.example "},
			{"/gate/1", ""},
		}
		for _, c := range withSession {
			if code, got := e.get(t, c.path, tk); code != http.StatusOK || got != c.want {
				t.Errorf("with a session, %s: %d with %q, want 200 with %q", c.path, code, got, c.want)
			}
		}
		without := []struct {
			path string
			code int
			want string
		}{
			{"/svc/2", http.StatusOK, "Bearer ct-1@https://svc.example "},
			{"/mix/2", http.StatusOK, "Bearer ct-2@https://mix.example "},
			{"/pub/2", http.StatusOK, ""},
			{"/a/3", http.StatusUnauthorized, "<not forwarded>"},
			{"/x/2", http.StatusUnauthorized, "<not forwarded>"},
			{"/gate/2", http.StatusUnauthorized, "<not forwarded>"},
		}
		for _, c := range without {
			if code, got := e.get(t, c.path, session.Ticket{}); code != c.code || got != c.want {
				t.Errorf("without a session, %s: %d with %q, want %d with %q", c.path, code, got, c.code, c.want)
			}
		}
		if calls, reused := e.idp.Stats(); calls != 4 || reused != 0 {
			t.Errorf("refreshes = %d (reused %d), want 4: one per resource route", calls, reused)
		}
	})
}

// TestClientTokenRetryOn401: an upstream that refuses tokenrelay's own
// token gets a renewed one, once.
func TestClientTokenRetryOn401(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		refused := map[string]bool{}
		e := newTokenEnv(t, func(string) func(http.ResponseWriter, *http.Request, []byte) {
			return func(w http.ResponseWriter, r *http.Request, _ []byte) {
				mu.Lock()
				defer mu.Unlock()
				if refused[r.Header.Get("Authorization")] {
					w.WriteHeader(http.StatusUnauthorized)
				}
			}
		})
		if code, got := e.get(t, "/svc/1", session.Ticket{}); code != http.StatusOK || got != "Bearer ct-1@https://svc.example " {
			t.Fatalf("first request: %d with %q", code, got)
		}
		time.Sleep(time.Minute) // the client token is MinInterval old when refused
		mu.Lock()
		refused["Bearer ct-1@https://svc.example "] = true
		mu.Unlock()
		if code, got := e.get(t, "/svc/1", session.Ticket{}); code != http.StatusOK || got != "Bearer ct-2@https://svc.example " {
			t.Errorf("refused client token: %d, upstream last saw %q; want 200 with ct-2", code, got)
		}
		if cc, _ := e.idp.Grants(); cc != 2 || e.retries("svc") != 1 {
			t.Errorf("client grants %d, retries %v; want 2, 1", cc, e.retries("svc"))
		}
	})
}

// dpopProof verifies a DPoP proof with the key in its own header and
// returns its claims and the key's thumbprint.
func dpopProof(t *testing.T, raw string) (jwt.MapClaims, string) {
	t.Helper()
	claims := jwt.MapClaims{}
	var pub *ecdsa.PublicKey
	tok, err := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"})).ParseWithClaims(raw, claims, func(tok *jwt.Token) (any, error) {
		m, _ := tok.Header["jwk"].(map[string]any)
		x, _ := base64.RawURLEncoding.DecodeString(m["x"].(string))
		y, _ := base64.RawURLEncoding.DecodeString(m["y"].(string))
		pub = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		return pub, nil
	})
	if err != nil || tok.Header["typ"] != "dpop+jwt" {
		t.Fatalf("DPoP proof %q: %v (typ %v)", raw, err, tok.Header["typ"])
	}
	m := tok.Header["jwk"].(map[string]any)
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + m["x"].(string) + `","y":"` + m["y"].(string) + `"}`))
	return claims, base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestDPoPForwarding: a DPoP-bound token goes upstream as "Authorization:
// DPoP" with a fresh proof of the session's key for that request (method,
// URI without query, the token's hash, a jti of its own); an upstream that
// asks for its nonce gets the request once more with it, and later
// requests carry it.
func TestDPoPForwarding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		challenged := 0
		e := newTokenEnv(t, func(string) func(http.ResponseWriter, *http.Request, []byte) {
			return func(w http.ResponseWriter, r *http.Request, _ []byte) {
				mu.Lock()
				defer mu.Unlock()
				if !strings.Contains(r.Header.Get("DPoP"), ".") || challenged > 0 {
					return
				}
				challenged++
				w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
				w.Header().Set("DPoP-Nonce", "rs-nonce-1")
				w.WriteHeader(http.StatusUnauthorized)
			}
		})
		key, err := idp.NewDPoPKey()
		if err != nil {
			t.Fatal(err)
		}
		tk := e.login(t, key)
		for _, path := range []string{"/a/items?x=1", "/a/items?x=2"} {
			r := withTicket(e.req(t, http.MethodGet, path, nil), tk)
			if res, _ := e.do(t, r); res.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d", path, res.StatusCode)
			}
		}
		seen := e.ups["a"].requests()
		if len(seen) != 3 {
			t.Fatalf("upstream requests = %d, want 3 (the nonce challenge, its retry, the next request)", len(seen))
		}
		jtis := map[any]bool{}
		for i, s := range seen {
			authz := s.Header.Get("Authorization")
			tok, ok := strings.CutPrefix(authz, "DPoP ")
			if !ok || !strings.HasSuffix(tok, "#"+key.Thumbprint()) {
				t.Fatalf("request %d: Authorization %q, want DPoP with the bound token", i, authz)
			}
			claims, jkt := dpopProof(t, s.Header.Get("DPoP"))
			sum := sha256.Sum256([]byte(tok))
			want := map[string]any{"htm": "GET", "htu": "http://a.upstream.test/a/items", "ath": base64.RawURLEncoding.EncodeToString(sum[:])}
			for k, v := range want {
				if claims[k] != v {
					t.Errorf("request %d: proof %s = %v, want %v", i, k, claims[k], v)
				}
			}
			if wantNonce := map[int]any{0: nil, 1: "rs-nonce-1", 2: "rs-nonce-1"}[i]; claims["nonce"] != wantNonce {
				t.Errorf("request %d: proof nonce %v, want %v", i, claims["nonce"], wantNonce)
			}
			if jkt != key.Thumbprint() {
				t.Errorf("request %d: proof key %s, want the session's %s", i, jkt, key.Thumbprint())
			}
			jtis[claims["jti"]] = true
		}
		if len(jtis) != 3 {
			t.Errorf("3 proofs carried %d distinct jtis, want 3", len(jtis))
		}
	})
}
