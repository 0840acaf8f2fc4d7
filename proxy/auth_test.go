package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

var authTestCookie = session.CookieOptions{Secure: new(true), SameSite: session.SameSiteLax}

// authFixture is an authHandler over fakes, with its metrics registry and
// log buffer.
type authFixture struct {
	h    *authHandler
	ss   *fakeSessions
	p    *fakeProvider
	reg  *prometheus.Registry
	logs *bytes.Buffer
	// jar holds the login binding cookies the handler set, by name, the
	// way a browser would.
	jar map[string]*http.Cookie
	// store and mgr are the real manager and its store
	// (newManagerFixture only).
	store *session.MemoryStore
	mgr   *session.Manager
}

func newAuthFixture(t *testing.T, mod func(*authOptions)) *authFixture {
	t.Helper()
	public, _ := url.Parse("https://app.example.com")
	guard, err := newCSRFGuard(public, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	f := &authFixture{ss: newFakeSessions(), p: &fakeProvider{endSession: true}, reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}, jar: map[string]*http.Cookie{}}
	o := authOptions{
		Sessions:       f.ss,
		Provider:       f.p,
		Cookie:         authTestCookie,
		Prefix:         "/.auth",
		PublicURL:      public,
		RevokeOnLogout: true,
		CSRF:           guard,
		SessionMaxAge:  720 * time.Hour,
		Logger:         slog.New(slog.NewJSONHandler(&authLogWriter{w: f.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer:     f.reg,
		Now:            func() time.Time { return authTestNow },
	}
	if mod != nil {
		mod(&o)
	}
	f.h, err = newAuthHandler(o)
	if err != nil {
		t.Fatalf("newAuthHandler: %v", err)
	}
	return f
}

// authLogWriter serialises writes to a buffer shared by handlers.
type authLogWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *authLogWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// serve runs one request through the handler with a request id, from the
// browser that holds f.jar: login binding cookies (Path=/) are sent with
// every request and updated from the answer.
func (f *authFixture) serve(r *http.Request) *httptest.ResponseRecorder {
	for _, c := range f.jar {
		r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	w := f.serveFromOtherBrowser(r)
	for _, c := range w.Result().Cookies() {
		if !strings.HasPrefix(c.Name, "__Host-tokenrelay-login-") {
			continue
		}
		if c.MaxAge < 0 {
			delete(f.jar, c.Name)
		} else {
			f.jar[c.Name] = c
		}
	}
	return w
}

// serveFromOtherBrowser runs one request through the handler with a
// request id and no cookie jar.
func (f *authFixture) serveFromOtherBrowser(r *http.Request) *httptest.ResponseRecorder {
	// The request id lives in the Handler's per-request state.
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, &requestState{id: "req-test-1"}))
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

// loginCookieName is the name of the binding cookie of the login of state.
func loginCookieName(state string) string { return "__Host-tokenrelay-login-" + state[:16] }

// loginCookieLine is the Set-Cookie line binding the login of state, whose
// sealed form is value.
func loginCookieLine(state, value string) string {
	return loginCookieName(state) + "=" + value + "; Path=/; Max-Age=600; HttpOnly; Secure; SameSite=Lax"
}

// loginCookieClearLine is the Set-Cookie line removing that binding.
func loginCookieClearLine(state string) string {
	return loginCookieName(state) + "=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax"
}

// sessionCookieSet reports whether w sets (not clears) the session cookie.
func sessionCookieSet(w *httptest.ResponseRecorder) bool {
	for _, c := range w.Result().Cookies() {
		if c.Name == session.DefaultCookieName && c.MaxAge >= 0 {
			return true
		}
	}
	return false
}

// withAuthTicket adds the session cookie carrying tk to r.
func withAuthTicket(r *http.Request, tk session.Ticket) *http.Request {
	r.AddCookie(&http.Cookie{Name: session.DefaultCookieName, Value: tk.Encode()})
	return r
}

// decodeAuthError reads a JSON error answer.
func decodeAuthError(t *testing.T, w *httptest.ResponseRecorder) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", w.Body.String(), err)
	}
	return e
}

// wantAuthNoStore fails unless the answer forbids caching, sends no
// Referer onwards and may not be framed.
func wantAuthNoStore(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if got := w.Header().Values("Referrer-Policy"); len(got) != 1 || got[0] != "no-referrer" {
		t.Errorf("Referrer-Policy = %q, want [no-referrer]", got)
	}
	if got, want := w.Header().Get("X-Frame-Options")+"|"+w.Header().Get("Content-Security-Policy"), "DENY|frame-ancestors 'none'"; got != want {
		t.Errorf("X-Frame-Options|Content-Security-Policy = %q, want %q", got, want)
	}
}

// authClearedCookie is the Set-Cookie line that expires the session cookie.
const authClearedCookie = "__Host-tokenrelay=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax"

func TestAuthRouting(t *testing.T) {
	tests := []struct {
		method, path string
		wantStatus   int
		wantAllow    string
	}{
		{"GET", "/.auth/nope", 404, ""},
		{"GET", "/.auth", 404, ""},
		{"GET", "/.auth/", 404, ""},
		{"GET", "/.auth/login/extra", 404, ""},
		{"POST", "/.auth/login", 405, "GET"},
		{"POST", "/.auth/callback", 405, "GET"},
		{"DELETE", "/.auth/session", 405, "GET, HEAD"},
		{"GET", "/.auth/logout", 405, "POST"},
		{"PUT", "/.auth/backchannel-logout", 405, "POST"},
	}
	f := newAuthFixture(t, nil)
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			w := f.serve(httptest.NewRequest(tt.method, tt.path, nil))
			if w.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", w.Code, tt.wantStatus)
			}
			if got := w.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
			if got := w.Header().Get("Content-Type"); got != "application/json; charset=utf-8" {
				t.Errorf("Content-Type = %q, want JSON", got)
			}
			wantAuthNoStore(t, w)
		})
	}
}

