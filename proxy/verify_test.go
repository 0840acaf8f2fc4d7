package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/identity"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/idptest"
	"github.com/tokenrelay/tokenrelay/policy"
	"github.com/tokenrelay/tokenrelay/session"
)

// Tests of the forward-auth verify endpoint. Requests carry the headers
// each ingress sends (nginx's auth_request as configured in
// examples/forward-auth/nginx.conf, ingress-nginx's auth-url, Traefik's
// ForwardAuth, Caddy's forward_auth, Envoy's ext_authz HTTP service); the
// real nginx and Caddy run in e2e/.

// vaEnv is a Handler with forward-auth on and an upstream that must never
// be called by a verify request.
type vaEnv struct {
	*pxEnv
	up *pxUpstream
}

func newVaEnv(t *testing.T, routes ...Route) *vaEnv {
	t.Helper()
	up := newPxUpstreamInProcess("app", nil)
	if routes == nil {
		routes = []Route{
			{Name: "api", Path: "/api/", Upstream: up.url().String()},
			{Name: "page", Path: "/page/", Upstream: up.url().String(), OnUnauthenticated: UnauthStatus},
			{Name: "opt", Path: "/opt/", Upstream: up.url().String(), Auth: AuthOptional},
			{Name: "public", Path: "/public/", Upstream: up.url().String(), Auth: AuthNone},
		}
	}
	e := newPxEnvInProcess(t, Options{
		Transport:   up.transport(),
		PublicURL:   mustURL(t, "https://app.example.com"),
		ForwardAuth: ForwardAuthOptions{Listen: "127.0.0.1:0"},
		Routes:      routes,
	})
	t.Cleanup(func() {
		if n := len(up.requests()); n != 0 {
			t.Errorf("the upstream received %d requests; verify must never call it", n)
		}
	})
	return &vaEnv{pxEnv: e, up: up}
}

// verify sends r to the forward-auth listener and returns the answer, once
// the access log line is written.
func (e *vaEnv) verify(t *testing.T, r *http.Request) (*http.Response, string) {
	t.Helper()
	before := len(e.logs.accessLines(t))
	w := httptest.NewRecorder()
	e.h.ServeForwardAuth(w, r)
	e.logs.waitAccess(t, before+1)
	return w.Result(), w.Body.String()
}

// ingressRequest is a verify request for method and uri as one ingress
// sends it.
type ingressRequest func(t *testing.T, method, uri string) *http.Request

func nginxAsks(t *testing.T, method, uri string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://tokenrelay_verify/.auth/verify", nil)
	r.Header.Set("X-Original-URI", uri)
	r.Header.Set("X-Original-Method", method)
	return r
}

func ingressNginxAsks(t *testing.T, method, uri string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://tokenrelay.my-app.svc:8081/.auth/verify", nil)
	r.Header.Set("X-Original-URL", "https://app.example.com"+uri)
	r.Header.Set("X-Original-Method", method)
	r.Header.Set("X-Auth-Request-Redirect", uri)
	r.Header.Set("X-Sent-From", "nginx-ingress-controller")
	return r
}

func traefikAsks(t *testing.T, method, uri string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8081/.auth/verify", nil)
	r.Header.Set("X-Forwarded-Method", method)
	r.Header.Set("X-Forwarded-Uri", uri)
	r.Header.Set("X-Forwarded-Proto", "https")
	r.Header.Set("X-Forwarded-Host", "app.example.com")
	r.Header.Set("X-Forwarded-For", "203.0.113.7")
	return r
}

// caddyAsks: Caddy's rewrite keeps the original query on the verify URI.
func caddyAsks(t *testing.T, method, uri string) *http.Request {
	target := "http://127.0.0.1:8081/.auth/verify"
	if _, q, ok := strings.Cut(uri, "?"); ok {
		target += "?" + q
	}
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Header.Set("X-Forwarded-Method", method)
	r.Header.Set("X-Forwarded-Uri", uri)
	r.Header.Set("Via", "1.1 Caddy")
	return r
}

// envoyAsks: ext_authz sends the original method and path after its
// path_prefix, with no body.
func envoyAsks(t *testing.T, method, uri string) *http.Request {
	r := httptest.NewRequest(method, "http://127.0.0.1:8081/.auth/verify"+uri, nil)
	r.Header.Set("Content-Length", "0")
	return r
}

var ingresses = []struct {
	name string
	ask  ingressRequest
}{
	{"nginx", nginxAsks},
	{"ingress-nginx", ingressNginxAsks},
	{"traefik", traefikAsks},
	{"caddy", caddyAsks},
	{"envoy", envoyAsks},
}

// asBrowser adds what a browser's same-origin fetch sends, and the cookie.
func asBrowser(r *http.Request, cookie string) *http.Request {
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("Sec-Fetch-Mode", "cors")
	r.Header.Set("Sec-Fetch-Dest", "empty")
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	return r
}

func ticketCookie(tk session.Ticket) string {
	return "a=1; " + session.DefaultCookieName + "=" + tk.Encode() + "; b=2"
}

