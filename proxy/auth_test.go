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
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

// Token values that must never appear in an answer or a log line.
const (
	authTestAccessToken  = "at-SECRET-access-0001"
	authTestRefreshToken = "rt-SECRET-refresh-0001"
	authTestIDToken      = "idt-SECRET-idtoken-0001"
	authTestCode         = "code-SECRET-0001"
)

var authTestNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeAuthSessions is a Sessions that keeps everything in maps and records the
// calls the auth endpoints make.
type fakeAuthSessions struct {
	mu       sync.Mutex
	states   map[string]session.LoginState
	sessions map[session.Ticket]session.Session
	// err, when set for an operation name, is returned by that operation.
	err map[string]error

	created    []session.Record
	createdVia []string
	ended      []string // reasons
	bySID      []string
	bySubject  []string
	endedN     int
}

func newFakeAuthSessions() *fakeAuthSessions {
	return &fakeAuthSessions{
		states:   map[string]session.LoginState{},
		sessions: map[session.Ticket]session.Session{},
		err:      map[string]error{},
		endedN:   2,
	}
}

func (f *fakeAuthSessions) Create(ctx context.Context, rec session.Record, via string) (session.Ticket, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["Create"]; err != nil {
		return session.Ticket{}, err
	}
	t, err := session.NewTicket()
	if err != nil {
		return session.Ticket{}, err
	}
	f.created = append(f.created, rec)
	f.createdVia = append(f.createdVia, via)
	f.sessions[t] = session.Session{Record: rec, Expires: authTestNow.Add(24 * time.Hour)}
	return t, nil
}

func (f *fakeAuthSessions) Load(ctx context.Context, t session.Ticket) (*session.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["Load"]; err != nil {
		return nil, err
	}
	s, ok := f.sessions[t]
	if !ok {
		return nil, session.ErrNoSession
	}
	return &s, nil
}

func (f *fakeAuthSessions) AccessToken(ctx context.Context, t session.Ticket, rejected secret.String) (session.AccessToken, error) {
	return session.AccessToken{}, errors.New("fakeAuthSessions: AccessToken is not used by the auth endpoints")
}

func (f *fakeAuthSessions) End(ctx context.Context, t session.Ticket, reason string) (*session.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["End"]; err != nil {
		return nil, err
	}
	f.ended = append(f.ended, reason)
	s, ok := f.sessions[t]
	if !ok {
		return nil, session.ErrNoSession
	}
	delete(f.sessions, t)
	return &s.Record, nil
}

func (f *fakeAuthSessions) EndBySID(ctx context.Context, sid string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["EndBySID"]; err != nil {
		return 0, err
	}
	f.bySID = append(f.bySID, sid)
	return f.endedN, nil
}

func (f *fakeAuthSessions) EndBySubject(ctx context.Context, sub string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["EndBySubject"]; err != nil {
		return 0, err
	}
	f.bySubject = append(f.bySubject, sub)
	return f.endedN, nil
}

func (f *fakeAuthSessions) SaveLoginState(ctx context.Context, st session.LoginState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["SaveLoginState"]; err != nil {
		return err
	}
	f.states[st.State] = st
	return nil
}

func (f *fakeAuthSessions) TakeLoginState(ctx context.Context, state string) (*session.LoginState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err["TakeLoginState"]; err != nil {
		return nil, err
	}
	st, ok := f.states[state]
	if !ok {
		return nil, session.ErrUnknownState
	}
	delete(f.states, state)
	return &st, nil
}

// add puts a live session in the fake and returns its ticket.
func (f *fakeAuthSessions) add(t *testing.T, rec session.Record) session.Ticket {
	t.Helper()
	tk, err := session.NewTicket()
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessions[tk] = session.Session{Record: rec, Expires: authTestNow.Add(24 * time.Hour)}
	return tk
}

// fakeAuthProvider is a Provider with scriptable answers that records calls.
type fakeAuthProvider struct {
	mu sync.Mutex

	exchangeErr error
	identifyErr error
	revokeErr   error
	endSession  bool // has an end_session_endpoint
	logoutToken *idp.LogoutToken
	logoutErr   error

	exchanges   []string // "code verifier"
	identifies  []string // nonces
	revoked     []string
	endSessions []string // "hint|post-logout|state"
	verified    []string
}

func (p *fakeAuthProvider) AuthCodeURL(state, nonce, verifier string) string {
	v := url.Values{"state": {state}, "nonce": {nonce}, "code_challenge": {"S256(" + verifier + ")"}}
	return "https://idp.example.com/authorize?" + v.Encode()
}

func (p *fakeAuthProvider) Exchange(ctx context.Context, code, verifier string) (*idp.Token, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exchanges = append(p.exchanges, code+" "+verifier)
	if p.exchangeErr != nil {
		return nil, p.exchangeErr
	}
	return &idp.Token{
		AccessToken:   authTestAccessToken,
		RefreshToken:  authTestRefreshToken,
		IDToken:       authTestIDToken,
		TokenType:     "Bearer",
		Expiry:        authTestNow.Add(5 * time.Minute),
		RefreshExpiry: authTestNow.Add(30 * 24 * time.Hour),
	}, nil
}

func (p *fakeAuthProvider) Identify(ctx context.Context, tok *idp.Token, nonce string) (*idp.Identity, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.identifies = append(p.identifies, nonce)
	if p.identifyErr != nil {
		return nil, p.identifyErr
	}
	return &idp.Identity{
		Issuer:  "https://idp.example.com",
		Subject: "user-1",
		SID:     "sid-1",
		Claims:  map[string]any{"email": "ada@example.com", "name": "Ada"},
		Expiry:  authTestNow.Add(time.Hour),
	}, nil
}

