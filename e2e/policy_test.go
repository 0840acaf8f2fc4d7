package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// The OP's test accounts (examples/demo/op/op.js, accounts): emails,
// groups, department, and whether they can give the MFA acr.
//
//	ada  ada@example.test      verified    [staff, admins]  eng    mfa
//	ben  ben@example.test      verified    [staff]          sales
//	cyd  cyd@partner.example   verified    "contractors"
//	eve  admin@example.test    unverified  [admins]
const (
	acrPassword = "urn:tokenrelay:loa:1"
	acrMFA      = "urn:tokenrelay:loa:2"
)

// policyRoutes is the configuration's policy section and routes: a default
// policy, a route per allow-list kind, a CEL rule, a step-up, identity with
// the assertion, and a plain route, all to rec; then the stack's own /api/
// and / routes.
func policyRoutes(rec string) string {
	return fmt.Sprintf(`policy:
  email_domains: [example.test, partner.example]
routes:
  - { path: /p/emails/, upstream: %[1]q, policy: { emails: [ADA@example.test] } }
  - { path: /p/domains/, upstream: %[1]q, policy: { mode: replace, email_domains: [partner.example] } }
  - { path: /p/groups/, upstream: %[1]q, policy: { groups: [admins] } }
  - { path: /p/string-groups/, upstream: %[1]q, policy: { groups: [contractors] } }
  - { path: /p/subjects/, upstream: %[1]q, policy: { subjects: [ben] } }
  - { path: /p/claims/, upstream: %[1]q, policy: { claims: { department: [eng] } } }
  - path: /p/cel/
    upstream: %[1]q
    policy: { expression: 'request.method == "GET" || "admins" in claims.groups' }
  - { path: /p/stepup/, upstream: %[1]q, policy: { step_up: { acr_values: [%[2]q] } } }
  - { path: /p/who/, upstream: %[1]q, policy: { mode: replace }, identity: { assertion: true } }
  - { path: /p/plain/, upstream: %[1]q, policy: { mode: replace } }
`, rec, acrMFA)
}

// withPolicyRoutes is a stackOptions.Configure that puts policyRoutes
// before the stack's routes.
func withPolicyRoutes(rec string) func(*stack, int, string) string {
	return func(_ *stack, _ int, yaml string) string {
		return strings.Replace(yaml, "routes:\n", policyRoutes(rec), 1)
	}
}

// recorder is an upstream that answers 200 {"ok":true} and records what
// arrived.
type recorder struct {
	URL  string
	mu   sync.Mutex
	seen []recorded // guarded by mu
}

type recorded struct {
	Method, Path, User string
	Header             http.Header
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.seen = append(rec.seen, recorded{r.Method, r.URL.Path, r.URL.Query().Get("u"), r.Header.Clone()})
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	rec.URL = srv.URL
	return rec
}

// count is how many requests of user for path arrived.
func (rec *recorder) count(method, path, user string) int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	n := 0
	for _, s := range rec.seen {
		if s.Method == method && s.Path == path && s.User == user {
			n++
		}
	}
	return n
}

// last is the last request that arrived for path.
func (rec *recorder) last(t *testing.T, path string) recorded {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i := len(rec.seen) - 1; i >= 0; i-- {
		if rec.seen[i].Path == path {
			return rec.seen[i]
		}
	}
	t.Fatalf("no request for %s reached the upstream", path)
	return recorded{}
}

// call sends a fetch()-style request (same-origin, with the CSRF header)
// with extra headers.
func (b *browser) call(t *testing.T, method, target string, header http.Header) observed {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("X-CSRF", "1")
	for k, v := range header {
		req.Header[k] = v
	}
	o, err := b.do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return o
}

// TestPolicyAgainstTheOP runs the policies against the real OpenID
// Provider's users: the table of user × route → status for each kind of
// allow-list, the default policy, a route replacing it and a CEL rule (by
// method); a refused request never reaches the upstream; /.auth/session
// previews the routes.
func TestPolicyAgainstTheOP(t *testing.T) {
	t.Parallel()
	rec := newRecorder(t)
	s := startStack(t, stackOptions{Configure: withPolicyRoutes(rec.URL)})
	type call struct{ method, path string }
	calls := []call{
		{"GET", "/p/emails/"}, {"GET", "/p/domains/"}, {"GET", "/p/groups/"}, {"GET", "/p/string-groups/"},
		{"GET", "/p/subjects/"}, {"GET", "/p/claims/"}, {"GET", "/p/cel/"}, {"POST", "/p/cel/"}, {"GET", "/p/plain/"},
	}
	want := map[string][]int{
		//     emails domains groups string subjects claims celGET celPOST plain
		"ada": {200, 403, 200, 403, 403, 200, 200, 200, 200},
		"ben": {403, 403, 403, 403, 200, 403, 200, 403, 200},
		"cyd": {403, 200, 403, 200, 403, 403, 200, 403, 200},
		"eve": {403, 403, 403, 403, 403, 403, 403, 403, 200}, // email not verified: the default refuses
	}
	for _, user := range []string{"ada", "ben", "cyd", "eve"} {
		b := newBrowser(t)
		b.login(t, s.RelayURL, "/", user)
		for i, c := range calls {
			o := b.call(t, c.method, s.RelayURL+c.path+"x?u="+user, nil)
			if o.Status != want[user][i] {
				t.Errorf("%s %s %s = %d %s, want %d", user, c.method, c.path, o.Status, o.Body, want[user][i])
			}
			reached := rec.count(c.method, c.path+"x", user)
			if wantReached := map[bool]int{true: 1}[want[user][i] == 200]; reached != wantReached {
				t.Errorf("%s %s %s: the upstream received %d requests, want %d", user, c.method, c.path, reached, wantReached)
			}
			if o.Status == 403 && !strings.Contains(string(o.Body), `"error":"forbidden"`) {
				t.Errorf("%s %s %s: body %s, want forbidden JSON", user, c.method, c.path, o.Body)
			}
		}
		if user == "ben" {
			checkPreview(t, b, s.RelayURL)
		}
	}
}

