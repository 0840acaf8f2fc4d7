package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// Forward-auth end to end: a real nginx and a real Caddy, each run from
// its example configuration (examples/forward-auth/), in front of the real
// binary's verify endpoint, the real OpenID Provider and the demo API.
// The browser talks only to the ingress; the ingress proxies /api/ to the
// app (through the tap) with the token tokenrelay's verify answer gave it.

// faStack is a stack behind an ingress.
type faStack struct {
	*stack
	Ingress *ingress
	// Front is the ingress's URL, where the browser goes (s.RelayURL).
	Front string
	// Verify is tokenrelay's forward-auth listener (http://host:port).
	Verify string
}

// startForwardAuthStack starts the OP, the API behind the tap, tokenrelay
// with its forward-auth listener and two routes without an upstream (the
// ingress proxies them): /api/admin/, for admins only, and /api/, with the
// default identity headers; and the ingress. accessTTL is the OP's access
// token lifetime.
func startForwardAuthStack(t *testing.T, start startIngress, accessTTL time.Duration) *faStack {
	t.Helper()
	requireBinaries(t)
	front := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	verify := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := startStack(t, stackOptions{
		AccessTTL:          accessTTL,
		RefreshAhead:       time.Second,
		PublicURL:          "http://" + front,
		PostLogoutRedirect: true,
		Configure: func(s *stack, i int, yaml string) string {
			routes := strings.Index(yaml, "routes:\n")
			return yaml[:routes] + fmt.Sprintf(`forward_auth:
  listen: %q
routes:
  - { path: /api/admin/, auth: required, policy: { groups: [admins] } }
  - { path: /api/, auth: required, identity: {} }
`, verify)
		},
	})
	in := start(t, ingressAddrs{
		Front:  front,
		Relay:  s.Relays[0].listen,
		Verify: verify,
		App:    strings.TrimPrefix(s.Tap.URL, "http://"),
	})
	return &faStack{stack: s, Ingress: in, Front: in.URL, Verify: "http://" + verify}
}

func TestForwardAuthNginx(t *testing.T) {
	t.Parallel()
	testForwardAuth(t, startNginx)
}

func TestForwardAuthCaddy(t *testing.T) {
	t.Parallel()
	testForwardAuth(t, startCaddy)
}