// TestVerifyGrants: with a live session, every ingress's verify request
// is answered 200 with exactly the session's bearer token, the browser's
// cookies without tokenrelay's, no-store, no cookie set and no body; the
// token was asked for once, for the session's ticket, and the app was not
// called.
func TestVerifyGrants(t *testing.T) {
	for _, in := range ingresses {
		t.Run(in.name, func(t *testing.T) {
			e := newVaEnv(t)
			tk := e.sessions.addToken(t, authTestAccessToken)
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				r := asBrowser(in.ask(t, method, "/api/items?page=2"), ticketCookie(tk))
				r.Header.Set("X-CSRF", "1")
				r.Header.Set("Origin", "https://app.example.com")
				res, body := e.verify(t, r)
				if res.StatusCode != http.StatusOK || body != "" {
					t.Fatalf("%s: verify = %d %q, want 200 and no body", method, res.StatusCode, body)
				}
				want := http.Header{
					"Authorization": {"Bearer " + authTestAccessToken},
					"Cookie":        {"a=1; b=2"},
					"Cache-Control": {"no-store"},
				}
				for k, v := range want {
					if got := res.Header.Values(k); !reflect.DeepEqual(got, v) {
						t.Errorf("%s: %s = %q, want %q", method, k, got, v)
					}
				}
				for _, k := range []string{"Set-Cookie", "Location", headerError} {
					if v := res.Header.Values(k); v != nil {
						t.Errorf("%s: %s = %q, want none", method, k, v)
					}
				}
			}
			if calls := e.sessions.calls(); len(calls) != 2 || calls[0].Ticket != tk || calls[1].Ticket != tk {
				t.Errorf("AccessToken calls = %v, want 2 for the session's ticket", calls)
			}
			if got := e.requests("api", "200"); got != 2 {
				t.Errorf("tokenrelay_requests_total{route=api,code=200} = %v, want 2", got)
			}
		})
	}
}

// TestVerifyCookieAnswer: the Cookie a 200 answers is what the app should
// get: present and empty when the browser sent only tokenrelay's cookies
// (the ingress then removes the header), absent when it sent none; a
// route without a session and auth none answers without Authorization.
func TestVerifyCookieAnswer(t *testing.T) {
	e := newVaEnv(t)
	tk := e.sessions.addToken(t, authTestAccessToken)
	login := "__Host-tokenrelay-login-0123456789abcdef=sealed"
	tests := []struct {
		name, uri, cookie string
		wantCookie        []string
		wantAuth          []string
	}{
		{"only ours", "/api/x", session.DefaultCookieName + "=" + tk.Encode() + "; " + login, []string{""}, []string{"Bearer " + authTestAccessToken}},
		{"optional without session", "/opt/x", "theme=dark", []string{"theme=dark"}, nil},
		{"public route, no cookie", "/public/x", "", nil, nil},
	}
	for _, tt := range tests {
		res, _ := e.verify(t, asBrowser(traefikAsks(t, http.MethodGet, tt.uri), tt.cookie))
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: verify = %d, want 200", tt.name, res.StatusCode)
		}
		if got := res.Header.Values("Cookie"); !reflect.DeepEqual(got, tt.wantCookie) {
			t.Errorf("%s: Cookie = %q, want %q", tt.name, got, tt.wantCookie)
		}
		if got := res.Header.Values("Authorization"); !reflect.DeepEqual(got, tt.wantAuth) {
			t.Errorf("%s: Authorization = %q, want %q", tt.name, got, tt.wantAuth)
		}
	}
}