// checkPreview pins ben's /.auth/session: the claims the policies read are
// kept (added to provider.claims), and each route with a policy says what
// ben may expect.
func checkPreview(t *testing.T, b *browser, relayURL string) {
	t.Helper()
	o := b.get(t, relayURL+"/.auth/session", nil)
	var info struct {
		Claims map[string]any    `json:"claims"`
		Routes map[string]string `json:"routes"`
	}
	if err := json.Unmarshal(o.Body, &info); err != nil {
		t.Fatalf("/.auth/session = %s: %v", o.Body, err)
	}
	for _, c := range []string{"email_verified", "groups", "department", "acr"} {
		if _, ok := info.Claims[c]; !ok {
			t.Errorf("the session does not keep claim %s, which a policy reads: %v", c, info.Claims)
		}
	}
	want := map[string]string{
		"/p/emails/": "denied", "/p/domains/": "denied", "/p/groups/": "denied", "/p/string-groups/": "denied",
		"/p/subjects/": "allowed", "/p/claims/": "denied", "/p/cel/": "conditional", "/p/stepup/": "step_up",
		"/api/": "allowed",
	}
	for path, access := range want {
		if info.Routes[path] != access {
			t.Errorf("/.auth/session routes[%s] = %q, want %q (all: %v)", path, info.Routes[path], access, info.Routes)
		}
	}
}

// TestStepUpAgainstTheOP round-trips a step-up through the OP: ada's first
// login gives acr loa:1, so the route that needs loa:2 answers 401
// step_up_required with a login URL asking for it; after that login (the
// OP asks for her password again) the session's claims carry loa:2 and the
// route answers 200. ben cannot give loa:2: his step-up login comes back
// without it and the route answers 403 step_up_failed instead of another
// round.
func TestStepUpAgainstTheOP(t *testing.T) {
	t.Parallel()
	rec := newRecorder(t)
	s := startStack(t, stackOptions{Configure: withPolicyRoutes(rec.URL)})
	target := s.RelayURL + "/p/stepup/x"

	ada := newBrowser(t)
	ada.login(t, s.RelayURL, "/", "ada")
	if acr := sessionClaim(t, ada, s.RelayURL, "acr"); acr != acrPassword {
		t.Fatalf("after the first login acr = %v, want %s", acr, acrPassword)
	}
	o := ada.call(t, "GET", target, nil)
	var su struct {
		Error    string `json:"error"`
		LoginURL string `json:"login_url"`
	}
	if err := json.Unmarshal(o.Body, &su); err != nil || o.Status != 401 || su.Error != "step_up_required" {
		t.Fatalf("GET %s = %d %s, want 401 step_up_required", target, o.Status, o.Body)
	}
	wantLogin := "/.auth/login?acr_values=" + url.QueryEscape(acrMFA) + "&return_to=%2Fp%2Fstepup%2Fx"
	if su.LoginURL != wantLogin {
		t.Errorf("login_url = %q, want %q", su.LoginURL, wantLogin)
	}
	res := ada.loginAt(t, s.RelayURL, s.RelayURL+su.LoginURL, "ada")
	if res.Final.Status != 200 || res.Final.URL.Path != "/p/stepup/x" {
		t.Errorf("after the step-up login the browser is at %d %s, want 200 /p/stepup/x", res.Final.Status, res.Final.URL)
	}
	if acr := sessionClaim(t, ada, s.RelayURL, "acr"); acr != acrMFA {
		t.Errorf("after the step-up login acr = %v, want %s", acr, acrMFA)
	}
	if o := ada.call(t, "GET", target, nil); o.Status != 200 {
		t.Errorf("GET %s after the step-up = %d %s, want 200", target, o.Status, o.Body)
	}

	ben := newBrowser(t)
	ben.login(t, s.RelayURL, "/", "ben")
	o = ben.call(t, "GET", target, nil)
	if err := json.Unmarshal(o.Body, &su); err != nil || o.Status != 401 {
		t.Fatalf("ben: GET %s = %d %s, want 401", target, o.Status, o.Body)
	}
	res = ben.loginAt(t, s.RelayURL, s.RelayURL+su.LoginURL, "ben")
	if res.Final.Status != 403 || !strings.Contains(string(res.Final.Body), "did not give the stronger") {
		t.Errorf("ben after a step-up login without loa:2: %d %s, want the 403 step_up_failed page", res.Final.Status, res.Final.Body)
	}
	if o := ben.call(t, "GET", target, nil); o.Status != 403 || !strings.Contains(string(o.Body), `"error":"step_up_failed"`) {
		t.Errorf("ben: GET %s = %d %s, want 403 step_up_failed", target, o.Status, o.Body)
	}
	if n := rec.count("GET", "/p/stepup/x", ""); n != 2 {
		t.Errorf("the upstream received %d requests on /p/stepup/x, want ada's 2 (after her step-up)", n)
	}
}

