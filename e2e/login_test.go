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

// TestLoginAndProxy (issue 2, test 1): a browser logs in through the real OP;
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
	checkSessionCookie(t, res.Callback.Header.Values("Set-Cookie"))

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
	if sess.Status != http.StatusOK || !strings.Contains(string(sess.Body), `"alice"`) {
		t.Errorf("GET /.auth/session = %d %s, want 200 naming alice", sess.Status, sess.Body)
	}

	if l := leaks(b.responses(), token); len(l) != 0 {
		t.Errorf("tokens reached the browser:\n%s", strings.Join(l, "\n"))
	}

	st := s.OP.Stats(t)
	if st.CodeSuccess != 1 || st.RefreshSuccess != 0 {
		t.Errorf("OP counted %d code exchanges and %d refreshes, want 1 and 0", st.CodeSuccess, st.RefreshSuccess)
	}
}

// checkSessionCookie asserts the callback set exactly one cookie, with
// exactly the attributes of DESIGN.md: __Host- name, a 256-bit ticket,
// Path=/, no Domain, Max-Age of the session's absolute lifetime, HttpOnly,
// Secure, SameSite=Lax, nothing else.
func checkSessionCookie(t *testing.T, setCookies []string) {
	t.Helper()
	if len(setCookies) != 1 {
		t.Fatalf("callback Set-Cookie headers = %q, want exactly one", setCookies)
	}
	c, err := http.ParseSetCookie(setCookies[0])
	if err != nil {
		t.Fatalf("Set-Cookie %q: %v", setCookies[0], err)
	}
	got := *c
	got.Value, got.Raw = "", ""
	want := http.Cookie{
		Name:     "__Host-tokenrelay",
		Path:     "/",
		MaxAge:   int(sessionMaxAge / time.Second),
		HttpOnly: true,
		Secure:   true,
		SameSite: http.SameSiteLaxMode,
	}
	if got.String() != want.String() || got.Domain != "" || !got.Expires.IsZero() || len(got.Unparsed) != 0 {
		t.Errorf("session cookie = %q\nwant attributes %q", setCookies[0], want.String())
	}
	// 16-byte id + 16-byte key, base64url without padding.
	if n := len(c.Value); n != 43 || strings.Trim(c.Value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Errorf("session cookie value has %d characters outside or inside base64url, want 43 base64url characters", n)
	}
}

// TestTamperedCookie (issue 2, test 5): a cookie whose ticket was altered —
// its session id or its key — is no session: 401 login_required JSON, and
// the upstream is never called.
func TestTamperedCookie(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{AccessTTL: 60 * time.Second})
	b := newBrowser(t)
	res := b.login(t, s.RelayURL, "/api/whoami", "bob")
	c, err := http.ParseSetCookie(res.Callback.Header.Get("Set-Cookie"))
	if err != nil {
		t.Fatal(err)
	}
	ticket := c.Value
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

// TestCallbackStateSingleUse (issue 2, test 5): a login state is used once;
// replaying the callback, or one with an unknown state, is 400 and never
// reaches the token endpoint.
func TestCallbackStateSingleUse(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{AccessTTL: 60 * time.Second})
	b := newBrowser(t)
	res := b.login(t, s.RelayURL, "/", "carol")

	unknown := *res.CallbackURL
	q := unknown.Query()
	q.Set("state", "never-issued-"+q.Get("state"))
	unknown.RawQuery = q.Encode()

	tests := []struct {
		name string
		url  string
	}{
		{"replayed", res.CallbackURL.String()},
		{"unknown state", unknown.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hops, err := b.navigate(http.MethodGet, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := hops[0].Status, http.StatusBadRequest; got != want || len(hops) != 1 {
				t.Errorf("%s callback = %d (%d hops), want %d and no redirect", tt.name, got, len(hops), want)
			}
			if got := hops[0].Header.Values("Set-Cookie"); len(got) != 0 {
				t.Errorf("%s callback set cookies %q, want none", tt.name, got)
			}
		})
	}
	if st := s.OP.Stats(t); st.CodeSuccess+st.CodeError != 1 {
		got := st.CodeSuccess + st.CodeError
		t.Errorf("the OP's token endpoint saw %d code exchanges, want 1 (the login's own)", got)
	}
	// The session the first callback created is untouched.
	decodeWhoami(t, b.get(t, s.RelayURL+"/api/whoami", nil))
}