// TestVerifyUnauthenticated: without a live session, an API call gets 401
// JSON with the login URL (body and header) and no Location; a navigation
// gets a 302 to login from ingresses that relay it, and 401 with Location
// from nginx, which relays only 401 and 403; a route with
// on_unauthenticated status never redirects; an ended session's cookie is
// cleared; an unsafe return path becomes "/".
func TestVerifyUnauthenticated(t *testing.T) {
	const loginItems = "/.auth/login?return_to=%2Fapi%2Fitems%3Fpage%3D2"
	tests := []struct {
		name         string
		ask          ingressRequest
		uri          string
		navigate     bool
		accessErr    error
		wantStatus   int
		wantCode     string
		wantLogin    string
		wantLocation bool
		wantCleared  bool
	}{
		{"api call, traefik", traefikAsks, "/api/items?page=2", false, nil, 401, "login_required", loginItems, false, false},
		{"api call, nginx", nginxAsks, "/api/items?page=2", false, nil, 401, "login_required", loginItems, false, false},
		{"navigation, traefik", traefikAsks, "/api/items?page=2", true, nil, 302, "login_required", loginItems, true, false},
		{"navigation, caddy", caddyAsks, "/api/items?page=2", true, nil, 302, "login_required", loginItems, true, false},
		{"navigation, envoy", envoyAsks, "/api/items?page=2", true, nil, 302, "login_required", loginItems, true, false},
		{"navigation, nginx", nginxAsks, "/api/items?page=2", true, nil, 401, "login_required", loginItems, true, false},
		{"navigation, ingress-nginx", ingressNginxAsks, "/api/items?page=2", true, nil, 401, "login_required", loginItems, true, false},
		{"navigation, status route", traefikAsks, "/page/1", true, nil, 401, "login_required", "/.auth/login?return_to=%2Fpage%2F1", false, false},
		{"ended session", traefikAsks, "/api/items?page=2", false, session.ErrSessionExpired, 401, "session_expired", loginItems, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newVaEnv(t)
			tk := e.sessions.addToken(t, authTestAccessToken)
			if tt.accessErr != nil {
				e.sessions.accessErrs = []error{tt.accessErr}
			} else {
				tk = session.Ticket{} // no session: a cookie of an unknown ticket
			}
			r := tt.ask(t, http.MethodGet, tt.uri)
			if tt.navigate {
				r.Header.Set("Accept", "text/html")
				r.Header.Set("Sec-Fetch-Mode", "navigate")
				r.Header.Set("Sec-Fetch-Dest", "document")
			} else {
				asBrowser(r, "")
			}
			if tt.accessErr != nil {
				r.Header.Set("Cookie", ticketCookie(tk))
			}
			res, body := e.verify(t, r)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("verify = %d %s, want %d", res.StatusCode, body, tt.wantStatus)
			}
			if got := res.Header.Get(headerLoginURL); got != tt.wantLogin {
				t.Errorf("%s = %q, want %q", headerLoginURL, got, tt.wantLogin)
			}
			if got := res.Header.Get(headerError); got != tt.wantCode {
				t.Errorf("%s = %q, want %q", headerError, got, tt.wantCode)
			}
			wantLocation := ""
			if tt.wantLocation {
				wantLocation = tt.wantLogin
			}
			if got := res.Header.Get("Location"); got != wantLocation {
				t.Errorf("Location = %q, want %q", got, wantLocation)
			}
			var cleared []string
			if tt.wantCleared {
				cleared = []string{pxClearedCookie}
			}
			if got := res.Header.Values("Set-Cookie"); !reflect.DeepEqual(got, cleared) {
				t.Errorf("Set-Cookie = %q, want %q", got, cleared)
			}
			if res.Header.Get("Authorization") != "" || res.Header.Get("Cookie") != "" {
				t.Errorf("a refusal carries Authorization %q or Cookie %q", res.Header.Get("Authorization"), res.Header.Get("Cookie"))
			}
			if res.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", res.Header.Get("Cache-Control"))
			}
			if tt.wantStatus == http.StatusUnauthorized {
				var got loginAnswer
				if err := json.Unmarshal([]byte(body), &got); err != nil || got.Error != tt.wantCode || got.LoginURL != tt.wantLogin || got.Message == "" {
					t.Errorf("body = %s, want {error: %s, message, login_url: %s}", body, tt.wantCode, tt.wantLogin)
				}
			}
		})
	}
}

// TestVerifyReturnTo: the login URL's return_to is the original URI only
// when it is a safe same-origin path, else "/".
func TestVerifyReturnTo(t *testing.T) {
	e := newVaEnv(t, Route{Name: "root", Path: "/"})
	for uri, want := range map[string]string{
		"/a/b?c=d":             "/.auth/login?return_to=%2Fa%2Fb%3Fc%3Dd",
		"//evil.example/x":     "/.auth/login?return_to=%2F",
		"/%2F%2Fevil.example/": "/.auth/login?return_to=%2F",
	} {
		res, _ := e.verify(t, asBrowser(traefikAsks(t, http.MethodGet, uri), ""))
		if got := res.Header.Get(headerLoginURL); res.StatusCode != http.StatusUnauthorized || got != want {
			t.Errorf("%s: verify = %d with login URL %q, want 401 with %q", uri, res.StatusCode, got, want)
		}
	}
}

// TestVerifyCSRF: an unsafe original method passes the same CSRF defence
// as in proxy mode, judged on the browser's headers the ingress passed
// on, and a WebSocket handshake gets the origin check even when the
// ingress dropped its Upgrade header. A refusal is 403 csrf before the
// session is looked at.
func TestVerifyCSRF(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		header  map[string]string
		want    int
		wantErr string
	}{
		{"same-origin POST with the header", http.MethodPost, map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1"}, 200, ""},
		{"same-origin POST without the header", http.MethodPost, map[string]string{"Sec-Fetch-Site": "same-origin"}, 403, "csrf"},
		{"cross-site POST with the header", http.MethodPost, map[string]string{"Sec-Fetch-Site": "cross-site", "X-CSRF": "1"}, 403, "csrf"},
		{"cross-origin DELETE from an old browser", http.MethodDelete, map[string]string{"Origin": "https://evil.example", "X-CSRF": "1"}, 403, "csrf"},
		{"public_url origin from an old browser", http.MethodPut, map[string]string{"Origin": "https://app.example.com", "X-CSRF": "1"}, 200, ""},
		{"cross-site GET", http.MethodGet, map[string]string{"Sec-Fetch-Site": "cross-site"}, 200, ""},
		{"cross-site WebSocket, Upgrade dropped", http.MethodGet, map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "websocket"}, 403, "csrf"},
		{"cross-site WebSocket with Upgrade", http.MethodGet, map[string]string{"Origin": "https://evil.example", "Upgrade": "websocket"}, 403, "csrf"},
	}
	for _, in := range ingresses {
		for _, tt := range tests {
			t.Run(in.name+"/"+tt.name, func(t *testing.T) {
				e := newVaEnv(t)
				tk := e.sessions.addToken(t, authTestAccessToken)
				r := in.ask(t, tt.method, "/api/items")
				r.Header.Set("Cookie", ticketCookie(tk))
				for k, v := range tt.header {
					r.Header.Set(k, v)
				}
				res, body := e.verify(t, r)
				if res.StatusCode != tt.want {
					t.Fatalf("verify = %d %s, want %d", res.StatusCode, body, tt.want)
				}
				if tt.wantErr == "" {
					return
				}
				if decodeError(t, body).Error != tt.wantErr || res.Header.Get(headerError) != tt.wantErr {
					t.Errorf("refusal = %s with %s %q, want %s", body, headerError, res.Header.Get(headerError), tt.wantErr)
				}
				if len(e.sessions.calls()) != 0 {
					t.Errorf("the session was looked at for a refused request")
				}
			})
		}
	}
}