// TestAuthLogsCarryNoSecrets runs a whole login, session, failed
// revocation, logout and back-channel logout, and checks that every log
// line carries the request id and none carries a token, code, state or
// ticket.
func TestAuthLogsCarryNoSecrets(t *testing.T) {
	f := newAuthFixture(t, nil)
	f.p.revokeErr = fmt.Errorf("idp: revoke: status 503")
	st := f.startLogin(t, "/")
	cb := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, st.State), nil))
	var ticket string
	for _, c := range cb.Result().Cookies() {
		if c.Name == session.DefaultCookieName {
			ticket = c.Value
		}
	}
	if ticket == "" {
		t.Fatalf("callback: %d without a session cookie", cb.Code)
	}

	r := httptest.NewRequest("POST", "https://app.example.com/.auth/logout", nil)
	r.Header.Set("Cookie", "__Host-tokenrelay="+ticket)
	r.Header.Set("X-CSRF", "1")
	if w := f.serve(r); w.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d, want 303", w.Code)
	}
	f.p.logoutErr = errors.New("idp: logout token: bad signature")
	bc := httptest.NewRequest("POST", "/.auth/backchannel-logout", strings.NewReader("logout_token=lt-SECRET"))
	bc.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	f.serve(bc)

	lines := strings.Split(strings.TrimSpace(f.logs.String()), "\n")
	if len(lines) < 3 {
		t.Fatalf("%d log lines, want at least 3 (login, revocation failure, logout token): %s", len(lines), f.logs)
	}
	for _, line := range lines {
		if !strings.Contains(line, `"request_id":"req-test-1"`) {
			t.Errorf("log line without request id: %s", line)
		}
		for _, s := range []string{authTestAccessToken, authTestRefreshToken, authTestIDToken, authTestCode, st.State, st.Nonce, st.Verifier, ticket, "lt-SECRET"} {
			if strings.Contains(line, s) {
				t.Errorf("log line leaks %q: %s", s, line)
			}
		}
	}
}

func TestNewAuthHandlerErrors(t *testing.T) {
	guard, _ := newCSRFGuard(nil, nil, "")
	ok := authOptions{Sessions: newFakeSessions(), Provider: &fakeProvider{}, CSRF: guard}
	tests := []struct {
		name string
		mod  func(*authOptions)
	}{
		{"no sessions", func(o *authOptions) { o.Sessions = nil }},
		{"no provider", func(o *authOptions) { o.Provider = nil }},
		{"no csrf", func(o *authOptions) { o.CSRF = nil }},
		{"relative prefix", func(o *authOptions) { o.Prefix = "auth" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mod(&o)
			if _, err := newAuthHandler(o); err == nil {
				t.Errorf("newAuthHandler() = nil error, want error")
			}
		})
	}
	// Registering twice on one registry is a wiring bug, reported.
	reg := prometheus.NewRegistry()
	o := ok
	o.Registerer = reg
	if _, err := newAuthHandler(o); err != nil {
		t.Fatalf("first newAuthHandler: %v", err)
	}
	if _, err := newAuthHandler(o); err == nil {
		t.Errorf("second newAuthHandler on the same registry = nil error, want error")
	}
	// Defaults: prefix /.auth, post-logout URI "/" without a public URL.
	h, err := newAuthHandler(ok)
	if err != nil {
		t.Fatal(err)
	}
	if h.prefix != "/.auth" || h.postLogoutURI != "/" {
		t.Errorf("defaults: prefix %q post-logout %q, want /.auth and /", h.prefix, h.postLogoutURI)
	}
}

// authCounterValue reads one counter series from reg, as a scrape would see it.
func authCounterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{%s=%q} registered", name, label, value)
	return 0
}

// noRefresh is a session.Refresher for flows that must not refresh.
type noRefresh struct{}

func (noRefresh) Refresh(context.Context, secret.String) (*idp.Token, error) {
	return nil, errors.New("noRefresh: unexpected refresh")
}