// testForwardAuth runs one user's day through the ingress: a logged-out
// API call is 401 with the login URL and a page navigation goes to login;
// login through the ingress lands back on the page; API calls reach the
// app with a bearer token that verifies at the OP and without tokenrelay's
// cookie, and no answer the browser got holds the token; a cross-site POST
// is refused before the app; once the token has expired, 50 concurrent
// calls through the ingress cause exactly one refresh and all carry the
// one new token; logout ends the session and the next call is 401 again.
func testForwardAuth(t *testing.T, start startIngress) {
	const accessTTL = 6 * time.Second
	fa := startForwardAuthStack(t, start, accessTTL)
	front := fa.Front
	b := newBrowser(t)
	frontURL, _ := url.Parse(front)
	b.client.Jar.SetCookies(frontURL, []*http.Cookie{{Name: "theme", Value: "dark", Path: "/"}})
	const loginURL = "/.auth/login?return_to=%2Fapi%2Fwhoami"
	ready := len(fa.Tap.Requests()) // the ingress's readiness probes (/healthz)

	// Logged out: an API call gets 401 JSON with the login URL, a
	// navigation goes to login; the app sees neither.
	wantLoginRequired(t, "logged-out API call", b.get(t, front+"/api/whoami", nil), loginURL)
	hops, err := b.navigate(http.MethodGet, front+"/api/whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	if hops[0].Status != http.StatusFound || hops[0].Header.Get("Location") != loginURL {
		t.Fatalf("logged-out navigation = %d Location %q, want 302 %s", hops[0].Status, hops[0].Header.Get("Location"), loginURL)
	}
	if n := len(fa.Tap.Requests()) - ready; n != 0 {
		t.Fatalf("the app received %d requests before login, want 0", n)
	}

	// Login through the ingress, back to the page.
	res := b.login(t, front, "/api/whoami", "ben")
	if res.Final.Status != http.StatusOK || res.Final.URL.Path != "/api/whoami" {
		t.Fatalf("login ended at %d %s, want 200 /api/whoami; hops: %v", res.Final.Status, res.Final.URL, hopURLs(res.Hops))
	}

	// An API call reaches the app with the user's valid token and the
	// browser's other cookies, never tokenrelay's.
	who := decodeWhoami(t, b.get(t, front+"/api/whoami", nil))
	last := fa.Tap.Last(t)
	raw := bearerToken(t, last.Authorization)
	old := fa.OP.VerifyAccessToken(t, raw)
	if who.Sub != old.Subject || who.Sub == "" {
		t.Errorf("the app saw subject %q, the token says %q", who.Sub, old.Subject)
	}
	// (Cookies ignore ports: the OP's, on 127.0.0.1 too, come along.)
	cookies, err := http.ParseCookie(last.Cookie)
	if err != nil || !slices.ContainsFunc(cookies, func(c *http.Cookie) bool { return c.Name == "theme" && c.Value == "dark" }) ||
		slices.ContainsFunc(cookies, func(c *http.Cookie) bool { return strings.Contains(c.Name, "tokenrelay") }) {
		t.Errorf("the app received Cookie %q, want the browser's (theme=dark) without tokenrelay's", last.Cookie)
	}

	// Identity headers come from tokenrelay's answer, never the client.
	b.get(t, front+"/api/whoami", http.Header{"X-Forwarded-Email": {"admin@example.test"}, "X-Forwarded-User": {"admin"}})
	last = fa.Tap.Last(t)
	if got, want := last.Header.Get("X-Forwarded-Email"), "ben@example.test"; got != want || len(last.Header.Values("X-Forwarded-Email")) != 1 {
		t.Errorf("the app received X-Forwarded-Email %q, want only %q", last.Header.Values("X-Forwarded-Email"), want)
	}
	if got := last.Header.Get("X-Forwarded-User"); got != who.Sub {
		t.Errorf("the app received X-Forwarded-User %q, want %q", got, who.Sub)
	}

	// The admins-only route refuses ben before the app.
	before := len(fa.Tap.Requests())
	denied := b.get(t, front+"/api/admin/users", nil)
	if denied.Status != http.StatusForbidden || secErrorCode(denied) != "forbidden" {
		t.Errorf("ben's GET /api/admin/users = %d %s, want 403 forbidden", denied.Status, denied.Body)
	}
	if n := len(fa.Tap.Requests()) - before; n != 0 {
		t.Errorf("the app received %d requests the policy refused, want 0", n)
	}

	// A cross-site POST is refused before the app.
	before = len(fa.Tap.Requests())
	csrf := secPost(t, b, front+"/api/whoami", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}, "X-CSRF": {"1"}})
	if csrf.Status != http.StatusForbidden || secErrorCode(csrf) != "csrf" {
		t.Errorf("cross-site POST = %d %s, want 403 csrf", csrf.Status, csrf.Body)
	}
	if n := len(fa.Tap.Requests()) - before; n != 0 {
		t.Errorf("the app received %d cross-site requests, want 0", n)
	}

	askLikeTraefikAndEnvoy(t, fa, b, raw)

	burstAfterExpiry(t, fa, b, raw, old.ExpiresAt.Time, accessTTL)

	// Logout through the ingress ends the session: the next API call is
	// 401 and never reaches the app.
	out := secPost(t, b, front+"/.auth/logout", sameOrigin(front, true))
	if out.Status != http.StatusOK || !strings.Contains(string(out.Body), `"logout_url"`) {
		t.Fatalf("POST /.auth/logout = %d %s, want 200 with logout_url", out.Status, out.Body)
	}
	before = len(fa.Tap.Requests())
	wantLoginRequired(t, "API call after logout", b.get(t, front+"/api/whoami", nil), loginURL)
	if n := len(fa.Tap.Requests()) - before; n != 0 {
		t.Errorf("the app received %d requests after logout, want 0", n)
	}
	if st := fa.OP.Stats(t); st.Revocations != 1 {
		t.Errorf("the OP counted %d revocations at logout, want 1", st.Revocations)
	}

	if found := leaks(b.responses(), raw); len(found) > 0 {
		t.Errorf("the browser received a token:\n%s", strings.Join(found, "\n"))
	}
}