// TestVerifyRefusesBadQuestions: a verify request must name exactly one
// original request. Missing or disagreeing URI or method headers (a
// client's own X-Forwarded-Uri passed on by nginx beside its
// X-Original-URI), a URI that is not a path, a path the proxy refuses, or
// a path no route serves are refused, without looking at the session;
// other paths of the forward-auth listener are 404.
func TestVerifyRefusesBadQuestions(t *testing.T) {
	tests := []struct {
		name     string
		req      func(t *testing.T) *http.Request
		want     int
		wantCode string
		wantMsg  string
	}{
		{"no URI", func(t *testing.T) *http.Request {
			r := nginxAsks(t, "GET", "/api/x")
			r.Header.Del("X-Original-URI")
			return r
		}, 400, "bad_request", "no original URI"},
		{"no method", func(t *testing.T) *http.Request {
			r := traefikAsks(t, "GET", "/api/x")
			r.Header.Del("X-Forwarded-Method")
			return r
		}, 400, "bad_request", "no original method"},
		{"client's X-Forwarded-Uri through nginx", func(t *testing.T) *http.Request {
			r := nginxAsks(t, "GET", "/api/x")
			r.Header.Set("X-Forwarded-Uri", "/public/x")
			return r
		}, 400, "bad_request", "X-Original-URI and X-Forwarded-Uri disagree on the original URI"},
		{"client's X-Original-URI through Traefik", func(t *testing.T) *http.Request {
			r := traefikAsks(t, "GET", "/api/x")
			r.Header.Set("X-Original-URI", "/public/x")
			return r
		}, 400, "bad_request", "disagree on"},
		{"client's X-Original-Method through Caddy", func(t *testing.T) *http.Request {
			r := caddyAsks(t, "POST", "/api/x")
			r.Header.Set("X-Original-Method", "GET")
			return r
		}, 400, "bad_request", "X-Original-Method and X-Forwarded-Method disagree on the original method"},
		{"client's header through Envoy", func(t *testing.T) *http.Request {
			r := envoyAsks(t, "GET", "/api/x")
			r.Header.Set("X-Forwarded-Uri", "/public/x")
			return r
		}, 400, "bad_request", "disagree on"},
		{"two values of one header", func(t *testing.T) *http.Request {
			r := nginxAsks(t, "GET", "/api/x")
			r.Header.Add("X-Original-URI", "/public/x")
			return r
		}, 400, "bad_request", "disagree on"},
		{"absolute URI", func(t *testing.T) *http.Request { return nginxAsks(t, "GET", "http://evil.example/api/x") }, 400, "bad_request", "not a path"},
		{"asterisk", func(t *testing.T) *http.Request { return nginxAsks(t, "OPTIONS", "*") }, 400, "bad_request", "not a path"},
		{"bad method", func(t *testing.T) *http.Request { return nginxAsks(t, "GE T", "/api/x") }, 400, "bad_request", "not an HTTP method"},
		{"dot segments", func(t *testing.T) *http.Request { return traefikAsks(t, "GET", "/public/../api/x") }, 400, "bad_request", ". or .."},
		{"escapes across the prefix", func(t *testing.T) *http.Request { return traefikAsks(t, "GET", "/api%2Fx") }, 400, "bad_request", "escapes"},
		{"no route", func(t *testing.T) *http.Request { return traefikAsks(t, "GET", "/elsewhere") }, 403, "forbidden", "no route protects"},
		{"another path of the listener", func(t *testing.T) *http.Request {
			return httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8081/.auth/session", nil)
		}, 404, "not_found", "only the verify endpoint"},
		{"verify's name extended", func(t *testing.T) *http.Request {
			r := nginxAsks(t, "GET", "/api/x")
			r.URL.Path, r.RequestURI = "/.auth/verifyx", "/.auth/verifyx"
			return r
		}, 404, "not_found", "only the verify endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newVaEnv(t)
			tk := e.sessions.addToken(t, authTestAccessToken)
			r := tt.req(t)
			r.Header.Set("Cookie", ticketCookie(tk))
			res, body := e.verify(t, r)
			got := decodeError(t, body)
			if res.StatusCode != tt.want || got.Error != tt.wantCode || !strings.Contains(got.Message, tt.wantMsg) {
				t.Errorf("verify = %d %s, want %d %s containing %q", res.StatusCode, body, tt.want, tt.wantCode, tt.wantMsg)
			}
			if res.Header.Get(headerError) != tt.wantCode {
				t.Errorf("%s = %q, want %q", headerError, res.Header.Get(headerError), tt.wantCode)
			}
			if res.Header.Get("Authorization") != "" {
				t.Error("a refusal carries Authorization")
			}
			if n := len(e.sessions.calls()); n != 0 {
				t.Errorf("AccessToken called %d times for a refused question", n)
			}
		})
	}
}