func (p *fakeAuthProvider) Revoke(ctx context.Context, refreshToken secret.String) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revoked = append(p.revoked, refreshToken.Reveal())
	return p.revokeErr
}

func (p *fakeAuthProvider) EndSessionURL(idTokenHint secret.String, postLogoutRedirectURI, state string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endSessions = append(p.endSessions, idTokenHint.Reveal()+"|"+postLogoutRedirectURI+"|"+state)
	if !p.endSession {
		return ""
	}
	v := url.Values{"id_token_hint": {idTokenHint.Reveal()}, "post_logout_redirect_uri": {postLogoutRedirectURI}, "state": {state}}
	return "https://idp.example.com/logout?" + v.Encode()
}

func (p *fakeAuthProvider) VerifyLogoutToken(ctx context.Context, raw string) (*idp.LogoutToken, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.verified = append(p.verified, raw)
	if p.logoutErr != nil {
		return nil, p.logoutErr
	}
	return p.logoutToken, nil
}

func (p *fakeAuthProvider) Capture(body []byte) (*idp.Token, *idp.Identity, []byte, bool, error) {
	return nil, nil, body, false, nil
}

var authTestCookie = session.CookieOptions{Secure: true, SameSite: http.SameSiteLaxMode}

// authFixture is an authHandler over fakes, with its metrics registry and
// log buffer.
type authFixture struct {
	h    *authHandler
	ss   *fakeAuthSessions
	p    *fakeAuthProvider
	reg  *prometheus.Registry
	logs *bytes.Buffer
	// jar holds the login binding cookies the handler set, by name, the
	// way a browser would.
	jar map[string]*http.Cookie
}

