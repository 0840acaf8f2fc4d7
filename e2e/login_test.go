package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// sessionMaxAge is the session.max_lifetime the harness configures, and so
// the session cookie's Max-Age.
const sessionMaxAge = 2 * time.Hour

// loginStateTTL is the session.login_state_ttl the harness configures, and
// so the Max-Age of the cookie that binds a login to its browser.
const loginStateTTL = 5 * time.Minute

// whoamiAnswer is the sample API's GET /api/whoami answer.
type whoamiAnswer struct {
	Sub        string `json:"sub"`
	Exp        int64  `json:"exp"`
	Iat        int64  `json:"iat"`
	JTI        string `json:"jti"`
	Scope      string `json:"scope"`
	TokensSeen int    `json:"tokens_seen"`
}

func decodeWhoami(t *testing.T, o observed) whoamiAnswer {
	t.Helper()
	if o.Status != http.StatusOK {
		t.Fatalf("%s %s = %d, want 200; body: %s", o.Method, o.URL.Path, o.Status, o.Body)
	}
	var w whoamiAnswer
	if err := json.Unmarshal(o.Body, &w); err != nil {
		t.Fatalf("whoami body %q: %v", o.Body, err)
	}
	return w
}

// TestLoginAndProxy: a browser logs in through the real OP;
// tokenrelay sets exactly the session cookie the design names, forwards
// /api/ with a Bearer JWT that verifies against the OP's JWKS, and nothing
// the browser received carries a token.
func TestLoginAndProxy(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{AccessTTL: 60 * time.Second})
	b := newBrowser(t)

	res := b.login(t, s.RelayURL, "/api/whoami", "alice")

	// The callback sets the cookie and sends the browser to return_to.
	if got, want := res.Callback.Status, http.StatusFound; got != want {
		t.Errorf("callback status = %d, want %d", got, want)
	}
	if got, want := res.Callback.Header.Get("Location"), "/api/whoami"; got != want {
		t.Errorf("callback Location = %q, want %q", got, want)
	}
	checkCookies(t, res)

	// The return_to navigation reached the API with a valid token.
	final := decodeWhoami(t, res.Final)
	if got, want := res.Final.URL.Path, "/api/whoami"; got != want {
		t.Errorf("login ended at %s, want %s", got, want)
	}
	up := s.Tap.Last(t)
	token := bearerToken(t, up.Authorization)
	claims := s.OP.VerifyAccessToken(t, token)
	if claims.Subject != "alice" || final.Sub != "alice" {
		t.Errorf("token sub = %q, API saw sub %q, want alice for both", claims.Subject, final.Sub)
	}
	if final.JTI != claims.ID {
		t.Errorf("API saw jti %q, the forwarded token has jti %q", final.JTI, claims.ID)
	}
	if got, want := claims.Scope, "api:read"; got != want {
		t.Errorf("token scope = %q, want %q", got, want)
	}
	if strings.Contains(up.Cookie, "__Host-tokenrelay") {
		t.Errorf("the upstream received the session cookie: Cookie = %q", up.Cookie)
	}

	// A client-sent Authorization header never replaces the session's token.
	forged := b.get(t, s.RelayURL+"/api/whoami", http.Header{"Authorization": {"Bearer forged-by-the-client"}})
	decodeWhoami(t, forged)
	if got := s.Tap.Last(t).Authorization; got != "Bearer "+token {
		t.Errorf("with a client Authorization header the upstream got %q, want the session's token", got)
	}

	// The session endpoint names the user and holds no token.
	sess := b.get(t, s.RelayURL+"/.auth/session", nil)
	var info struct {
		Authenticated bool           `json:"authenticated"`
		Subject       string         `json:"subject"`
		Claims        map[string]any `json:"claims"`
	}
	if err := json.Unmarshal(sess.Body, &info); sess.Status != http.StatusOK || err != nil ||
		!info.Authenticated || info.Subject != "alice" || info.Claims["email"] != "alice@example.test" {
		t.Errorf("GET /.auth/session = %d %s, want 200 authenticated as alice with email alice@example.test", sess.Status, sess.Body)
	}

	if l := leaks(b.responses(), token); len(l) != 0 {
		t.Errorf("tokens reached the browser:\n%s", strings.Join(l, "\n"))
	}

	st := s.OP.Stats(t)
	if st.CodeSuccess != 1 || st.RefreshSuccess != 0 {
		t.Errorf("OP counted %d code exchanges and %d refreshes, want 1 and 0", st.CodeSuccess, st.RefreshSuccess)
	}
}