// TestVerifyUnavailable: a store or provider that is down is 503 with
// Retry-After and the error code in its header; the session is kept (no
// cookie is cleared).
func TestVerifyUnavailable(t *testing.T) {
	tests := []struct {
		err       error
		wantCode  string
		wantRetry string
	}{
		{session.ErrStoreUnavailable, "store_unavailable", "1"},
		{&session.UnavailableError{RetryAfter: 7 * time.Second, Err: errors.New("provider down")}, "refresh_unavailable", "7"},
	}
	for _, tt := range tests {
		e := newVaEnv(t)
		tk := e.sessions.addToken(t, authTestAccessToken)
		e.sessions.accessErrs = []error{tt.err}
		res, body := e.verify(t, asBrowser(envoyAsks(t, http.MethodGet, "/api/x"), ticketCookie(tk)))
		if res.StatusCode != http.StatusServiceUnavailable || decodeError(t, body).Error != tt.wantCode {
			t.Errorf("verify = %d %s, want 503 %s", res.StatusCode, body, tt.wantCode)
		}
		if got := res.Header.Get("Retry-After"); got != tt.wantRetry {
			t.Errorf("Retry-After = %q, want %q", got, tt.wantRetry)
		}
		if got := res.Header.Get(headerError); got != tt.wantCode {
			t.Errorf("%s = %q, want %q", headerError, got, tt.wantCode)
		}
		if v := res.Header.Values("Set-Cookie"); v != nil {
			t.Errorf("Set-Cookie = %q, want none: the session is kept", v)
		}
	}
}

// TestVerifyOnlyOnItsListener: the public listener never answers the
// verify endpoint, however the request is dressed: a browser calling it
// with its cookie would read the access token in the answer's headers.
func TestVerifyOnlyOnItsListener(t *testing.T) {
	e := newVaEnv(t)
	tk := e.sessions.addToken(t, authTestAccessToken)
	for _, in := range ingresses {
		r := asBrowser(in.ask(t, http.MethodGet, "/api/x"), ticketCookie(tk))
		res, body := e.do(t, r)
		if res.StatusCode != http.StatusNotFound || strings.Contains(body, authTestAccessToken) {
			t.Errorf("%s: public listener answers the verify request %d %s, want 404", in.name, res.StatusCode, body)
		}
		if h := res.Header.Get("Authorization"); h != "" {
			t.Errorf("%s: public listener answered Authorization %q", in.name, h)
		}
	}
	if n := len(e.sessions.calls()); n != 0 {
		t.Errorf("AccessToken called %d times", n)
	}
}

// TestVerifyRouteWithoutUpstream: a route without an upstream serves the
// ingress's questions, and its paths are 404 on the public listener
// without a session lookup.
func TestVerifyRouteWithoutUpstream(t *testing.T) {
	e := newVaEnv(t, Route{Name: "api", Path: "/api/"})
	tk := e.sessions.addToken(t, authTestAccessToken)
	res, _ := e.verify(t, asBrowser(nginxAsks(t, http.MethodGet, "/api/x"), ticketCookie(tk)))
	if res.StatusCode != http.StatusOK || res.Header.Get("Authorization") != "Bearer "+authTestAccessToken {
		t.Errorf("verify = %d with Authorization %q, want 200 with the bearer token", res.StatusCode, res.Header.Get("Authorization"))
	}
	r := withTicket(e.req(t, http.MethodGet, "/api/x", nil), tk)
	res, body := e.do(t, r)
	if res.StatusCode != http.StatusNotFound || decodeError(t, body).Error != "not_found" {
		t.Errorf("public GET /api/x = %d %s, want 404 not_found", res.StatusCode, body)
	}
	if n := len(e.sessions.calls()); n != 1 {
		t.Errorf("AccessToken calls = %d, want 1 (the verify's only)", n)
	}
}

// TestVerifyRefusesCaptureRoutes: an ingress asking about a token capture
// route (a custom backend's login) is refused: the ingress would forward
// the login itself and hand the backend's tokens to the browser.
func TestVerifyRefusesCaptureRoutes(t *testing.T) {
	up := newPxUpstreamInProcess("app", nil)
	e := newPxEnvInProcess(t, Options{
		Transport:     up.transport(),
		ForwardAuth:   ForwardAuthOptions{Listen: ":0"},
		Routes:        []Route{{Name: "auth_api", Path: "/auth/", Upstream: up.url().String(), Auth: AuthNone}},
		CaptureRoutes: []CaptureRoute{{Path: "/auth/login"}},
	})
	w := httptest.NewRecorder()
	e.h.ServeForwardAuth(w, traefikAsks(t, http.MethodPost, "/auth/login"))
	if w.Code != http.StatusForbidden || decodeError(t, w.Body.String()).Error != "forbidden" || w.Header().Get(headerError) != "forbidden" {
		t.Errorf("verify of a capture route = %d %s, want 403 forbidden", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	e.h.ServeForwardAuth(w, traefikAsks(t, http.MethodGet, "/auth/me"))
	if w.Code != http.StatusOK {
		t.Errorf("verify of another path of the route = %d %s, want 200", w.Code, w.Body)
	}
}

// TestVerifyAccessLog: a verify request's access log line names the
// request the ingress asked about (method, path without query, route) and
// says forward_auth; a proxied request's line has no forward_auth field.
func TestVerifyAccessLog(t *testing.T) {
	e := newVaEnv(t)
	tk := e.sessions.addToken(t, authTestAccessToken)
	r := asBrowser(envoyAsks(t, http.MethodPut, "/api/items/7?secret=x"), ticketCookie(tk))
	r.Header.Set("X-CSRF", "1")
	e.verify(t, r)
	lines := e.logs.accessLines(t)
	got := lines[len(lines)-1]
	want := map[string]any{"method": "PUT", "path": "/api/items/7", "route": "api", "status": float64(200), "forward_auth": true, "upstream": ""}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("access log %s = %v, want %v (line %v)", k, got[k], v, got)
		}
	}
	if strings.Contains(e.logs.String(), authTestAccessToken) || strings.Contains(e.logs.String(), "secret=x") {
		t.Errorf("the log holds the token or the query string:\n%s", e.logs.String())
	}
}

