package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/session"
)

// startLogin starts a login as GET /login would and returns its state.
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
	if got, want := f.ss.via, []string{"login"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Create via = %q, want %q", got, want)
	}
	if len(f.ss.reasons) != 0 {
		t.Errorf("End called %d times with no previous session, want 0", len(f.ss.reasons))
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
	if !f.ss.claimed[st.State] {
		t.Errorf("the callback did not claim the login state")
	}
}

// TestCallbackRecordsStepUp pins that the session a step-up login starts
// records what that login asked the provider for (the step-up loop guard
// reads it).
func TestCallbackRecordsStepUp(t *testing.T) {
	f := newAuthFixture(t, nil)
	w := f.serve(httptest.NewRequest("GET", "/.auth/login?return_to=/mfa/&acr_values=urn:mfa", nil))
	loc, _ := url.Parse(w.Header().Get("Location"))
	st := f.ss.states[loc.Query().Get("state")]
	if w := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, st.State), nil)); w.Code != http.StatusFound {
		t.Fatalf("callback = %d %s", w.Code, w.Body)
	}
	want := idp.LoginRequest{ACRValues: []string{"urn:mfa"}}
	if len(f.ss.created) != 1 || !reflect.DeepEqual(f.ss.created[0].Login, want) {
		t.Fatalf("created records = %+v, want one whose Login is %+v", f.ss.created, want)
	}
}

// TestCallbackFailurePage pins what a browser sees when the login fails at
// the callback: the login-failed page with the request id and a link that
// starts a new login; an API client gets the JSON.
func TestCallbackFailurePage(t *testing.T) {
	f := newAuthFixture(t, nil)
	r := httptest.NewRequest("GET", "/.auth/callback?error=access_denied&error_description=no", nil)
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	w := f.serve(r)
	body := w.Body.String()
	if w.Code != http.StatusUnauthorized || !strings.Contains(body, "<title>Login failed</title>") ||
		!strings.Contains(body, "access_denied: no") || !strings.Contains(body, `href="/.auth/login"`) || !strings.Contains(body, "Request id: <code>req-test-") {
		t.Errorf("callback error as a navigation = %d %q, want 401 with the login-failed page", w.Code, body)
	}
	w = f.serve(httptest.NewRequest("GET", "/.auth/callback?error=access_denied", nil))
	if w.Code != http.StatusUnauthorized || decodeAuthError(t, w).Error != "login_failed" {
		t.Errorf("callback error from an API client = %d %s, want 401 login_failed", w.Code, w.Body)
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
	if got, want := f.ss.reasons, []string{"replaced"}; !reflect.DeepEqual(got, want) {
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
				f.ss.err["OpenLogin"] = session.ErrUnknownState
				return authCallbackURL("c", st.State)
			},
			wantStatus: 400, wantCode: "invalid_state",
		},
		{
			name: "state already used elsewhere",
			setup: func(f *authFixture, st session.LoginState) string {
				f.ss.err["ClaimLogin"] = fmt.Errorf("session: claim login: already used: %w", session.ErrUnknownState)
				return authCallbackURL(authTestCode, st.State)
			},
			wantStatus: 400, wantCode: "invalid_state", wantExch: 1,
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
			name: "state already used: refused before the exchange",
			setup: func(f *authFixture, st session.LoginState) string {
				f.ss.claimed[st.State] = true
				return authCallbackURL(authTestCode, st.State)
			},
			wantStatus: 400, wantCode: "invalid_state",
		},
		{
			name: "store down at the check",
			setup: func(f *authFixture, st session.LoginState) string {
				f.ss.err["LoginUnused"] = fmt.Errorf("session: claimed: %w", session.ErrStoreUnavailable)
				return authCallbackURL(authTestCode, st.State)
			},
			wantStatus: 503, wantCode: "store_unavailable",
		},
		{
			name: "store down at the claim",
			setup: func(f *authFixture, st session.LoginState) string {
				f.ss.err["ClaimLogin"] = fmt.Errorf("session: claim: %w", session.ErrStoreUnavailable)
				return authCallbackURL(authTestCode, st.State)
			},
			wantStatus: 503, wantCode: "store_unavailable", wantExch: 1,
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

// TestCallbackFromOtherBrowser is the login CSRF defence: a callback URL
// with a valid code and state, opened in a browser that did not start that
// login, is refused, and the state stays usable by the browser that did.
func TestCallbackFromOtherBrowser(t *testing.T) {
	f := newAuthFixture(t, nil)
	other := f.startLogin(t, "/theirs")
	st := f.startLogin(t, "/mine")
	tests := []struct {
		name   string
		cookie *http.Cookie
	}{
		{"no binding cookie", nil},
		{"binding cookie of another state", &http.Cookie{Name: loginCookieName(st.State), Value: "sealed-" + st.State[:42] + "x"}},
		{"another login's binding under this name", &http.Cookie{Name: loginCookieName(st.State), Value: "sealed-" + other.State}},
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

// TestCallbackWithManager checks single use and expiry of login states in
// the real manager: the sealed creation time bounds a state even when the
// browser kept its cookie past Max-Age, and a state replayed with its
// cookie is refused by the claim check before its code is sent again.
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
			atAuthTestNow(t, func(t *testing.T) {
				f := newManagerFixture(t)
				w := f.serve(httptest.NewRequest("GET", "/.auth/login", nil))
				loc, _ := url.Parse(w.Header().Get("Location"))
				state := loc.Query().Get("state")
				binding := *f.jar[loginCookieName(state)]
				time.Sleep(tt.wait)
				if tt.twice {
					if w := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, state), nil)); w.Code != http.StatusFound {
						t.Fatalf("first callback: %d, want 302", w.Code)
					}
					// The browser still holds the binding cookie, as an
					// attacker replaying the URL from it would.
					f.jar[binding.Name] = &binding
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
				// A refused state never reaches the token endpoint: the replay
				// stops at the claim check.
				wantExch := 0
				if tt.twice || tt.wantStatus == http.StatusFound {
					wantExch = 1
				}
				if got := len(f.p.exchanges); got != wantExch {
					t.Errorf("Exchange called %d times, want %d", got, wantExch)
				}
			})
		})
	}
}

// TestCallbackKeepsDPoPKey: the key a DPoP login's tokens are bound to is
// kept in the session record.
func TestCallbackKeepsDPoPKey(t *testing.T) {
	f := newAuthFixture(t, nil)
	key, err := idp.NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	f.p.dpopKey = key
	st := f.startLogin(t, "/")
	if w := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, st.State), nil)); w.Code != http.StatusFound {
		t.Fatalf("callback = %d %s", w.Code, w.Body)
	}
	if len(f.ss.sessions) != 1 {
		t.Fatalf("sessions = %d, want 1", len(f.ss.sessions))
	}
	for _, s := range f.ss.sessions {
		if !bytes.Equal(s.DPoPKey, key.Bytes()) {
			t.Errorf("record DPoP key = %x, want the login's key", s.DPoPKey)
		}
	}
}
