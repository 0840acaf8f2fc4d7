package proxy

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/session"
)

// Tests of the verify endpoint's token: the same token stage as proxy
// mode, over the real session manager (tokenEnv).

// newVerifyTokenEnv is tokenEnv with forward-auth on, behind
// https://app.example.com; its upstreams must never be called.
func newVerifyTokenEnv(t *testing.T) *tokenEnv {
	t.Helper()
	e := newTokenEnv(t, nil, func(o *Options) {
		o.ForwardAuth = ForwardAuthOptions{Listen: "127.0.0.1:0"}
		o.PublicURL = mustURL(t, "https://app.example.com")
	})
	t.Cleanup(func() {
		for name, up := range e.ups {
			if n := len(up.requests()); n != 0 {
				t.Errorf("upstream %s received %d requests; verify must never call it", name, n)
			}
		}
	})
	return e
}

// verifyToken asks e's verify endpoint about method uri as ask's ingress
// does, with tk's cookie unless it is zero, and returns the answer.
func (e *tokenEnv) verifyToken(t *testing.T, ask ingressRequest, method, uri string, tk session.Ticket) *httptest.ResponseRecorder {
	t.Helper()
	r := asBrowser(ask(t, method, uri), "")
	if tk != (session.Ticket{}) {
		r.Header.Set("Cookie", ticketCookie(tk))
	}
	r.Header.Set("Origin", "https://app.example.com")
	r.Header.Set("X-CSRF", "1")
	before := len(e.logs.accessLines(t))
	w := httptest.NewRecorder()
	e.h.ServeForwardAuth(w, r)
	e.logs.waitAccess(t, before+1)
	return w
}

// TestVerifyRouteTokens: the verify endpoint answers each route with the
// token forward would send it, and only that one: the session's token of
// the route's resource and scopes (one refresh per resource, then from
// the record), the login's own, tokenrelay's client token (with or
// without a session), an exchanged one, or none; without a session the
// routes that need one are 401, and none of the app's upstreams is called.
func TestVerifyRouteTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newVerifyTokenEnv(t)
		tk := e.login(t, nil)
		a, b := idp.NewTarget("https://a.example", nil).Key(), idp.NewTarget("https://b.example", []string{"b:read"}).Key()
		tests := []struct {
			uri    string
			tk     session.Ticket
			status int
			want   string
		}{
			{"/a/1", tk, 200, "Bearer at-2@" + a},
			{"/b/1", tk, 200, "Bearer at-3@" + b},
			{"/a/2?q=1", tk, 200, "Bearer at-2@" + a},
			{"/own/1", tk, 200, "Bearer at-1"},
			{"/svc/1", tk, 200, "Bearer ct-1@https://svc.example "},
			{"/mix/1", tk, 200, "Bearer at-4@https://mix.example "},
			{"/pub/1", tk, 200, "Bearer at-5@https://pub.example "},
			{"/x/1", tk, 200, "Bearer xt-1(at-1)@https://x.example "},
			{"/gate/1", tk, 200, ""},
			{"/svc/2", session.Ticket{}, 200, "Bearer ct-1@https://svc.example "},
			{"/mix/2", session.Ticket{}, 200, "Bearer ct-2@https://mix.example "},
			{"/pub/2", session.Ticket{}, 200, ""},
			{"/a/3", session.Ticket{}, 401, ""},
			{"/x/2", session.Ticket{}, 401, ""},
			{"/gate/2", session.Ticket{}, 401, ""},
		}
		for i, tt := range tests {
			ask := ingresses[i%len(ingresses)]
			method := []string{http.MethodGet, http.MethodPost}[i%2]
			w := e.verifyToken(t, ask.ask, method, tt.uri, tt.tk)
			if got := w.Header().Get("Authorization"); w.Code != tt.status || got != tt.want || w.Header().Get("DPoP") != "" {
				t.Errorf("%s %s %s: %d with Authorization %q, DPoP %q; want %d with %q and no DPoP",
					ask.name, method, tt.uri, w.Code, got, w.Header().Get("DPoP"), tt.status, tt.want)
			}
		}
		if calls, reused := e.idp.Stats(); calls != 4 || reused != 0 {
			t.Errorf("refreshes = %d (reused %d), want 4: one per resource route", calls, reused)
		}
	})
}

// TestVerifyDPoP: a DPoP-bound token is answered as "Authorization: DPoP"
// with a fresh proof of the session's key for the request the ingress
// sends the app: the original method, the public URL of the original path
// without its query, the token's hash, no nonce, a jti of its own each
// time; the token itself is the route's resource's.
func TestVerifyDPoP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newVerifyTokenEnv(t)
		key, err := idp.NewDPoPKey()
		if err != nil {
			t.Fatal(err)
		}
		tk := e.login(t, key)
		jtis := map[any]bool{}
		asks := []struct {
			ask    ingressRequest
			method string
			uri    string
			htu    string
		}{
			{nginxAsks, http.MethodGet, "/a/items?x=1", "https://app.example.com/a/items"},
			{traefikAsks, http.MethodPost, "/a/items/%2F7?x=2", "https://app.example.com/a/items/%2F7"},
			{envoyAsks, http.MethodDelete, "/a/items/8", "https://app.example.com/a/items/8"},
		}
		for i, q := range asks {
			w := e.verifyToken(t, q.ask, q.method, q.uri, tk)
			authz := w.Header().Get("Authorization")
			tok, ok := strings.CutPrefix(authz, "DPoP ")
			if w.Code != http.StatusOK || !ok || !strings.HasSuffix(tok, "#"+key.Thumbprint()) || !strings.Contains(tok, "@https://a.example") {
				t.Fatalf("verify %d = %d with Authorization %q, want 200 with the route's DPoP-bound token", i, w.Code, authz)
			}
			claims, jkt := dpopProof(t, w.Header().Get("DPoP"))
			sum := sha256.Sum256([]byte(tok))
			want := map[string]any{"htm": q.method, "htu": q.htu, "ath": base64.RawURLEncoding.EncodeToString(sum[:]), "nonce": nil}
			for k, v := range want {
				if claims[k] != v {
					t.Errorf("verify %d: proof %s = %v, want %v", i, k, claims[k], v)
				}
			}
			if jkt != key.Thumbprint() {
				t.Errorf("verify %d: proof key %s, want the session's %s", i, jkt, key.Thumbprint())
			}
			jtis[claims["jti"]] = true
		}
		if len(jtis) != len(asks) {
			t.Errorf("%d proofs carried %d distinct jtis, want %d", len(asks), len(jtis), len(asks))
		}
	})
}