// TestVerifyRefreshesOnce: concurrent verify requests of one session whose
// access token has expired share one refresh through the real session
// manager, and every answer carries the new token; a later verify uses it
// without refreshing again.
func TestVerifyRefreshesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refresher := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		at, rt, exp := refresher.Grant()
		mgr, err := session.NewManager(session.ManagerOptions{
			Backend:        session.NewMemoryStore(time.Now),
			Secret:         []byte(strings.Repeat("s", 32)),
			Refresher:      refresher,
			Now:            time.Now,
			Registerer:     prometheus.NewRegistry(),
			RefreshOptions: session.RefreshOptions{Ahead: time.Minute},
		})
		if err != nil {
			t.Fatal(err)
		}
		e := newPxEnvInProcess(t, Options{
			Sessions:    mgr,
			Now:         time.Now,
			ForwardAuth: ForwardAuthOptions{Listen: ":0"},
			Routes:      []Route{{Name: "api", Path: "/api/"}},
		})
		tk, err := mgr.Replace(t.Context(), nil, session.Record{AccessToken: at, RefreshToken: rt, AccessExpiry: exp, Subject: "u"}, session.ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Minute) // past the token's expiry

		const n = 20
		auths := make([]string, n)
		codes := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				w := httptest.NewRecorder()
				e.h.ServeForwardAuth(w, asBrowser(traefikAsks(t, http.MethodGet, "/api/x"), ticketCookie(tk)))
				codes[i], auths[i] = w.Code, w.Header().Get("Authorization")
			})
		}
		wg.Wait()
		if got := refresherCalls(refresher); got != 1 {
			t.Errorf("refresh calls for %d concurrent verifies = %d, want 1", n, got)
		}
		for i := range n {
			if codes[i] != http.StatusOK || auths[i] != auths[0] || auths[0] == "Bearer "+at.Reveal() || auths[0] == "" {
				t.Errorf("verify %d = %d %q, want 200 with the one new token (old %q)", i, codes[i], auths[i], at.Reveal())
			}
		}
		w := httptest.NewRecorder()
		e.h.ServeForwardAuth(w, asBrowser(traefikAsks(t, http.MethodGet, "/api/x"), ticketCookie(tk)))
		if w.Header().Get("Authorization") != auths[0] || refresherCalls(refresher) != 1 {
			t.Errorf("a later verify = %q after %d refreshes, want the same token and no new refresh", w.Header().Get("Authorization"), refresherCalls(refresher))
		}
		_, reused := refresher.Stats()
		if reused != 0 {
			t.Errorf("refresh tokens presented twice: %d", reused)
		}
	})
}

// TestVerifyPipelineIsTheProxys: verify runs the proxy's pipeline with its
// last stage replaced, which assumes that last stage is forward; every
// stage added before it (policy, identity) then applies to verify too.
func TestVerifyPipelineIsTheProxys(t *testing.T) {
	stages := pipeline()
	last := reflect.ValueOf(stages[len(stages)-1]).Pointer()
	if want := reflect.ValueOf((*Handler).forward).Pointer(); last != want {
		t.Fatal("the proxy pipeline's last stage is not forward: serveVerify would replace another stage")
	}
}

// TestForwardAuthOptionsValidate: the listen address is checked, and
// routes may lack an upstream only with forward-auth on.
func TestForwardAuthOptionsValidate(t *testing.T) {
	if ps := (ForwardAuthOptions{Listen: "8081"}).Validate(); len(ps) != 1 || ps[0].Path != "listen" {
		t.Errorf("Validate(8081) = %v, want one problem at listen", ps)
	}
	if ps := (ForwardAuthOptions{Listen: ":8081"}).Validate(); len(ps) != 0 {
		t.Errorf("Validate(:8081) = %v, want none", ps)
	}
	routes := []Route{{Path: "/api/"}}
	if ps := ValidateRoutes(routes, "/.auth", true); len(ps) != 0 {
		t.Errorf("a route without upstream with forward-auth: %v, want no problem", ps)
	}
	if ps := ValidateRoutes(routes, "/.auth", false); len(ps) != 1 || ps[0].Path != "[0].upstream" {
		t.Errorf("a route without upstream without forward-auth: %v, want one problem at [0].upstream", ps)
	}
}