// checkCookies asserts the cookies of a login, attribute by attribute:
// /.auth/login sets only the cookie that binds the login to this browser
// (__Host-, named after the state, Path=/, living as long as the login
// state, holding the sealed login state and nothing readable); the callback
// clears it and sets the session cookie exactly as DESIGN.md says: __Host-
// name, a 256-bit ticket, Path=/, no Domain, Max-Age of the session's
// absolute lifetime, HttpOnly, Secure, SameSite=Lax, nothing else.
func checkCookies(t *testing.T, res loginResult) {
	t.Helper()
	state := res.CallbackURL.Query().Get("state")
	bindName := "__Host-tokenrelay-login-" + state[:min(16, len(state))]
	bind := http.Cookie{Name: bindName, Path: "/", MaxAge: int(loginStateTTL / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode}
	unbind := bind
	unbind.Value, unbind.MaxAge, unbind.Expires = "", -1, time.Unix(0, 0).UTC()
	sess := http.Cookie{Name: "__Host-tokenrelay", Path: "/", MaxAge: int(sessionMaxAge / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode}
	const base64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

	tests := []struct {
		name string
		got  []string
		want []http.Cookie
	}{
		{"/.auth/login", res.Start.Header.Values("Set-Cookie"), []http.Cookie{bind}},
		{"/.auth/callback", res.Callback.Header.Values("Set-Cookie"), []http.Cookie{unbind, sess}},
	}
	for _, tt := range tests {
		if len(tt.got) != len(tt.want) {
			t.Errorf("%s: Set-Cookie = %q, want %d cookies", tt.name, tt.got, len(tt.want))
			continue
		}
		for i, raw := range tt.got {
			c, err := http.ParseSetCookie(raw)
			if err != nil {
				t.Errorf("%s: Set-Cookie %q: %v", tt.name, raw, err)
				continue
			}
			want := tt.want[i]
			switch {
			case want.Name == sess.Name:
				// 16-byte id + 16-byte key, base64url without padding.
				if len(c.Value) != 43 || strings.Trim(c.Value, base64url) != "" {
					t.Errorf("%s: session ticket has %d characters, want 43 base64url characters", tt.name, len(c.Value))
				}
				want.Value = c.Value
			case want.Name == bindName && want.MaxAge > 0:
				// The sealed state: base64url, and none of the state in clear.
				if len(c.Value) < 100 || strings.Trim(c.Value, base64url) != "" || strings.Contains(c.Value, state) {
					t.Errorf("%s: binding cookie value %q, want a sealed state (base64url, without the state in clear)", tt.name, c.Value)
				}
				want.Value = c.Value
			}
			if got, wantS := c.String(), want.String(); got != wantS || c.Domain != "" || len(c.Unparsed) != 0 {
				t.Errorf("%s: Set-Cookie[%d] =\n  %q\nwant\n  %q", tt.name, i, raw, wantS)
			}
		}
	}
}

// TestTamperedCookie: a cookie whose ticket was altered —
// its session id or its key — is no session: 401 login_required JSON, and
// the upstream is never called.
func TestTamperedCookie(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{AccessTTL: 60 * time.Second})
	b := newBrowser(t)
	res := b.login(t, s.RelayURL, "/api/whoami", "bob")
	var ticket string
	for _, raw := range res.Callback.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(raw); err == nil && c.Name == "__Host-tokenrelay" {
			ticket = c.Value
		}
	}
	if len(ticket) != 43 {
		t.Fatalf("no session ticket in the callback's Set-Cookie %q", res.Callback.Header.Values("Set-Cookie"))
	}
	flip := func(i int) string {
		r := []byte(ticket)
		if r[i] == 'A' {
			r[i] = 'B'
		} else {
			r[i] = 'A'
		}
		return string(r)
	}
	tests := []struct {
		name  string
		value string
	}{
		{"id changed", flip(3)},   // another session id: no such session
		{"key changed", flip(30)}, // right id, wrong key: the record does not open
		{"truncated", ticket[:42]},
		{"extended", ticket + "A"},
		{"not base64url", ticket[:40] + "+/="},
		{"empty", ""},
	}
	before := len(s.Tap.Requests())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, s.RelayURL+"/api/whoami", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Cookie", "__Host-tokenrelay="+tt.value)
			// A bare client: only the tampered cookie is sent.
			o, err := (&browser{client: &http.Client{Timeout: 10 * time.Second}}).do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Error   string `json:"error"`
				Message string `json:"message"`
			}
			jsonErr := json.Unmarshal(o.Body, &body)
			if o.Status != http.StatusUnauthorized || jsonErr != nil || body.Error != "login_required" || body.Message == "" {
				t.Errorf("GET /api/whoami with a %s cookie = %d %s, want 401 {\"error\":\"login_required\",\"message\":…}", tt.name, o.Status, o.Body)
			}
			if got, want := o.Header.Get("Content-Type"), "application/json"; !strings.HasPrefix(got, want) {
				t.Errorf("Content-Type = %q, want %s", got, want)
			}
		})
	}
	if got := len(s.Tap.Requests()) - before; got != 0 {
		t.Errorf("the upstream received %d requests with tampered cookies, want 0", got)
	}
	// The real cookie still works.
	decodeWhoami(t, b.get(t, s.RelayURL+"/api/whoami", nil))
}