func newAuthFixture(t *testing.T, mod func(*authOptions)) *authFixture {
	t.Helper()
	public, _ := url.Parse("https://app.example.com")
	guard, err := newCSRFGuard(public, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	f := &authFixture{ss: newFakeAuthSessions(), p: &fakeAuthProvider{endSession: true}, reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}, jar: map[string]*http.Cookie{}}
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
// browser that holds f.jar: login binding cookies are sent to the callback
// path and updated from the answer.
func (f *authFixture) serve(r *http.Request) *httptest.ResponseRecorder {
	if r.URL.Path == "/.auth/callback" {
		for _, c := range f.jar {
			r.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	w := f.serveFromOtherBrowser(r)
	for _, c := range w.Result().Cookies() {
		if !strings.HasPrefix(c.Name, "__Secure-tokenrelay-login-") {
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

// loginCookieLine is the Set-Cookie line binding the login of state.
func loginCookieLine(state string) string {
	return "__Secure-tokenrelay-login-" + state[:16] + "=" + state + "; Path=/.auth/callback; Max-Age=600; HttpOnly; Secure; SameSite=Lax"
}

// loginCookieClearLine is the Set-Cookie line removing that binding.
func loginCookieClearLine(state string) string {
	return "__Secure-tokenrelay-login-" + state[:16] + "=; Path=/.auth/callback; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax"
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

// wantAuthNoStore fails unless the answer forbids caching.
func wantAuthNoStore(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
}

// authClearedCookie is the Set-Cookie line that expires the session cookie.
const authClearedCookie = "__Host-tokenrelay=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax"

func TestLoginRedirect(t *testing.T) {
	tests := []struct {
		name         string
		query        string
		wantReturnTo string
	}{
		{"path with query", "?return_to=" + url.QueryEscape("/app/inbox?tab=2#top"), "/app/inbox?tab=2#top"},
		{"no return_to", "", "/"},
		{"open redirect refused", "?return_to=" + url.QueryEscape("//evil.com"), "/"},
		{"absolute refused", "?return_to=" + url.QueryEscape("https://evil.com/x"), "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t, nil)
			w := f.serve(httptest.NewRequest("GET", "https://app.example.com/.auth/login"+tt.query, nil))
			if w.Code != http.StatusFound {
				t.Fatalf("status = %d, want 302; body %s", w.Code, w.Body)
			}
			wantAuthNoStore(t, w)
			loc, err := url.Parse(w.Header().Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := loc.Scheme+"://"+loc.Host+loc.Path, "https://idp.example.com/authorize"; got != want {
				t.Errorf("redirect to %q, want %q", got, want)
			}
			q := loc.Query()
			st, ok := f.ss.states[q.Get("state")]
			if !ok {
				t.Fatalf("state %q from the redirect was not saved (saved: %d)", q.Get("state"), len(f.ss.states))
			}
			if len(f.ss.states) != 1 {
				t.Errorf("saved %d states, want 1", len(f.ss.states))
			}
			if st.ReturnTo != tt.wantReturnTo {
				t.Errorf("saved ReturnTo = %q, want %q", st.ReturnTo, tt.wantReturnTo)
			}
			if !st.CreatedAt.Equal(authTestNow) {
				t.Errorf("saved CreatedAt = %v, want %v", st.CreatedAt, authTestNow)
			}
			if got, want := q.Get("nonce"), st.Nonce; got != want {
				t.Errorf("nonce = %q, want saved %q", got, want)
			}
			if got, want := q.Get("code_challenge"), "S256("+st.Verifier+")"; got != want {
				t.Errorf("code_challenge = %q, want %q", got, want)
			}
			for name, v := range map[string]string{"state": st.State, "nonce": st.Nonce, "verifier": st.Verifier} {
				if len(v) < 43 {
					t.Errorf("%s %q is shorter than 43 characters (256 bits)", name, v)
				}
			}
			if got, want := w.Header().Values("Set-Cookie"), []string{loginCookieLine(st.State)}; !reflect.DeepEqual(got, want) {
				t.Errorf("Set-Cookie = %q, want %q", got, want)
			}
			if st.State == st.Nonce || st.State == st.Verifier || st.Nonce == st.Verifier {
				t.Errorf("state, nonce and verifier are not independent: %+v", st)
			}
		})
	}
}

func TestLoginSeveralTabs(t *testing.T) {
	f := newAuthFixture(t, nil)
	const tabs = 3
	for i := range tabs {
		w := f.serve(httptest.NewRequest("GET", fmt.Sprintf("/.auth/login?return_to=/tab/%d", i), nil))
		if w.Code != http.StatusFound {
			t.Fatalf("login %d: status %d", i, w.Code)
		}
	}
	if got := len(f.ss.states); got != tabs {
		t.Fatalf("saved %d distinct states, want %d", got, tabs)
	}
	// Each tab's callback lands on its own return_to, in any order.
	states := map[string]string{}
	for s, st := range f.ss.states {
		states[s] = st.ReturnTo
	}
	for s, want := range states {
		w := f.serve(httptest.NewRequest("GET", "/.auth/callback?code=c&state="+url.QueryEscape(s), nil))
		if got := w.Header().Get("Location"); w.Code != http.StatusFound || got != want {
			t.Errorf("callback: %d to %q, want 302 to %q", w.Code, got, want)
		}
	}
}

func TestLoginStoreDown(t *testing.T) {
	f := newAuthFixture(t, nil)
	f.ss.err["SaveLoginState"] = fmt.Errorf("session: save state: %w", session.ErrStoreUnavailable)
	w := f.serve(httptest.NewRequest("GET", "/.auth/login", nil))
	if w.Code != http.StatusServiceUnavailable || decodeAuthError(t, w).Error != "store_unavailable" || w.Header().Get("Retry-After") != "1" {
		t.Errorf("got %d %s Retry-After %q, want 503 store_unavailable Retry-After 1", w.Code, w.Body, w.Header().Get("Retry-After"))
	}
	wantAuthNoStore(t, w)
}

// startLogin saves a login state as GET /login would and returns it.
func (f *authFixture) startLogin(t *testing.T, returnTo string) session.LoginState {
	t.Helper()
	w := f.serve(httptest.NewRequest("GET", "/.auth/login?return_to="+url.QueryEscape(returnTo), nil))
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil || w.Code != http.StatusFound {
		t.Fatalf("login: %d %v", w.Code, err)
	}
	return f.ss.states[loc.Query().Get("state")]
}

func authCallbackURL(code, state string) string {
	return "/.auth/callback?" + url.Values{"code": {code}, "state": {state}}.Encode()
}

func TestCallbackHappyPath(t *testing.T) {
	f := newAuthFixture(t, nil)
	st := f.startLogin(t, "/app/inbox?tab=2")

	w := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, st.State), nil))
	if w.Code != http.StatusFound {
		t.Fatalf("status = %d, want 302; body %s", w.Code, w.Body)
	}
	wantAuthNoStore(t, w)
	if got, want := w.Header().Get("Location"), "/app/inbox?tab=2"; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if got, want := f.p.exchanges, []string{authTestCode + " " + st.Verifier}; !reflect.DeepEqual(got, want) {
		t.Errorf("Exchange calls = %q, want %q", got, want)
	}
	if got, want := f.p.identifies, []string{st.Nonce}; !reflect.DeepEqual(got, want) {
		t.Errorf("Identify nonces = %q, want %q", got, want)
	}
	wantRec := session.Record{
		AccessToken:   authTestAccessToken,
		RefreshToken:  authTestRefreshToken,
		IDToken:       authTestIDToken,
		AccessExpiry:  authTestNow.Add(5 * time.Minute),
		RefreshExpiry: authTestNow.Add(30 * 24 * time.Hour),
		Issuer:        "https://idp.example.com",
		Subject:       "user-1",
		SID:           "sid-1",
		Claims:        map[string]any{"email": "ada@example.com", "name": "Ada"},
		CreatedAt:     authTestNow,
	}
	if len(f.ss.created) != 1 || !reflect.DeepEqual(f.ss.created[0], wantRec) {
		t.Fatalf("created records = %#v, want [%#v]", f.ss.created, wantRec)
	}
	if got, want := f.ss.createdVia, []string{"login"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Create via = %q, want %q", got, want)
	}
	if len(f.ss.ended) != 0 {
		t.Errorf("End called %d times with no previous session, want 0", len(f.ss.ended))
	}
	var tk session.Ticket
	for k := range f.ss.sessions {
		tk = k
	}
	cookies := w.Header().Values("Set-Cookie")
	want := []string{
		loginCookieClearLine(st.State),
		"__Host-tokenrelay=" + tk.Encode() + "; Path=/; Max-Age=2592000; HttpOnly; Secure; SameSite=Lax",
	}
	if !reflect.DeepEqual(cookies, want) {
		t.Errorf("Set-Cookie = %q, want %q", cookies, want)
	}
	if _, left := f.ss.states[st.State]; left {
		t.Errorf("login state still stored after the callback")
	}
}

func TestCallbackEndsPreviousSession(t *testing.T) {
	f := newAuthFixture(t, nil)
	old := f.ss.add(t, session.Record{Subject: "someone-else", RefreshToken: "rt-old"})
	st := f.startLogin(t, "/")

	w := f.serve(withAuthTicket(httptest.NewRequest("GET", authCallbackURL(authTestCode, st.State), nil), old))
	if w.Code != http.StatusFound {
		t.Fatalf("status = %d, want 302; body %s", w.Code, w.Body)
	}
	if _, live := f.ss.sessions[old]; live {
		t.Errorf("previous session still live after login")
	}
	if got, want := f.ss.ended, []string{"replaced"}; !reflect.DeepEqual(got, want) {
		t.Errorf("End reasons = %q, want %q", got, want)
	}
	if len(f.ss.sessions) != 1 {
		t.Fatalf("%d live sessions, want 1", len(f.ss.sessions))
	}
	for tk := range f.ss.sessions {
		if tk == old {
			t.Errorf("the new session reuses the old ticket")
		}
		if c := w.Header().Values("Set-Cookie"); len(c) != 2 || !strings.HasPrefix(c[1], "__Host-tokenrelay="+tk.Encode()+";") {
			t.Errorf("Set-Cookie = %q, want the new ticket", c)
		}
	}
}

func TestCallbackFailures(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(f *authFixture, st session.LoginState) string // returns the callback URL
		wantStatus int
		wantCode   string
		wantMsg    string // substring of the message, when set
		wantExch   int
	}{
		{
			name:       "unknown state",
			setup:      func(f *authFixture, st session.LoginState) string { return authCallbackURL("c", "no-such-state") },
			wantStatus: 400, wantCode: "invalid_state",
		},
		{
			name: "expired state",
			setup: func(f *authFixture, st session.LoginState) string {
				// The manager reports an expired state as unknown.
				f.ss.err["TakeLoginState"] = fmt.Errorf("session: take state: %w", session.ErrUnknownState)
				return authCallbackURL("c", st.State)
			},
			wantStatus: 400, wantCode: "invalid_state",
		},
		{
			name:       "missing code",
			setup:      func(f *authFixture, st session.LoginState) string { return "/.auth/callback?state=" + st.State },
			wantStatus: 400, wantCode: "invalid_request",
		},
		{
			name:       "missing state",
			setup:      func(f *authFixture, st session.LoginState) string { return "/.auth/callback?code=c" },
			wantStatus: 400, wantCode: "invalid_request",
		},
		{
			name: "provider error",
			setup: func(f *authFixture, st session.LoginState) string {
				return "/.auth/callback?" + url.Values{"error": {"access_denied"}, "error_description": {"User said <b>no</b>\r\n\"x\""}, "state": {st.State}}.Encode()
			},
			wantStatus: 401, wantCode: "login_failed",
			wantMsg: "the identity provider refused the login: access_denied: User said bno/bx",
		},
		{
			name: "exchange fails",
			setup: func(f *authFixture, st session.LoginState) string {
				f.p.exchangeErr = &idp.TokenError{Code: "invalid_grant", Status: 400, Dead: true}
				return authCallbackURL(authTestCode, st.State)
			},
			wantStatus: 502, wantCode: "token_exchange_failed", wantExch: 1,
		},
		{
			name: "identify fails",
			setup: func(f *authFixture, st session.LoginState) string {
				f.p.identifyErr = errors.New("idp: id token: nonce mismatch")
				return authCallbackURL(authTestCode, st.State)
			},
			wantStatus: 401, wantCode: "invalid_id_token", wantExch: 1,
		},
		{
			name: "store down",
			setup: func(f *authFixture, st session.LoginState) string {
				f.ss.err["TakeLoginState"] = fmt.Errorf("session: take state: %w", session.ErrStoreUnavailable)
				return authCallbackURL(authTestCode, st.State)
			},
			wantStatus: 503, wantCode: "store_unavailable",
		},
		{
			name: "create fails",
			setup: func(f *authFixture, st session.LoginState) string {
				f.ss.err["Create"] = fmt.Errorf("session: create: %w", session.ErrStoreUnavailable)
				return authCallbackURL(authTestCode, st.State)
			},
			wantStatus: 503, wantCode: "store_unavailable", wantExch: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t, nil)
			st := f.startLogin(t, "/after")
			w := f.serve(httptest.NewRequest("GET", tt.setup(f, st), nil))
			wantAuthNoStore(t, w)
			e := decodeAuthError(t, w)
			if w.Code != tt.wantStatus || e.Error != tt.wantCode {
				t.Fatalf("got %d %q, want %d %q; body %s", w.Code, e.Error, tt.wantStatus, tt.wantCode, w.Body)
			}
			if tt.wantMsg != "" && e.Message != tt.wantMsg {
				t.Errorf("message = %q, want %q", e.Message, tt.wantMsg)
			}
			if got := len(f.p.exchanges); got != tt.wantExch {
				t.Errorf("Exchange called %d times, want %d", got, tt.wantExch)
			}
			if sessionCookieSet(w) {
				t.Errorf("Set-Cookie = %q: a failed callback set the session cookie", w.Header().Values("Set-Cookie"))
			}
			if len(f.ss.created) != 0 {
				t.Errorf("a session was created by a failed callback")
			}
		})
	}
}

func TestCallbackProviderErrorBurnsState(t *testing.T) {
	f := newAuthFixture(t, nil)
	st := f.startLogin(t, "/")
	f.serve(httptest.NewRequest("GET", "/.auth/callback?error=access_denied&state="+st.State, nil))
	w := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, st.State), nil))
	if e := decodeAuthError(t, w); w.Code != 400 || e.Error != "invalid_state" {
		t.Errorf("code after a provider error: %d %q, want 400 invalid_state", w.Code, e.Error)
	}
}