// polVerify asks e's verify endpoint about method path with the session of
// tk, as ask's ingress would, for a fetch (or a navigation with nav).
func (e *polEnv) polVerify(t *testing.T, ask ingressRequest, tk session.Ticket, method, path string, nav bool) *httptest.ResponseRecorder {
	t.Helper()
	r := ask(t, method, path)
	if nav {
		r.Header.Set("Sec-Fetch-Mode", "navigate")
		r.Header.Set("Sec-Fetch-Dest", "document")
		r.Header.Set("Accept", "text/html")
	} else {
		asBrowser(r, "")
	}
	if tk != (session.Ticket{}) {
		r.Header.Set("Cookie", ticketCookie(tk))
	}
	r.Header.Set("X-Forwarded-Email", "admin@example.com") // a client's own
	r.Header.Set("Origin", "https://app.example")
	r.Header.Set("X-CSRF", "1")
	w := httptest.NewRecorder()
	e.h.ServeForwardAuth(w, r)
	return w
}

// TestVerifyAppliesPolicyAndIdentity: the verify endpoint runs the route's
// policy and identity stages: a refused user gets 403 forbidden (the page
// for a navigation, relayed by Traefik; JSON with X-Tokenrelay-Error for
// nginx) without a token, an allowed one 200 with the token and the
// identity headers, never the client's; a route without an upstream signs
// the assertion for its public URL.
func TestVerifyAppliesPolicyAndIdentity(t *testing.T) {
	e := newPolEnv(t, func(o *Options) {
		o.ForwardAuth = ForwardAuthOptions{Listen: ":0"}
		o.Routes = append(o.Routes, Route{Path: "/fa/", Policy: policy.RouteOptions{Mode: policy.ModeReplace},
			Identity: &identity.Options{Assertion: true}})
	})
	ben, ada := e.login(t, "ben", idp.LoginRequest{}), e.login(t, "ada", idp.LoginRequest{})

	w := e.polVerify(t, nginxAsks, ben, http.MethodGet, "/admin/x", false)
	if w.Code != http.StatusForbidden || decodeError(t, w.Body.String()).Error != "forbidden" || w.Header().Get(headerError) != "forbidden" || w.Header().Get("Authorization") != "" {
		t.Errorf("ben's verify of /admin/ = %d %s (%s %q), want 403 forbidden without a token", w.Code, w.Body, headerError, w.Header().Get(headerError))
	}
	w = e.polVerify(t, traefikAsks, ben, http.MethodGet, "/admin/x", true)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Header().Get("Content-Type"), "text/html") {
		t.Errorf("ben's navigation, through Traefik = %d %q, want the 403 page", w.Code, w.Header().Get("Content-Type"))
	}

	w = e.polVerify(t, envoyAsks, ada, http.MethodGet, "/admin/x", false)
	if w.Code != http.StatusOK || w.Header().Get("Authorization") != "Bearer at-ada" {
		t.Errorf("ada's verify of /admin/ = %d %q, want 200 with her token", w.Code, w.Header().Get("Authorization"))
	}
	w = e.polVerify(t, traefikAsks, ben, http.MethodGet, "/who/x", false)
	for k, v := range map[string]string{"X-Forwarded-User": "ben", "X-Forwarded-Email": "Ben@Example.com", "X-Id-Token": "idt-ben"} {
		if got := w.Header().Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("verify of /who/: %s = %q, want [%q]", k, got, v)
		}
	}
	if a := w.Header().Get("X-Tokenrelay-Assertion"); strings.Count(a, ".") != 2 {
		t.Errorf("verify of /who/: X-Tokenrelay-Assertion = %q, want a JWT", a)
	}

	w = e.polVerify(t, traefikAsks, ben, http.MethodGet, "/fa/x", false)
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(w.Header().Get("X-Tokenrelay-Assertion"), claims); err != nil || w.Code != http.StatusOK {
		t.Fatalf("verify of /fa/ = %d, assertion %v", w.Code, err)
	}
	if aud, _ := claims.GetAudience(); len(aud) != 1 || aud[0] != "https://app.example/fa/" {
		t.Errorf("the assertion of a route without upstream has aud %q, want [https://app.example/fa/]", aud)
	}
	if n := len(e.up.requests()); n != 0 {
		t.Errorf("the upstream received %d requests; verify never calls it", n)
	}
}

// TestVerifyStepUp: a route that needs a stronger login answers an
// ingress's question as a missing session: 401 step_up_required with the
// step-up login URL (body and header) and the RFC 9470 challenge, a 302 to
// it for a navigation through Traefik, and 401 with Location through
// nginx.
func TestVerifyStepUp(t *testing.T) {
	e := newPolEnv(t, func(o *Options) { o.ForwardAuth = ForwardAuthOptions{Listen: ":0"} })
	ben := e.login(t, "ben", idp.LoginRequest{})
	const login = "/.auth/login?acr_values=urn%3Amfa&return_to=%2Fmfa%2Fx"
	tests := []struct {
		name         string
		ask          ingressRequest
		nav          bool
		wantStatus   int
		wantLocation string
	}{
		{"fetch", traefikAsks, false, 401, ""},
		{"navigation, Traefik", traefikAsks, true, 302, login},
		{"navigation, nginx", nginxAsks, true, 401, login},
	}
	for _, tt := range tests {
		w := e.polVerify(t, tt.ask, ben, http.MethodGet, "/mfa/x", tt.nav)
		if w.Code != tt.wantStatus || w.Header().Get("Location") != tt.wantLocation || w.Header().Get(headerLoginURL) != login ||
			w.Header().Get(headerError) != "step_up_required" || !strings.Contains(w.Header().Get("WWW-Authenticate"), `acr_values="urn:mfa"`) {
			t.Errorf("%s: %d Location %q, %s %q, %s %q; want %d, Location %q, the login URL and step_up_required",
				tt.name, w.Code, w.Header().Get("Location"), headerLoginURL, w.Header().Get(headerLoginURL), headerError, w.Header().Get(headerError), tt.wantStatus, tt.wantLocation)
		}
		if tt.wantStatus == 401 {
			var got loginAnswer
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got.Error != "step_up_required" || got.LoginURL != login {
				t.Errorf("%s: body %s, want step_up_required with login_url %s", tt.name, w.Body, login)
			}
		}
	}
}