// newManagerFixture is an authHandler over the real session.Manager and
// MemoryStore, with the scripted provider. Its clock is time.Now: tests run
// it in a synctest bubble (atAuthTestNow) and move time with time.Sleep.
func newManagerFixture(t *testing.T) *authFixture {
	t.Helper()
	store := session.NewMemoryStore(time.Now)
	m, err := session.NewManager(session.ManagerOptions{
		Backend:   store,
		Secret:    bytes.Repeat([]byte("k"), 32),
		Refresher: noRefresh{},
		Issuer:    "https://idp.example.com",
		Now:       time.Now,
		LifetimeOptions: session.LifetimeOptions{
			IdleTimeout:   24 * time.Hour,
			MaxLifetime:   720 * time.Hour,
			LoginStateTTL: 10 * time.Minute,
		},
	})
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	f := newAuthFixture(t, func(o *authOptions) {
		o.Sessions = m
		o.Now = time.Now
		o.LoginStateTTL = 10 * time.Minute
	})
	f.ss = nil // the fake is not in use
	f.store, f.mgr = store, m
	return f
}

// TestAuthFlowWithManager runs login → callback → session → logout →
// session against the real session manager and memory store.
func TestAuthFlowWithManager(t *testing.T) {
	atAuthTestNow(t, func(t *testing.T) {
		f := newManagerFixture(t)
		jar := &http.Cookie{}

		// Login.
		w := f.serve(httptest.NewRequest("GET", "/.auth/login?return_to="+url.QueryEscape("/inbox?x=1"), nil))
		loc, _ := url.Parse(w.Header().Get("Location"))
		state := loc.Query().Get("state")
		if w.Code != http.StatusFound || state == "" {
			t.Fatalf("login: %d to %q", w.Code, loc)
		}

		// Callback, five minutes later.
		time.Sleep(5 * time.Minute)
		w = f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, state), nil))
		if w.Code != http.StatusFound || w.Header().Get("Location") != "/inbox?x=1" {
			t.Fatalf("callback: %d to %q, want 302 to /inbox?x=1; body %s", w.Code, w.Header().Get("Location"), w.Body)
		}
		for _, c := range w.Result().Cookies() {
			if c.Name == session.DefaultCookieName {
				jar = c
			}
		}
		if jar.Value == "" || jar.MaxAge != 2592000 || !jar.Secure || !jar.HttpOnly || jar.SameSite != http.SameSiteLaxMode || jar.Path != "/" || jar.Domain != "" {
			t.Fatalf("session cookie = %+v, want __Host-tokenrelay, Max-Age 2592000, Secure, HttpOnly, Lax, Path /", jar)
		}
		withJar := func(r *http.Request) *http.Request {
			r.AddCookie(&http.Cookie{Name: jar.Name, Value: jar.Value})
			return r
		}

		// Session, two minutes later: the idle timeout slides from now.
		time.Sleep(2 * time.Minute)
		w = f.serve(withJar(httptest.NewRequest("GET", "/.auth/session", nil)))
		want := `{"authenticated":true,"subject":"user-1","claims":{"email":"ada@example.com","name":"Ada"},"expires_at":"2026-03-02T12:07:00Z","access_token_expires_at":"2026-03-01T12:05:00Z"}`
		if got := strings.TrimSpace(w.Body.String()); w.Code != 200 || got != want {
			t.Errorf("session: %d %s, want 200 %s", w.Code, got, want)
		}

		// Logout from the app's own page.
		r := withJar(httptest.NewRequest("POST", "https://app.example.com/.auth/logout", nil))
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		r.Header.Set("Sec-Fetch-Mode", "cors")
		r.Header.Set("X-CSRF", "1")
		w = f.serve(r)
		var out logoutAnswer
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || w.Code != 200 {
			t.Fatalf("logout: %d %s", w.Code, w.Body)
		}
		if u, _ := url.Parse(out.LogoutURL); u == nil || u.Query().Get("client_id") != "client-1" || strings.Contains(out.LogoutURL, authTestIDToken) {
			t.Errorf("logout_url = %q, want the end-session URL with client_id and without the ID token", out.LogoutURL)
		}
		if got, want := f.p.revoked, []string{authTestRefreshToken}; !reflect.DeepEqual(got, want) {
			t.Errorf("revoked %q, want %q", got, want)
		}
		if got := w.Header().Values("Set-Cookie"); len(got) != 1 || got[0] != authClearedCookie {
			t.Errorf("logout Set-Cookie = %q, want [%q]", got, authClearedCookie)
		}

		// The old cookie no longer opens anything.
		w = f.serve(withJar(httptest.NewRequest("GET", "/.auth/session", nil)))
		if got := strings.TrimSpace(w.Body.String()); got != `{"authenticated":false}` {
			t.Errorf("session after logout: %s, want {\"authenticated\":false}", got)
		}
	})
}

// atAuthTestNow runs f in a testing/synctest bubble whose clock starts at
// authTestNow, the instant the fakes' tokens are issued at. f moves time
// with time.Sleep.
func atAuthTestNow(t *testing.T, f func(t *testing.T)) {
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(time.Until(authTestNow))
		f(t)
	})
}