// sessionClaim reads one claim of the browser's session.
func sessionClaim(t *testing.T, b *browser, relayURL, name string) any {
	t.Helper()
	var info struct {
		Claims map[string]any `json:"claims"`
	}
	o := b.get(t, relayURL+"/.auth/session", nil)
	if err := json.Unmarshal(o.Body, &info); err != nil {
		t.Fatalf("/.auth/session = %s: %v", o.Body, err)
	}
	return info.Claims[name]
}

// TestIdentityAgainstTheOP pins what the upstream learns from a real login:
// the identity headers with the OP's claims, never what the client sent
// (X-Forwarded-Email: admin@…, on a route with identity and on one
// without), and an assertion that a stock JWT library verifies against
// /.auth/jwks.json, and refuses tampered with or for another audience.
func TestIdentityAgainstTheOP(t *testing.T) {
	t.Parallel()
	rec := newRecorder(t)
	s := startStack(t, stackOptions{Configure: withPolicyRoutes(rec.URL)})
	b := newBrowser(t)
	b.login(t, s.RelayURL, "/", "ben")
	forged := http.Header{
		"X-Forwarded-Email": {"admin@example.test"}, "X-Forwarded-User": {"admin"},
		"X-Forwarded-Groups": {"admins"}, "X-Tokenrelay-Assertion": {"forged"},
	}
	for _, path := range []string{"/p/who/x", "/p/plain/x"} {
		if o := b.call(t, "GET", s.RelayURL+path, forged); o.Status != 200 {
			t.Fatalf("GET %s = %d %s", path, o.Status, o.Body)
		}
	}
	who := rec.last(t, "/p/who/x").Header
	for k, v := range map[string]string{
		"X-Forwarded-User": "ben", "X-Forwarded-Email": "ben@example.test", "X-Forwarded-Groups": "staff",
		"X-Forwarded-Preferred-Username": "ben",
	} {
		if got := who.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("/p/who/: the upstream received %s = %q, want [%q]", k, got, v)
		}
	}
	plain := rec.last(t, "/p/plain/x").Header
	for k := range forged {
		if v := plain.Values(k); len(v) != 0 {
			t.Errorf("/p/plain/: the upstream received the client's %s: %q", k, v)
		}
	}

	assertion := who.Get("X-Tokenrelay-Assertion")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	keys, err := keyfunc.NewDefaultCtx(ctx, []string{s.RelayURL + "/.auth/jwks.json"})
	if err != nil {
		t.Fatalf("jwks: %v", err)
	}
	parse := func(tok, audience string) (jwt.MapClaims, error) {
		claims := jwt.MapClaims{}
		_, err := jwt.ParseWithClaims(tok, claims, keys.KeyfuncCtx(ctx),
			jwt.WithValidMethods([]string{"ES256", "EdDSA"}), jwt.WithExpirationRequired(),
			jwt.WithIssuer(s.RelayURL), jwt.WithAudience(audience))
		return claims, err
	}
	claims, err := parse(assertion, rec.URL)
	if err != nil {
		t.Fatalf("the assertion does not verify against /.auth/jwks.json: %v", err)
	}
	if claims["sub"] != "ben" || claims["email"] != "ben@example.test" {
		t.Errorf("assertion claims = %v, want sub ben and email ben@example.test", claims)
	}
	if _, err := parse(assertion, "http://another-upstream.example"); err == nil {
		t.Error("the assertion verifies for another audience")
	}
	parts := strings.Split(assertion, ".")
	payload, _ := json.Marshal(map[string]any{"iss": s.RelayURL, "aud": rec.URL, "sub": "admin", "exp": time.Now().Add(time.Minute).Unix()})
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	if _, err := parse(tampered, rec.URL); err == nil {
		t.Error("a tampered assertion verifies")
	}
}