// TestVerifyPolicySeesOriginalRequest: the policy judges the request the
// ingress describes, not the verify request: a rule on request.method and
// request.path lets ben GET /edit/ and refuses his POST, DELETE and PUT
// (an editor's pass), whichever ingress asks.
func TestVerifyPolicySeesOriginalRequest(t *testing.T) {
	e := newPolEnv(t, func(o *Options) { o.ForwardAuth = ForwardAuthOptions{Listen: ":0"} })
	ben, ada := e.login(t, "ben", idp.LoginRequest{}), e.login(t, "ada", idp.LoginRequest{})
	for i, in := range ingresses {
		method := []string{http.MethodPost, http.MethodDelete, http.MethodPut}[i%3]
		if w := e.polVerify(t, in.ask, ben, http.MethodGet, "/edit/x", false); w.Code != http.StatusOK {
			t.Errorf("%s: ben's GET /edit/x = %d %s, want 200", in.name, w.Code, w.Body)
		}
		if w := e.polVerify(t, in.ask, ben, method, "/edit/x", false); w.Code != http.StatusForbidden || w.Header().Get(headerError) != "forbidden" {
			t.Errorf("%s: ben's %s /edit/x = %d %s, want 403 forbidden", in.name, method, w.Code, w.Body)
		}
		if w := e.polVerify(t, in.ask, ada, method, "/edit/x", false); w.Code != http.StatusOK || w.Header().Get("Authorization") != "Bearer at-ada" {
			t.Errorf("%s: ada's %s /edit/x = %d %s, want 200 with her token", in.name, method, w.Code, w.Body)
		}
	}
}

// TestVerifyStepUpFailed: a session from a step-up login that asked for
// what the route needs and still lacks it is 403 step_up_failed, not
// another login round (which an ingress would loop on), for a fetch and
// for a navigation; a session with it passes with its token.
func TestVerifyStepUpFailed(t *testing.T) {
	e := newPolEnv(t, func(o *Options) { o.ForwardAuth = ForwardAuthOptions{Listen: ":0"} })
	stepped := e.login(t, "ben", idp.LoginRequest{ACRValues: []string{"urn:mfa"}})
	for _, in := range ingresses {
		for _, nav := range []bool{false, true} {
			w := e.polVerify(t, in.ask, stepped, http.MethodGet, "/mfa/x", nav)
			if w.Code != http.StatusForbidden || w.Header().Get(headerError) != "step_up_failed" || w.Header().Get("Location") != "" || w.Header().Get("Authorization") != "" {
				t.Errorf("%s (navigation %v): %d, %s %q, Location %q; want 403 step_up_failed without a redirect or a token",
					in.name, nav, w.Code, headerError, w.Header().Get(headerError), w.Header().Get("Location"))
			}
		}
	}
	ada := e.login(t, "ada", idp.LoginRequest{ACRValues: []string{"urn:mfa"}})
	if w := e.polVerify(t, traefikAsks, ada, http.MethodGet, "/mfa/x", false); w.Code != http.StatusOK || w.Header().Get("Authorization") != "Bearer at-ada" {
		t.Errorf("ada (acr urn:mfa) = %d %q, want 200 with her token", w.Code, w.Header().Get("Authorization"))
	}
}

// TestVerifyTokenRefused: when the provider refuses the route's own token
// (its resource or scopes, a token exchange) while the session is fine,
// the ingress gets 403 token_refused, in the body and in
// X-Tokenrelay-Error, without a token, and the session's cookie is kept.
func TestVerifyTokenRefused(t *testing.T) {
	for _, in := range ingresses {
		e := newVaEnv(t)
		tk := e.sessions.addToken(t, authTestAccessToken)
		e.sessions.accessErrs = []error{fmt.Errorf("session: refresh for urn:x: %w: %w", session.ErrTokenRefused, errors.New("invalid_target"))}
		res, body := e.verify(t, asBrowser(in.ask(t, http.MethodGet, "/api/x"), ticketCookie(tk)))
		if res.StatusCode != http.StatusForbidden || decodeError(t, body).Error != "token_refused" || res.Header.Get(headerError) != "token_refused" {
			t.Errorf("%s: verify = %d %s (%s %q), want 403 token_refused", in.name, res.StatusCode, body, headerError, res.Header.Get(headerError))
		}
		for _, k := range []string{"Authorization", "Set-Cookie", "Location"} {
			if v := res.Header.Values(k); v != nil {
				t.Errorf("%s: %s = %q, want none", in.name, k, v)
			}
		}
	}
}