func TestCallbackStateUsedTwice(t *testing.T) {
	f := newAuthFixture(t, nil)
	st := f.startLogin(t, "/x")
	first := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, st.State), nil))
	if first.Code != http.StatusFound {
		t.Fatalf("first callback: %d, want 302", first.Code)
	}
	second := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, st.State), nil))
	if e := decodeAuthError(t, second); second.Code != 400 || e.Error != "invalid_state" {
		t.Errorf("second callback: %d %q, want 400 invalid_state", second.Code, e.Error)
	}
	if got := len(f.p.exchanges); got != 1 {
		t.Errorf("Exchange called %d times, want 1", got)
	}
}

func TestSessionEndpoint(t *testing.T) {
	f := newAuthFixture(t, nil)
	rec := session.Record{
		AccessToken:  authTestAccessToken,
		RefreshToken: authTestRefreshToken,
		IDToken:      authTestIDToken,
		AccessExpiry: authTestNow.Add(5 * time.Minute),
		Issuer:       "https://idp.example.com",
		Subject:      "user-1",
		SID:          "sid-1",
		Claims:       map[string]any{"email": "ada@example.com", "name": "Ada"},
		CreatedAt:    authTestNow,
	}
	tk := f.ss.add(t, rec)
	stale, _ := session.NewTicket()

	tests := []struct {
		name       string
		req        *http.Request
		loadErr    error
		wantStatus int
		wantBody   string
		wantCookie []string
	}{
		{
			name:       "logged in",
			req:        withAuthTicket(httptest.NewRequest("GET", "/.auth/session", nil), tk),
			wantStatus: 200,
			wantBody:   `{"authenticated":true,"subject":"user-1","claims":{"email":"ada@example.com","name":"Ada"},"expires_at":"2026-03-02T12:00:00Z","access_token_expires_at":"2026-03-01T12:05:00Z"}`,
		},
		{
			name:       "no cookie",
			req:        httptest.NewRequest("GET", "/.auth/session", nil),
			wantStatus: 200, wantBody: `{"authenticated":false}`,
		},
		{
			name:       "stale cookie cleared",
			req:        withAuthTicket(httptest.NewRequest("GET", "/.auth/session", nil), stale),
			wantStatus: 200, wantBody: `{"authenticated":false}`,
			wantCookie: []string{authClearedCookie},
		},
		{
			name:       "store down",
			req:        withAuthTicket(httptest.NewRequest("GET", "/.auth/session", nil), tk),
			loadErr:    fmt.Errorf("session: load: %w", session.ErrStoreUnavailable),
			wantStatus: 503,
			wantBody:   `{"error":"store_unavailable","message":"the session store is unreachable"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.ss.err["Load"] = tt.loadErr
			w := f.serve(tt.req)
			if w.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", w.Code, tt.wantStatus)
			}
			if got := strings.TrimSpace(w.Body.String()); got != tt.wantBody {
				t.Errorf("body = %s, want %s", got, tt.wantBody)
			}
			if got := w.Header().Values("Set-Cookie"); len(got) != len(tt.wantCookie) || (len(got) > 0 && !reflect.DeepEqual(got, tt.wantCookie)) {
				t.Errorf("Set-Cookie = %q, want %q", got, tt.wantCookie)
			}
			wantAuthNoStore(t, w)
			for _, tok := range []string{authTestAccessToken, authTestRefreshToken, authTestIDToken} {
				if strings.Contains(w.Body.String(), tok) {
					t.Errorf("body contains a token: %s", w.Body)
				}
			}
		})
	}
}

func TestLogout(t *testing.T) {
	rec := session.Record{RefreshToken: authTestRefreshToken, IDToken: authTestIDToken, Subject: "user-1", SID: "sid-1"}
	tests := []struct {
		name        string
		headers     map[string]string
		noSession   bool
		staleCookie bool // a cookie whose session is gone
		noEndpoint  bool // the provider has no end_session_endpoint
		revokeErr   error
		revoke      bool
		wantStatus  int
		wantJSON    bool
		wantRevoked int
		wantMetric  map[string]float64
		wantLocal   bool // the answer is the post-logout URI itself
	}{
		{
			name:    "fetch with Accept json",
			headers: map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			revoke:  true, wantStatus: 200, wantJSON: true, wantRevoked: 1,
			wantMetric: map[string]float64{"success": 1, "failed": 0},
		},
		{
			name:    "fetch by Sec-Fetch-Mode cors",
			headers: map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "X-CSRF": "1"},
			revoke:  true, wantStatus: 200, wantJSON: true, wantRevoked: 1,
			wantMetric: map[string]float64{"success": 1, "failed": 0},
		},
		{
			name:    "form post navigation",
			headers: map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "X-CSRF": "1", "Accept": "text/html"},
			revoke:  true, wantStatus: 303, wantRevoked: 1,
			wantMetric: map[string]float64{"success": 1, "failed": 0},
		},
		{
			name:      "revocation failure does not block logout",
			headers:   map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			revokeErr: errors.New("idp: revoke: status 500"),
			revoke:    true, wantStatus: 200, wantJSON: true, wantRevoked: 1,
			wantMetric: map[string]float64{"success": 0, "failed": 1},
		},
		{
			name:      "revocation not supported",
			headers:   map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			revokeErr: fmt.Errorf("idp: revoke: %w", idp.ErrNotSupported),
			revoke:    true, wantStatus: 200, wantJSON: true, wantRevoked: 1,
			wantMetric: map[string]float64{"success": 0, "failed": 0},
		},
		{
			name:    "revocation off",
			headers: map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			revoke:  false, wantStatus: 200, wantJSON: true, wantRevoked: 0,
			wantMetric: map[string]float64{"success": 0, "failed": 0},
		},
		{
			name:       "no end_session_endpoint",
			headers:    map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			noEndpoint: true,
			revoke:     true, wantStatus: 200, wantJSON: true, wantRevoked: 1, wantLocal: true,
			wantMetric: map[string]float64{"success": 1, "failed": 0},
		},
		{
			name:      "no session: local logout",
			headers:   map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			noSession: true,
			revoke:    true, wantStatus: 200, wantJSON: true, wantRevoked: 0, wantLocal: true,
			wantMetric: map[string]float64{"success": 0, "failed": 0},
		},
		{
			name:        "stale cookie: local logout",
			headers:     map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			staleCookie: true,
			revoke:      true, wantStatus: 200, wantJSON: true, wantRevoked: 0, wantLocal: true,
			wantMetric: map[string]float64{"success": 0, "failed": 0},
		},
		{
			name:      "no session: form post",
			headers:   map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1"},
			noSession: true,
			revoke:    true, wantStatus: 303, wantRevoked: 0, wantLocal: true,
			wantMetric: map[string]float64{"success": 0, "failed": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t, func(o *authOptions) { o.RevokeOnLogout = tt.revoke })
			f.p.revokeErr = tt.revokeErr
			f.p.endSession = !tt.noEndpoint
			r := httptest.NewRequest("POST", "https://app.example.com/.auth/logout", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			switch {
			case tt.staleCookie:
				gone, _ := session.NewTicket()
				r = withAuthTicket(r, gone)
			case !tt.noSession:
				r = withAuthTicket(r, f.ss.add(t, rec))
			}
			w := f.serve(r)
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.wantStatus, w.Body)
			}
			wantAuthNoStore(t, w)
			if got := w.Header().Values("Set-Cookie"); len(got) != 1 || got[0] != authClearedCookie {
				t.Errorf("Set-Cookie = %q, want [%q]", got, authClearedCookie)
			}
			if len(f.ss.sessions) != 0 {
				t.Errorf("%d sessions left after logout, want 0", len(f.ss.sessions))
			}
			var next string
			if tt.wantJSON {
				var got map[string]string
				if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || len(got) != 1 {
					t.Fatalf("body %s: want exactly {\"logout_url\": ...} (%v)", w.Body, err)
				}
				next = got["logout_url"]
			} else {
				next = w.Header().Get("Location")
			}
			if tt.wantLocal {
				if next != "https://app.example.com/" {
					t.Errorf("next = %q, want the post-logout URI https://app.example.com/", next)
				}
			} else {
				u, err := url.Parse(next)
				if err != nil {
					t.Fatal(err)
				}
				q := u.Query()
				if u.Host != "idp.example.com" || u.Path != "/logout" || q.Get("id_token_hint") != authTestIDToken ||
					q.Get("post_logout_redirect_uri") != "https://app.example.com/" || len(q.Get("state")) < 43 {
					t.Errorf("next = %q, want the end-session URL with id_token_hint, post_logout_redirect_uri and a fresh state", next)
				}
			}
			if got := len(f.p.revoked); got != tt.wantRevoked {
				t.Errorf("Revoke called %d times, want %d", got, tt.wantRevoked)
			}
			for _, got := range f.p.revoked {
				if got != authTestRefreshToken {
					t.Errorf("Revoke(%q), want the refresh token", got)
				}
			}
			for result, want := range tt.wantMetric {
				if got := authCounterValue(t, f.reg, "tokenrelay_revocations_total", "result", result); got != want {
					t.Errorf("tokenrelay_revocations_total{result=%q} = %v, want %v", result, got, want)
				}
			}
		})
	}
}

func TestLogoutRefused(t *testing.T) {
	tests := []struct {
		name       string
		headers    map[string]string
		endErr     error
		wantStatus int
		wantCode   string
	}{
		{"cross-site form post", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.com"}, nil, 403, "csrf"},
		{"cross-site with header", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.com", "X-CSRF": "1"}, nil, 403, "csrf"},
		{"same-origin without header", map[string]string{"Sec-Fetch-Site": "same-origin"}, nil, 403, "csrf"},
		{"store down", map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1"}, fmt.Errorf("session: end: %w", session.ErrStoreUnavailable), 503, "store_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t, nil)
			f.ss.err["End"] = tt.endErr
			tk := f.ss.add(t, session.Record{RefreshToken: authTestRefreshToken, IDToken: authTestIDToken})
			r := withAuthTicket(httptest.NewRequest("POST", "https://app.example.com/.auth/logout", nil), tk)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			w := f.serve(r)
			if e := decodeAuthError(t, w); w.Code != tt.wantStatus || e.Error != tt.wantCode {
				t.Fatalf("got %d %q, want %d %q", w.Code, e.Error, tt.wantStatus, tt.wantCode)
			}
			wantAuthNoStore(t, w)
			if _, live := f.ss.sessions[tk]; !live {
				t.Errorf("the session ended on a refused logout")
			}
			if got := w.Header().Values("Set-Cookie"); len(got) != 0 {
				t.Errorf("Set-Cookie = %q on a refused logout, want none", got)
			}
			if len(f.p.revoked) != 0 {
				t.Errorf("Revoke called on a refused logout")
			}
		})
	}
}

func TestBackchannelLogout(t *testing.T) {
	form := func(token string) *http.Request {
		r := httptest.NewRequest("POST", "/.auth/backchannel-logout", strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}
	tests := []struct {
		name        string
		req         *http.Request
		token       *idp.LogoutToken
		verifyErr   error
		storeErr    error
		wantStatus  int
		wantCode    string
		wantSID     []string
		wantSubject []string
		wantVerify  int
	}{
		{
			name: "sid", req: form("lt-1"),
			token:      &idp.LogoutToken{Issuer: "https://idp.example.com", Subject: "user-1", SID: "sid-1"},
			wantStatus: 200, wantSID: []string{"sid-1"}, wantVerify: 1,
		},
		{
			name: "sub only", req: form("lt-1"),
			token:      &idp.LogoutToken{Issuer: "https://idp.example.com", Subject: "user-1"},
			wantStatus: 200, wantSubject: []string{"user-1"}, wantVerify: 1,
		},
		{
			name: "invalid token", req: form("lt-bad"),
			verifyErr:  errors.New("idp: logout token: nonce present"),
			wantStatus: 400, wantCode: "invalid_request", wantVerify: 1,
		},
		{
			name: "neither sid nor sub", req: form("lt-1"),
			token:      &idp.LogoutToken{Issuer: "https://idp.example.com"},
			wantStatus: 400, wantCode: "invalid_request", wantVerify: 1,
		},
		{
			name: "missing token", req: form(""),
			wantStatus: 400, wantCode: "invalid_request",
		},
		{
			name: "token in query only",
			req: func() *http.Request {
				r := httptest.NewRequest("POST", "/.auth/backchannel-logout?logout_token=lt-1", nil)
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				return r
			}(),
			wantStatus: 400, wantCode: "invalid_request",
		},
		{
			name:       "body too large",
			req:        form("lt-" + strings.Repeat("a", maxLogoutTokenBody)),
			wantStatus: 400, wantCode: "invalid_request",
		},
		{
			name: "store down", req: form("lt-1"),
			token:      &idp.LogoutToken{Issuer: "https://idp.example.com", Subject: "user-1", SID: "sid-1"},
			storeErr:   fmt.Errorf("session: end by sid: %w", session.ErrStoreUnavailable),
			wantStatus: 503, wantCode: "store_unavailable", wantVerify: 1,
		},
		{
			name:       "GET not allowed",
			req:        httptest.NewRequest("GET", "/.auth/backchannel-logout", nil),
			wantStatus: 405, wantCode: "method_not_allowed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t, nil)
			f.p.logoutToken, f.p.logoutErr = tt.token, tt.verifyErr
			f.ss.err["EndBySID"], f.ss.err["EndBySubject"] = tt.storeErr, tt.storeErr
			// A server-to-server call: no Origin, no Sec-Fetch-*, no X-CSRF.
			w := f.serve(tt.req)
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.wantStatus, w.Body)
			}
			wantAuthNoStore(t, w)
			if tt.wantCode != "" {
				if e := decodeAuthError(t, w); e.Error != tt.wantCode {
					t.Errorf("error = %q, want %q", e.Error, tt.wantCode)
				}
			} else if w.Body.Len() != 0 {
				t.Errorf("body = %q, want empty", w.Body)
			}
			if !reflect.DeepEqual(f.ss.bySID, tt.wantSID) {
				t.Errorf("EndBySID calls = %q, want %q", f.ss.bySID, tt.wantSID)
			}
			if !reflect.DeepEqual(f.ss.bySubject, tt.wantSubject) {
				t.Errorf("EndBySubject calls = %q, want %q", f.ss.bySubject, tt.wantSubject)
			}
			if got := len(f.p.verified); got != tt.wantVerify {
				t.Errorf("VerifyLogoutToken called %d times, want %d", got, tt.wantVerify)
			}
		})
	}
}

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
	ok := authOptions{Sessions: newFakeAuthSessions(), Provider: &fakeAuthProvider{}, CSRF: guard}
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

// TestCallbackFromOtherBrowser is the login CSRF defence: a callback URL
// with a valid code and state, opened in a browser that did not start that
// login, is refused, and the state stays usable by the browser that did.
func TestCallbackFromOtherBrowser(t *testing.T) {
	f := newAuthFixture(t, nil)
	st := f.startLogin(t, "/mine")
	tests := []struct {
		name   string
		cookie *http.Cookie
	}{
		{"no binding cookie", nil},
		{"binding cookie of another state", &http.Cookie{Name: "__Secure-tokenrelay-login-" + st.State[:16], Value: st.State[:42] + "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", authCallbackURL(authTestCode, st.State), nil)
			if tt.cookie != nil {
				r.AddCookie(tt.cookie)
			}
			w := f.serveFromOtherBrowser(r)
			if e := decodeAuthError(t, w); w.Code != 400 || e.Error != "invalid_state" {
				t.Errorf("got %d %q, want 400 invalid_state", w.Code, e.Error)
			}
			if sessionCookieSet(w) {
				t.Errorf("the other browser got a session cookie")
			}
		})
	}
	if got := len(f.p.exchanges); got != 0 {
		t.Errorf("Exchange called %d times, want 0", got)
	}
	w := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, st.State), nil))
	if w.Code != http.StatusFound || w.Header().Get("Location") != "/mine" {
		t.Errorf("the starting browser's callback: %d to %q, want 302 to /mine", w.Code, w.Header().Get("Location"))
	}
}

// noRefresh is a session.Refresher for flows that must not refresh.
type noRefresh struct{}

func (noRefresh) Refresh(context.Context, secret.String) (*idp.Token, error) {
	return nil, errors.New("noRefresh: unexpected refresh")
}

// newManagerFixture is an authHandler over the real session.Manager and
// MemoryStore, with the scripted provider.
func newManagerFixture(t *testing.T, clock *pxClock) *authFixture {
	t.Helper()
	m, err := session.NewManager(session.ManagerOptions{
		Backend:       session.NewMemoryStore(clock.Now),
		Secret:        bytes.Repeat([]byte("k"), 32),
		Refresher:     noRefresh{},
		Issuer:        "https://idp.example.com",
		Now:           clock.Now,
		IdleTimeout:   24 * time.Hour,
		MaxLifetime:   720 * time.Hour,
		LoginStateTTL: 10 * time.Minute,
	})
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	f := newAuthFixture(t, func(o *authOptions) {
		o.Sessions = m
		o.Now = clock.Now
		o.LoginStateTTL = 10 * time.Minute
	})
	f.ss = nil // the fake is not in use
	return f
}

// TestAuthFlowWithManager runs login → callback → session → logout →
// session against the real session manager and memory store.
func TestAuthFlowWithManager(t *testing.T) {
	clock := &pxClock{t: authTestNow}
	f := newManagerFixture(t, clock)
	jar := &http.Cookie{}

	// Login.
	w := f.serve(httptest.NewRequest("GET", "/.auth/login?return_to="+url.QueryEscape("/inbox?x=1"), nil))
	loc, _ := url.Parse(w.Header().Get("Location"))
	state := loc.Query().Get("state")
	if w.Code != http.StatusFound || state == "" {
		t.Fatalf("login: %d to %q", w.Code, loc)
	}

	// Callback, five minutes later.
	clock.Advance(5 * time.Minute)
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
	clock.Advance(2 * time.Minute)
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
	if u, _ := url.Parse(out.LogoutURL); u == nil || u.Query().Get("id_token_hint") != authTestIDToken {
		t.Errorf("logout_url = %q, want the end-session URL with the ID token hint", out.LogoutURL)
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
}

// TestCallbackWithManager checks single use and expiry of login states in
// the real manager.
func TestCallbackWithManager(t *testing.T) {
	tests := []struct {
		name       string
		wait       time.Duration
		twice      bool
		wantStatus int
	}{
		{"in time", 9*time.Minute + 59*time.Second, false, http.StatusFound},
		{"expired", 10 * time.Minute, false, http.StatusBadRequest},
		{"used twice", time.Minute, true, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &pxClock{t: authTestNow}
			f := newManagerFixture(t, clock)
			w := f.serve(httptest.NewRequest("GET", "/.auth/login", nil))
			loc, _ := url.Parse(w.Header().Get("Location"))
			state := loc.Query().Get("state")
			clock.Advance(tt.wait)
			if tt.twice {
				if w := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, state), nil)); w.Code != http.StatusFound {
					t.Fatalf("first callback: %d, want 302", w.Code)
				}
				// The browser still holds the binding cookie, as an
				// attacker replaying the URL from it would.
				f.jar["__Secure-tokenrelay-login-"+state[:16]] = &http.Cookie{Name: "__Secure-tokenrelay-login-" + state[:16], Value: state}
			}
			w = f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, state), nil))
			if w.Code != tt.wantStatus {
				t.Fatalf("callback: %d, want %d; body %s", w.Code, tt.wantStatus, w.Body)
			}
			if tt.wantStatus == http.StatusBadRequest {
				if e := decodeAuthError(t, w); e.Error != "invalid_state" {
					t.Errorf("error = %q, want invalid_state", e.Error)
				}
			}
		})
	}
}

// TestBackchannelWithManager ends a real session by its sid and by its
// subject.
func TestBackchannelWithManager(t *testing.T) {
	tests := []struct {
		name  string
		token idp.LogoutToken
		ended bool
	}{
		{"sid", idp.LogoutToken{Issuer: "https://idp.example.com", Subject: "user-1", SID: "sid-1"}, true},
		{"subject", idp.LogoutToken{Issuer: "https://idp.example.com", Subject: "user-1"}, true},
		{"other sid", idp.LogoutToken{Issuer: "https://idp.example.com", Subject: "user-1", SID: "sid-2"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &pxClock{t: authTestNow}
			f := newManagerFixture(t, clock)
			w := f.serve(httptest.NewRequest("GET", "/.auth/login", nil))
			loc, _ := url.Parse(w.Header().Get("Location"))
			w = f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, loc.Query().Get("state")), nil))
			var ticket string
			for _, c := range w.Result().Cookies() {
				if c.Name == session.DefaultCookieName {
					ticket = c.Value
				}
			}
			tok := tt.token
			f.p.logoutToken = &tok
			r := httptest.NewRequest("POST", "/.auth/backchannel-logout", strings.NewReader("logout_token=lt"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if w := f.serve(r); w.Code != http.StatusOK {
				t.Fatalf("back-channel logout: %d %s", w.Code, w.Body)
			}
			r = httptest.NewRequest("GET", "/.auth/session", nil)
			r.AddCookie(&http.Cookie{Name: session.DefaultCookieName, Value: ticket})
			w = f.serve(r)
			wantBody := `{"authenticated":false}`
			if got := strings.TrimSpace(w.Body.String()); (got == wantBody) != tt.ended {
				t.Errorf("session after back-channel logout: %s, want ended=%v", got, tt.ended)
			}
		})
	}
}
