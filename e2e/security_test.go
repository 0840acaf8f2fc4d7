package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/redistest"
)

// Logout, revocation, back-channel logout, CSRF, open redirects, idle
// timeout and log hygiene, against the real binary and the real OP. Helpers
// are prefixed sec.

const secCookieName = "__Host-tokenrelay"

// secIssued is the OP's GET /__tokens answer for one account.
type secIssued struct {
	RefreshTokens []string `json:"refresh_tokens"`
	Codes         []string `json:"codes"`
	SIDs          []string `json:"sids"`
}

func secTokens(t *testing.T, o *op, account string) secIssued {
	t.Helper()
	resp, err := o.client.Get(o.Issuer + "/__tokens?account=" + url.QueryEscape(account))
	if err != nil {
		t.Fatalf("op tokens: %v", err)
	}
	defer resp.Body.Close()
	var v secIssued
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("op tokens: status %d, %v", resp.StatusCode, err)
	}
	return v
}

// secIntrospect asks the OP's introspection endpoint, with the client's
// credentials, whether token is active.
func secIntrospect(t *testing.T, o *op, token string) bool {
	t.Helper()
	form := url.Values{"token": {token}, "token_type_hint": {"refresh_token"}}
	req, err := http.NewRequest(http.MethodPost, o.Issuer+"/token/introspection", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(opClientID), url.QueryEscape(opClientSecret))
	resp, err := o.client.Do(req)
	if err != nil {
		t.Fatalf("introspection: %v", err)
	}
	defer resp.Body.Close()
	var v struct {
		Active *bool `json:"active"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK || v.Active == nil {
		t.Fatalf("introspection: status %d, active %v, err %v", resp.StatusCode, v.Active, err)
	}
	return *v.Active
}

// secPost sends a fetch()-style POST with the browser's cookies and the
// given headers (no defaults: each test states its origin headers).
func secPost(t *testing.T, b *browser, target string, header http.Header) observed {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	o, err := b.do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", target, err)
	}
	return o
}

// secErrorCode returns the "error" member of a JSON error answer.
func secErrorCode(o observed) string {
	var body struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(o.Body, &body)
	return body.Error
}

// secWantLoginRequired asserts o is 401 {"error":"login_required"}.
func secWantLoginRequired(t *testing.T, what string, o observed) {
	t.Helper()
	if o.Status != http.StatusUnauthorized || secErrorCode(o) != "login_required" {
		t.Errorf("%s = %d %s, want 401 login_required", what, o.Status, o.Body)
	}
}

// secTicket is the session cookie value the callback set.
func secTicket(t *testing.T, res loginResult) string {
	t.Helper()
	for _, raw := range res.Callback.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(raw); err == nil && c.Name == secCookieName && c.Value != "" {
			return c.Value
		}
	}
	t.Fatalf("no session cookie in the callback's Set-Cookie %q", res.Callback.Header.Values("Set-Cookie"))
	return ""
}

// sameOrigin are the headers a browser's same-origin fetch() sends.
func sameOrigin(origin string, csrf bool) http.Header {
	h := http.Header{"Origin": {origin}, "Sec-Fetch-Site": {"same-origin"}, "Sec-Fetch-Mode": {"cors"}}
	if csrf {
		h.Set("X-CSRF", "1")
	}
	return h
}

// TestSecurityLogout: a full login → API calls
// → refresh → logout run. Logout answers the OP's end-session URL with
// client_id, post_logout_redirect_uri and state, and without the ID token;
// the refresh token is
// inactive at the OP's introspection endpoint afterwards; the old cookie
// gets 401. No line tokenrelay logged at debug level holds a token, the
// cookie, the code or the state, and every /.auth/* answer is no-store.
func TestSecurityLogout(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{AccessTTL: 3 * time.Second, RefreshAhead: time.Second, PostLogoutRedirect: true})
	relay := s.RelayURL
	b := newBrowser(t)
	res := b.login(t, relay, "/api/whoami", "erin")
	ticket := secTicket(t, res)
	first := decodeWhoami(t, res.Final)

	// Refresh: wait past the access token's expiry, then call again.
	waitUntil(t, time.Unix(first.Exp, 0).Add(100*time.Millisecond), 10*time.Second)
	second := decodeWhoami(t, b.get(t, relay+"/api/whoami", nil))
	if second.JTI == first.JTI {
		t.Fatalf("after expiry the API saw the same token (jti %s): no refresh happened", first.JTI)
	}
	if st := s.OP.Stats(t); st.RefreshSuccess != 1 {
		t.Fatalf("OP counted %d refreshes, want 1", st.RefreshSuccess)
	}
	issued := secTokens(t, s.OP, "erin")
	if len(issued.RefreshTokens) != 2 || len(issued.Codes) != 1 {
		t.Fatalf("OP issued %d refresh tokens and %d codes to erin, want 2 and 1", len(issued.RefreshTokens), len(issued.Codes))
	}
	live := issued.RefreshTokens[len(issued.RefreshTokens)-1]
	if !secIntrospect(t, s.OP, live) {
		t.Fatal("the session's current refresh token is inactive before logout")
	}

	// A logout without the CSRF header is refused and changes nothing.
	noHeader := secPost(t, b, relay+"/.auth/logout", sameOrigin(relay, false))
	if noHeader.Status != http.StatusForbidden || secErrorCode(noHeader) != "csrf" {
		t.Errorf("logout without X-CSRF = %d %s, want 403 csrf", noHeader.Status, noHeader.Body)
	}

	out := secPost(t, b, relay+"/.auth/logout", sameOrigin(relay, true))
	var ans struct {
		LogoutURL string `json:"logout_url"`
	}
	if err := json.Unmarshal(out.Body, &ans); out.Status != http.StatusOK || err != nil {
		t.Fatalf("POST /.auth/logout = %d %s, want 200 {\"logout_url\":…}", out.Status, out.Body)
	}
	lu, err := url.Parse(ans.LogoutURL)
	if err != nil {
		t.Fatalf("logout_url %q: %v", ans.LogoutURL, err)
	}
	q := lu.Query()
	if got, want := lu.Scheme+"://"+lu.Host+lu.Path, s.OP.Issuer+"/session/end"; got != want {
		t.Errorf("logout_url points at %s, want the OP's end_session_endpoint %s", got, want)
	}
	if got, want := q.Get("post_logout_redirect_uri"), relay+"/"; got != want {
		t.Errorf("post_logout_redirect_uri = %q, want %q", got, want)
	}
	if q.Get("state") == "" || q.Get("client_id") != opClientID {
		t.Errorf("logout_url state = %q, client_id = %q: want a state and the client id %q", q.Get("state"), q.Get("client_id"), opClientID)
	}
	if q.Has("id_token_hint") || jwtRE.Match(out.Body) {
		t.Errorf("the logout answer carries the ID token: %s", out.Body)
	}
	var cleared bool
	for _, raw := range out.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(raw); err == nil && c.Name == secCookieName && c.MaxAge < 0 && c.Value == "" {
			cleared = true
		}
	}
	if !cleared {
		t.Errorf("logout Set-Cookie = %q, want %s expired", out.Header.Values("Set-Cookie"), secCookieName)
	}
	if st := s.OP.Stats(t); st.Revocations != 1 {
		t.Errorf("OP counted %d revocations, want 1", st.Revocations)
	}
	for i, rt := range issued.RefreshTokens {
		if secIntrospect(t, s.OP, rt) {
			t.Errorf("refresh token %d is still active at the OP after logout", i)
		}
	}

	// The old cookie, replayed by a client that kept it, is no session.
	replay := &browser{client: &http.Client{Timeout: 10 * time.Second}}
	req, _ := http.NewRequest(http.MethodGet, relay+"/api/whoami", nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", secCookieName+"="+ticket)
	o, err := replay.do(req)
	if err != nil {
		t.Fatal(err)
	}
	secWantLoginRequired(t, "GET /api/whoami with the logged-out cookie", o)
	secWantLoginRequired(t, "GET /api/whoami after logout", b.get(t, relay+"/api/whoami", nil))

	// Every /.auth/* answer the browser received was no-store.
	var authAnswers int
	for _, r := range append(b.responses(), o) {
		if r.URL.Host != strings.TrimPrefix(relay, "http://") || !strings.HasPrefix(r.URL.Path, "/.auth/") {
			continue
		}
		authAnswers++
		if got := r.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s %s (%d): Cache-Control = %q, want no-store", r.Method, r.URL.Path, r.Status, got)
		}
	}
	if authAnswers < 4 { // login, callback, two logouts
		t.Errorf("checked %d /.auth/ answers, want at least 4", authAnswers)
	}

	// The log holds none of the run's secrets.
	var secrets []string
	for _, r := range s.Tap.Requests() {
		if tok, ok := strings.CutPrefix(r.Authorization, "Bearer "); ok {
			secrets = append(secrets, tok)
		}
	}
	if len(secrets) < 2 {
		t.Fatalf("the API received %d tokens, want at least 2 (before and after the refresh)", len(secrets))
	}
	secrets = append(secrets, issued.RefreshTokens...)
	secrets = append(secrets, issued.Codes...)
	// The ID token never left tokenrelay; jwtRE below catches it in a log.
	secrets = append(secrets, ticket, res.CallbackURL.Query().Get("code"), res.CallbackURL.Query().Get("state"))
	// The ticket's key half alone too (characters 22+ hold only key bits):
	// with it, the sealed record opens.
	// The session id half (characters 0-20 hold only id bits) must not be
	// logged either: logs name a session by a hash of its id.
	secrets = append(secrets, ticket[22:], ticket[:21])
	logText, _ := s.Relay.log.snapshot()
	if n := strings.Count(logText, "\n"); n < 10 {
		t.Fatalf("tokenrelay logged %d lines, want a debug-level run (at least 10)", n)
	}
	for i, line := range strings.Split(logText, "\n") {
		for j, sec := range secrets {
			if sec == "" {
				t.Fatalf("secret %d is empty", j)
			}
			if strings.Contains(line, sec) {
				t.Errorf("log line %d holds secret %d: %.80s…", i+1, j, line)
			}
		}
		if jwtRE.MatchString(line) {
			t.Errorf("log line %d holds a JWT", i+1)
		}
	}
}

// crossReplicaBound is how soon a session that ends on one replica stops
// being served by every other (issue 13). The Redis store's local cache
// keeps each replica's copy current within that bound; checks made right
// after a logout wait it out first.
const crossReplicaBound = 100 * time.Millisecond

// TestSecurityBackchannelReplicas: two tokenrelay
// replicas share a Redis. The OP sends its back-channel logout token for
// one user's sid to replica 0; that session ends on both replicas, and an
// unrelated user's session survives on both.
func TestSecurityBackchannelReplicas(t *testing.T) {
	t.Parallel()
	requireBinaries(t)
	rdb := redistest.Start(t, redistest.Options{})
	s := startStack(t, stackOptions{AccessTTL: 60 * time.Second, Replicas: 2, RedisAddr: rdb.Addr, PostLogoutRedirect: true})

	// One browser per user; a jar's cookies are per host, not per port, so
	// each browser's cookie reaches both replicas.
	alice, bob := newBrowser(t), newBrowser(t)
	alice.login(t, s.RelayURL, "/", "alice")
	bob.login(t, s.RelayURL, "/", "bob")
	for i, u := range s.relayURLs() {
		for _, c := range []struct {
			name string
			b    *browser
		}{{"alice", alice}, {"bob", bob}} {
			if w := decodeWhoami(t, c.b.get(t, u+"/api/whoami", nil)); w.Sub != c.name {
				t.Fatalf("replica %d: %s's session is %q", i, c.name, w.Sub)
			}
		}
	}
	sids := secTokens(t, s.OP, "alice").SIDs
	if len(sids) != 1 {
		t.Fatalf("OP holds %d sids for alice, want 1", len(sids))
	}
	if bobSIDs := secTokens(t, s.OP, "bob").SIDs; len(bobSIDs) != 1 || bobSIDs[0] == sids[0] {
		t.Fatalf("bob's sids %q, want one other than alice's %q", bobSIDs, sids[0])
	}

	before := s.OP.Stats(t)
	s.OP.BackchannelLogout(t, "alice", sids[0])
	if got := s.OP.Stats(t).BackchannelSuccess - before.BackchannelSuccess; got != 1 {
		t.Errorf("OP counted %d successful back-channel logouts, want 1", got)
	}

	waitUntil(t, time.Now().Add(crossReplicaBound), time.Second)
	upstreamBefore := len(s.Tap.Requests())
	for i, u := range s.relayURLs() {
		secWantLoginRequired(t, fmt.Sprintf("replica %d: alice's GET /api/whoami after back-channel logout", i), alice.get(t, u+"/api/whoami", nil))
	}
	if got := len(s.Tap.Requests()) - upstreamBefore; got != 0 {
		t.Errorf("the upstream received %d of alice's requests after her back-channel logout, want 0", got)
	}
	for i, u := range s.relayURLs() {
		if w := decodeWhoami(t, bob.get(t, u+"/api/whoami", nil)); w.Sub != "bob" {
			t.Errorf("replica %d: bob's session answers sub %q, want bob", i, w.Sub)
		}
	}

	// A replayed or forged logout token is refused with 400.
	for _, tt := range []struct {
		name, body string
	}{
		{"no token", ""},
		{"not a JWT", "logout_token=not-a-jwt"},
	} {
		req, _ := http.NewRequest(http.MethodPost, s.Relays[1].URL+"/.auth/backchannel-logout", strings.NewReader(tt.body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		o, err := (&browser{client: &http.Client{Timeout: 10 * time.Second}}).do(req)
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != http.StatusBadRequest || secErrorCode(o) != "invalid_request" || o.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("back-channel logout with %s = %d %s (Cache-Control %q), want 400 invalid_request no-store",
				tt.name, o.Status, o.Body, o.Header.Get("Cache-Control"))
		}
	}
}

// TestSecurityLogoutReplicas: two replicas share a Redis and have each
// served two sessions (so each keeps the records it opened, see
// session.openedRecords, and replica 1 answers from the Redis store's local
// cache). A logout through replica 0 while the session's token is still
// fresh makes replica 1's requests with the same cookie 401 login_required
// within crossReplicaBound (100 ms), never reaching the upstream. After
// expiry, the token replica 0 refreshes is the one replica 1 forwards next,
// and a logout then stops replica 1 as well.
func TestSecurityLogoutReplicas(t *testing.T) {
	t.Parallel()
	requireBinaries(t)
	rdb := redistest.Start(t, redistest.Options{})
	s := startStack(t, stackOptions{AccessTTL: 5 * time.Second, Replicas: 2, RedisAddr: rdb.Addr, PostLogoutRedirect: true})
	urls := s.relayURLs()
	// A client that keeps the cookie after logout, as a stolen copy would.
	keeper := &browser{client: &http.Client{Timeout: 10 * time.Second}}
	type loggedIn struct {
		b      *browser
		ticket string
		first  whoamiAnswer
	}
	login := func(user string) loggedIn {
		b := newBrowser(t)
		res := b.login(t, urls[0], "/api/whoami", user)
		return loggedIn{b: b, ticket: secTicket(t, res), first: decodeWhoami(t, res.Final)}
	}
	whoami := func(u string, l loggedIn) observed {
		req, _ := http.NewRequest(http.MethodGet, u+"/api/whoami", nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", secCookieName+"="+l.ticket)
		o, err := keeper.do(req)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	logoutStops := func(what string, l loggedIn) {
		t.Helper()
		if out := secPost(t, l.b, urls[0]+"/.auth/logout", sameOrigin(urls[0], true)); out.Status != http.StatusOK {
			t.Fatalf("POST /.auth/logout on replica 0 = %d %s, want 200", out.Status, out.Body)
		}
		waitUntil(t, time.Now().Add(crossReplicaBound), time.Second)
		upstreamBefore := len(s.Tap.Requests())
		secWantLoginRequired(t, "replica 1's next request after a logout on replica 0 "+what, whoami(urls[1], l))
		secWantLoginRequired(t, "replica 0's next request after its logout "+what, whoami(urls[0], l))
		if got := len(s.Tap.Requests()) - upstreamBefore; got != 0 {
			t.Errorf("the upstream received %d requests of the session logged out %s, want 0", got, what)
		}
	}
	early, late := login("frank"), login("erin")
	hits := func() float64 {
		return redisMetrics(t, s.Relays[1].AdminURL, "tokenrelay_store_cache_reads_total")[`tokenrelay_store_cache_reads_total{result="hit"}`]
	}
	for _, l := range []loggedIn{early, late} {
		for i, u := range urls {
			for range 2 {
				if w := decodeWhoami(t, whoami(u, l)); w.JTI != l.first.JTI {
					t.Fatalf("replica %d forwarded jti %s, want the login's %s", i, w.JTI, l.first.JTI)
				}
			}
		}
	}
	// Replica 1 serves the session from its local cache: what the logout
	// must reach.
	if !eventually(10*time.Second, 20*time.Millisecond, func() bool {
		before := hits()
		decodeWhoami(t, whoami(urls[1], early))
		return hits() > before
	}) {
		t.Fatal("replica 1 never answered from its local cache")
	}
	logoutStops("with its token fresh", early)

	waitUntil(t, time.Unix(late.first.Exp, 0).Add(100*time.Millisecond), 15*time.Second)
	second := decodeWhoami(t, whoami(urls[0], late))
	if second.JTI == late.first.JTI {
		t.Fatalf("after expiry replica 0 forwarded the same token (jti %s): no refresh happened", late.first.JTI)
	}
	for range 2 {
		if w := decodeWhoami(t, whoami(urls[1], late)); w.JTI != second.JTI {
			t.Errorf("after replica 0's refresh, replica 1 forwarded jti %s, want the refreshed %s", w.JTI, second.JTI)
		}
	}
	if st := s.OP.Stats(t); st.RefreshSuccess != 1 {
		t.Errorf("OP counted %d refreshes, want 1", st.RefreshSuccess)
	}
	logoutStops("after a refresh", late)
}

// TestSecurityCSRF: unsafe requests carrying the session
// cookie pass only from the same origin and with X-CSRF; everything else is
// 403 {"error":"csrf"}, never reaches the upstream, and leaves the session
// working.
func TestSecurityCSRF(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{AccessTTL: 60 * time.Second, PostLogoutRedirect: true})
	relay := s.RelayURL
	b := newBrowser(t)
	b.login(t, relay, "/", "frank")

	crossSite := http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}, "Sec-Fetch-Mode": {"cors"}, "X-CSRF": {"1"}}
	oldBrowser := http.Header{"Origin": {"https://evil.example"}, "X-CSRF": {"1"}} // no Sec-Fetch-Site
	sameSite := http.Header{"Origin": {"http://sub.127.0.0.1.example"}, "Sec-Fetch-Site": {"same-site"}, "X-CSRF": {"1"}}
	tests := []struct {
		name     string
		path     string
		header   http.Header
		wantCSRF bool // else: the upstream receives the request with the token
	}{
		{"cross-site POST to an API route", "/api/whoami", crossSite, true},
		{"cross-site POST to logout", "/.auth/logout", crossSite, true},
		{"foreign Origin without Sec-Fetch-Site to an API route", "/api/whoami", oldBrowser, true},
		{"foreign Origin without Sec-Fetch-Site to logout", "/.auth/logout", oldBrowser, true},
		{"same-site (not same-origin) POST", "/api/whoami", sameSite, true},
		{"same-origin POST without X-CSRF to an API route", "/api/whoami", sameOrigin(relay, false), true},
		{"same-origin POST without X-CSRF to logout", "/.auth/logout", sameOrigin(relay, false), true},
		{"same-origin POST with X-CSRF to an API route", "/api/whoami", sameOrigin(relay, true), false},
	}
	for _, tt := range tests {
		upBefore := len(s.Tap.Requests())
		o := secPost(t, b, relay+tt.path, tt.header)
		upstream := s.Tap.Requests()[upBefore:]
		if tt.wantCSRF {
			if o.Status != http.StatusForbidden || secErrorCode(o) != "csrf" {
				t.Errorf("%s = %d %s, want 403 {\"error\":\"csrf\"}", tt.name, o.Status, o.Body)
			}
			if len(upstream) != 0 {
				t.Errorf("%s: the upstream received %d requests, want 0", tt.name, len(upstream))
			}
		} else {
			// The demo API has no POST handler (404): what matters is that
			// the request passed tokenrelay with the session's token.
			if len(upstream) != 1 || !strings.HasPrefix(upstream[0].Authorization, "Bearer ") || o.Status != http.StatusNotFound {
				t.Errorf("%s = %d %s, upstream got %d requests; want it forwarded once with a Bearer token", tt.name, o.Status, o.Body, len(upstream))
			}
		}
		// The session survives every refused attempt.
		if w := decodeWhoami(t, b.get(t, relay+"/api/whoami", nil)); w.Sub != "frank" {
			t.Fatalf("after %s the session answers sub %q, want frank", tt.name, w.Sub)
		}
	}
}

// TestSecurityOpenRedirect: a return_to that could leave
// the site lands on "/" after a complete login; a local path is kept.
func TestSecurityOpenRedirect(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{AccessTTL: 60 * time.Second, PostLogoutRedirect: true})
	tests := []struct {
		returnTo string
		want     string
	}{
		{"//evil.com", "/"},
		{"//evil.com/path", "/"},
		{`/\evil.com`, "/"},
		{`\\evil.com`, "/"},
		{"https://evil.com/", "/"},
		{"http:evil.com", "/"},
		{"/%2F%2Fevil.com", "/"},
		{"/%5Cevil.com", "/"},
		{"/%09/evil.com", "/"},
		{" //evil.com", "/"},
		{"javascript:alert(1)", "/"},
		{"/api/whoami?x=1#top", "/api/whoami?x=1#top"},
	}
	b := newBrowser(t)
	for _, tt := range tests {
		res := b.login(t, s.RelayURL, tt.returnTo, "grace")
		if got := res.Callback.Header.Get("Location"); res.Callback.Status != http.StatusFound || got != tt.want {
			t.Errorf("return_to %q: callback = %d Location %q, want 302 to %q", tt.returnTo, res.Callback.Status, got, tt.want)
		}
		if res.Final.URL.Host != strings.TrimPrefix(s.RelayURL, "http://") {
			t.Errorf("return_to %q: the login ended at %s, off-site", tt.returnTo, res.Final.URL)
		}
	}
}

// TestSecurityIdleTimeout: with session.idle_timeout 3s,
// a session used every half second outlives the timeout (the idle timeout
// slides) and a session left alone ends.
func TestSecurityIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 3 * time.Second
	s := startStack(t, stackOptions{AccessTTL: 60 * time.Second, IdleTimeout: idle, PostLogoutRedirect: true})
	relay := s.RelayURL
	active, idler := newBrowser(t), newBrowser(t)
	idler.login(t, relay, "/", "heidi")
	idleSince := time.Now()
	active.login(t, relay, "/", "ivan")

	end := idleSince.Add(idle + 1500*time.Millisecond)
	for next := time.Now(); next.Before(end); next = next.Add(500 * time.Millisecond) {
		waitUntil(t, next, time.Second)
		if w := decodeWhoami(t, active.get(t, relay+"/api/whoami", nil)); w.Sub != "ivan" {
			t.Fatalf("active session answers sub %q, want ivan", w.Sub)
		}
	}
	waitUntil(t, end, idle+2*time.Second)
	secWantLoginRequired(t, "GET /api/whoami of the session idle for longer than idle_timeout", idler.get(t, relay+"/api/whoami", nil))
	if w := decodeWhoami(t, active.get(t, relay+"/api/whoami", nil)); w.Sub != "ivan" {
		t.Errorf("active session after %s answers sub %q, want ivan", time.Since(idleSince), w.Sub)
	}
}