// TestCallbackStateSingleUse: a login state is used once. Replaying the
// callback is 400 invalid_state (the login-failed page, to a browser's
// navigation) — whether or not the browser still holds
// the login's binding cookie (the sealed state then opens, and the
// server-side claim refuses it), so single use does not rest on the
// browser dropping the cookie — and so is an unknown state. None reaches
// the token endpoint, so the provider never sees the code twice.
func TestCallbackStateSingleUse(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{AccessTTL: 60 * time.Second})
	b := newBrowser(t)
	res := b.login(t, s.RelayURL, "/", "carol")
	binding, err := http.ParseSetCookie(res.Start.Header.Get("Set-Cookie"))
	if err != nil {
		t.Fatalf("login binding cookie: %v", err)
	}

	unknown := *res.CallbackURL
	q := unknown.Query()
	q.Set("state", "never-issued-"+q.Get("state"))
	unknown.RawQuery = q.Encode()

	tests := []struct {
		name     string
		url      string
		restore  bool // put the login's binding cookie back first
		wantText string
	}{
		{"replayed", res.CallbackURL.String(), false, "did not start in this browser"},
		{"replayed with the binding cookie", res.CallbackURL.String(), true, "this login was already used"},
		{"unknown state", unknown.String(), false, "did not start in this browser"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.restore {
				b.client.Jar.SetCookies(res.CallbackURL, []*http.Cookie{binding})
			}
			hops, err := b.navigate(http.MethodGet, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			page := string(hops[0].Body)
			if got, want := hops[0].Status, http.StatusBadRequest; got != want || len(hops) != 1 ||
				!strings.Contains(page, "<title>Login failed</title>") || !strings.Contains(page, tt.wantText) {
				t.Errorf("%s callback = %d %s (%d hops), want %d with the login-failed page saying %q, and no redirect",
					tt.name, got, page, len(hops), want, tt.wantText)
			}
			for _, raw := range hops[0].Header.Values("Set-Cookie") {
				if strings.HasPrefix(raw, "__Host-tokenrelay=") {
					t.Errorf("%s callback set the session cookie: %q", tt.name, raw)
				}
			}
		})
	}
	if st := s.OP.Stats(t); st.CodeSuccess+st.CodeError != 1 {
		t.Errorf("the OP's token endpoint saw %d code exchanges, want 1 (the login's own)", st.CodeSuccess+st.CodeError)
	}
	// The session the first callback created is untouched.
	decodeWhoami(t, b.get(t, s.RelayURL+"/api/whoami", nil))
}