// askLikeTraefikAndEnvoy asks the real binary's verify endpoint what
// Traefik's ForwardAuth and Envoy's ext_authz ask (no binary of either
// here), with exactly the headers they send for the logged-in browser: a
// GET with Traefik's X-Forwarded-* and its authRequestHeaders, and
// Envoy's check of a POST (original method, original path after the
// prefix, its allowed_headers). Both get 200 with the session's token and
// the browser's cookies without tokenrelay's; Envoy's check of a
// cross-site POST gets 403 csrf, and Traefik's for a browser without the
// cookie, navigating, a 302 to login.
func askLikeTraefikAndEnvoy(t *testing.T, fa *faStack, b *browser, token string) {
	t.Helper()
	frontURL, _ := url.Parse(fa.Front)
	var cookies []string
	for _, c := range b.client.Jar.Cookies(frontURL) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	cookie := strings.Join(cookies, "; ")
	client := &http.Client{Timeout: 15 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	ask := func(what, method, target string, header map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		if host := header["Host"]; host != "" {
			req.Host = host
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		res.Body.Close()
		return res
	}
	granted := func(what string, res *http.Response) {
		t.Helper()
		if res.StatusCode != http.StatusOK || res.Header.Get("Authorization") != "Bearer "+token {
			t.Errorf("%s = %d with Authorization %q, want 200 with the session's token", what, res.StatusCode, res.Header.Get("Authorization"))
		}
		if c := res.Header.Get("Cookie"); strings.Contains(c, "tokenrelay") || !strings.Contains(c, "theme=dark") {
			t.Errorf("%s answered Cookie %q, want the browser's without tokenrelay's", what, c)
		}
	}
	traefik := map[string]string{
		"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "http", "X-Forwarded-Host": frontURL.Host,
		"X-Forwarded-Uri": "/api/whoami?page=2", "X-Forwarded-For": "127.0.0.1",
		"Accept": "application/json", "Cookie": cookie, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty",
	}
	granted("Traefik's check", ask("Traefik's check", http.MethodGet, fa.Verify+"/.auth/verify", traefik))
	envoy := map[string]string{
		"Host": frontURL.Host, "Content-Length": "0", "Cookie": cookie, "Accept": "application/json",
		"Origin": fa.Front, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "X-Csrf": "1",
		"X-Forwarded-Proto": "http", "X-Request-Id": "envoy-check-1", "X-Envoy-Expected-Rq-Timeout-Ms": "15000",
	}
	granted("Envoy's check of a POST", ask("Envoy's check", http.MethodPost, fa.Verify+"/.auth/verify/api/whoami?page=2", envoy))
	envoy["Sec-Fetch-Site"], envoy["Origin"] = "cross-site", "https://evil.example"
	if res := ask("Envoy's cross-site check", http.MethodPost, fa.Verify+"/.auth/verify/api/whoami", envoy); res.StatusCode != http.StatusForbidden || res.Header.Get("X-Tokenrelay-Error") != "csrf" || res.Header.Get("Authorization") != "" {
		t.Errorf("Envoy's check of a cross-site POST = %d %q, want 403 csrf without a token", res.StatusCode, res.Header.Get("X-Tokenrelay-Error"))
	}
	delete(traefik, "Cookie")
	traefik["Accept"], traefik["Sec-Fetch-Mode"], traefik["Sec-Fetch-Dest"] = "text/html", "navigate", "document"
	if res := ask("Traefik's logged-out check", http.MethodGet, fa.Verify+"/.auth/verify", traefik); res.StatusCode != http.StatusFound ||
		res.Header.Get("Location") != "/.auth/login?return_to=%2Fapi%2Fwhoami%3Fpage%3D2" {
		t.Errorf("Traefik's check of a logged-out navigation = %d Location %q, want 302 to login", res.StatusCode, res.Header.Get("Location"))
	}
	// The public listener never answers verify, whatever it is asked.
	if res := ask("the public listener", http.MethodGet, "http://"+fa.Relays[0].listen+"/.auth/verify", traefik); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /.auth/verify on the public listener = %d, want 404", res.StatusCode)
	}
}

// burstAfterExpiry waits for the access token to expire, sends 50
// concurrent API calls through the ingress, and checks that the OP saw
// exactly one refresh and every call reached the app with the one new
// token.
func burstAfterExpiry(t *testing.T, fa *faStack, b *browser, oldRaw string, exp time.Time, ttl time.Duration) {
	t.Helper()
	const n = 50
	waitUntil(t, exp.Add(100*time.Millisecond), ttl+5*time.Second)
	before := fa.OP.Stats(t)
	firstBurst := len(fa.Tap.Requests())
	statuses, errs, elapsed := b.burst(fa.Front+"/api/whoami", n, http.Header{
		"Accept":         {"application/json"},
		"Sec-Fetch-Mode": {"cors"},
		"Sec-Fetch-Site": {"same-origin"},
	})
	for i := range n {
		if errs[i] != nil || statuses[i] != http.StatusOK {
			t.Errorf("call %d after expiry: status %d, error %v; want 200", i, statuses[i], errs[i])
		}
	}
	after := fa.OP.Stats(t)
	if got := after.RefreshSuccess - before.RefreshSuccess; got != 1 {
		hint := ""
		if elapsed > ttl-time.Second {
			hint = fmt.Sprintf(" (the burst took %s, longer than a token stays fresh: inconclusive)", elapsed)
		}
		t.Errorf("the OP counted %d refreshes for %d concurrent calls through %s, want 1%s", got, n, fa.Ingress.Name, hint)
	}
	burst := fa.Tap.Requests()[firstBurst:]
	if len(burst) != n {
		t.Fatalf("the app received %d of the %d calls", len(burst), n)
	}
	tokens := map[string]int{}
	for _, r := range burst {
		tokens[r.Authorization]++
	}
	if len(tokens) != 1 {
		t.Errorf("the %d calls carried %d different tokens, want 1", n, len(tokens))
	}
	for authz := range tokens {
		if raw := bearerToken(t, authz); raw == oldRaw {
			t.Error("the calls after expiry carried the expired token")
		} else {
			fa.OP.VerifyAccessToken(t, raw)
		}
	}
	checkUpstreamNeverRejected(t, fa.stack)
	t.Logf("%s: %d concurrent calls after expiry, 1 refresh, %s", fa.Ingress.Name, n, elapsed)
}

// wantLoginRequired checks a 401 answer through the ingress: JSON
// {"error":"login_required", "login_url": loginURL}.
func wantLoginRequired(t *testing.T, what string, o observed, loginURL string) {
	t.Helper()
	var body struct {
		Error    string `json:"error"`
		LoginURL string `json:"login_url"`
	}
	if err := json.Unmarshal(o.Body, &body); err != nil || o.Status != http.StatusUnauthorized || body.Error != "login_required" || body.LoginURL != loginURL {
		t.Errorf("%s = %d %s, want 401 login_required with login_url %s", what, o.Status, o.Body, loginURL)
	}
}
