package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/identity"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/idptest"
	"github.com/tokenrelay/tokenrelay/policy"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

// The policy and identity stages over the real session manager and memory
// store (the fakes cannot open a session with its claims): sessions are
// created with the claims a login would have kept, and requests go
// through the whole pipeline to an upstream in the process.

// polEnv is a Handler with policies and identity over the real manager.
type polEnv struct {
	*pxEnv
	mgr  *session.Manager
	up   *pxUpstream
	keys *identity.KeyRing
}

// polUsers are the claims of the test users, as the session keeps them.
var polUsers = map[string]string{
	"ada": `{"email":"ada@example.com","email_verified":true,"groups":["admins","editors"],"acr":"urn:mfa"}`,
	"ben": `{"email":"Ben@Example.com","email_verified":true,"groups":"staff","preferred_username":"ben"}`,
	"cat": `{"email":"cat@partner.org","email_verified":true,"groups":["admins"]}`,
	"eve": `{"email":"eve@example.com","email_verified":false,"groups":["admins","editors"],"acr":"urn:mfa"}`,
}

const polUpstream = "http://up.upstream.test"

// newPolEnv builds the Handler with a default policy (email at
// example.com) and a route of each kind; edit may change the options.
func newPolEnv(t *testing.T, edit func(*Options)) *polEnv {
	t.Helper()
	mgr, err := session.NewManager(session.ManagerOptions{
		Backend:    session.NewMemoryStore(time.Now),
		Secret:     []byte(strings.Repeat("s", 32)),
		Refresher:  idptest.NewTokenEndpoint(time.Now, 5*time.Minute),
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := identity.NewKeyRing(context.Background(), identity.KeyRingConfig{Store: &identity.MemoryKeyStore{}, Secret: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	up := newPxUpstreamInProcess("up", nil)
	o := Options{
		Sessions:  mgr,
		Transport: up.transport(),
		PublicURL: mustURL(t, "https://app.example"),
		Keys:      keys,
		Policy:    policy.Options{EmailDomains: []string{"example.com"}},
		Routes: []Route{
			{Path: "/admin/", Upstream: polUpstream, Policy: policy.RouteOptions{Options: policy.Options{Groups: []string{"admins"}}}},
			{Path: "/edit/", Upstream: polUpstream, Policy: policy.RouteOptions{Options: policy.Options{
				Expression: `request.method == "GET" || "editors" in claims.groups`}}},
			{Path: "/mfa/", Upstream: polUpstream, Policy: policy.RouteOptions{Options: policy.Options{
				StepUp: policy.StepUpOptions{ACRValues: []string{"urn:mfa"}}}}},
			{Path: "/mfa-status/", Upstream: polUpstream, OnUnauthenticated: UnauthStatus, Policy: policy.RouteOptions{Options: policy.Options{
				StepUp: policy.StepUpOptions{ACRValues: []string{"urn:mfa"}}}}},
			{Path: "/partner/", Upstream: polUpstream, Policy: policy.RouteOptions{Mode: policy.ModeReplace, Options: policy.Options{
				EmailDomains: []string{"partner.org"}}}},
			{Path: "/plain/", Upstream: polUpstream},
			{Path: "/who/", Upstream: polUpstream, Policy: policy.RouteOptions{Mode: policy.ModeReplace},
				Identity: &identity.Options{Assertion: true, IDTokenHeader: "X-Id-Token"}},
			{Path: "/opt/", Upstream: polUpstream, Auth: AuthOptional, Identity: &identity.Options{}},
			{Path: "/pub/", Upstream: polUpstream, Auth: AuthNone},
		},
	}
	if edit != nil {
		edit(&o)
	}
	return &polEnv{pxEnv: newPxEnvInProcess(t, o), mgr: mgr, up: up, keys: keys}
}

// login starts a session of user (one of polUsers) as a login asking for
// asked would have.
func (e *polEnv) login(t *testing.T, user string, asked idp.LoginRequest) session.Ticket {
	t.Helper()
	var claims map[string]any
	if err := json.Unmarshal([]byte(polUsers[user]), &claims); err != nil {
		t.Fatal(err)
	}
	tk, err := e.mgr.Create(context.Background(), session.Record{
		AccessToken: secret.String("at-" + user), RefreshToken: secret.String("rt-" + user), IDToken: secret.String("idt-" + user),
		AccessExpiry: time.Now().Add(time.Hour), Subject: user, Claims: claims, Login: asked,
	}, session.ViaLogin)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// call sends method path with the session of tk (none when zero), as a
// fetch() or, with nav, as a navigation.
func (e *polEnv) call(t *testing.T, tk session.Ticket, method, path string, nav bool) (*http.Response, string) {
	t.Helper()
	r := e.req(t, method, path, nil)
	if tk != (session.Ticket{}) {
		withTicket(r, tk)
	}
	if nav {
		r.Header.Set("Sec-Fetch-Mode", "navigate")
		r.Header.Set("Sec-Fetch-Dest", "document")
		r.Header.Set("Accept", "text/html")
	} else {
		r.Header.Set("Sec-Fetch-Mode", "cors")
		r.Header.Set("Accept", "application/json")
	}
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("X-CSRF", "1")
	return e.do(t, r)
}

// upstreamSaw counts the requests the upstream received for path.
func (e *polEnv) upstreamSaw(path string) int {
	n := 0
	for _, s := range e.up.requests() {
		if s.Path == path {
			n++
		}
	}
	return n
}

// TestPolicyDecides is the table of user × route → status: allow-lists,
// the expression (which depends on the method), the default policy and a
// route replacing it. A refused request never reaches the upstream, and
// its answer names no rule.
func TestPolicyDecides(t *testing.T) {
	e := newPolEnv(t, nil)
	type call struct{ method, path string }
	calls := []call{
		{"GET", "/admin/x"}, {"GET", "/edit/x"}, {"POST", "/edit/x"}, {"GET", "/partner/x"}, {"GET", "/plain/x"},
	}
	want := map[string][]int{
		"ada": {200, 200, 200, 403, 200},
		"ben": {403, 200, 403, 403, 200}, // email matched without regard to case
		"cat": {403, 403, 403, 200, 403}, // partner.org: only the route that replaces the default
		"eve": {403, 403, 403, 403, 403}, // email not verified
	}
	for user, statuses := range want {
		tk := e.login(t, user, idp.LoginRequest{})
		for i, c := range calls {
			path := c.path + "?user=" + user
			before := e.upstreamSaw(c.path)
			res, body := e.call(t, tk, c.method, path, false)
			if res.StatusCode != statuses[i] {
				t.Errorf("%s %s %s = %d %s, want %d", user, c.method, c.path, res.StatusCode, body, statuses[i])
				continue
			}
			reached := e.upstreamSaw(c.path) - before
			if statuses[i] == 200 && reached != 1 || statuses[i] != 200 && reached != 0 {
				t.Errorf("%s %s %s: the upstream received %d requests, want %d", user, c.method, c.path, reached, map[bool]int{true: 1}[statuses[i] == 200])
			}
			if statuses[i] == 403 {
				if got := decodeError(t, body); got.Error != "forbidden" || strings.Contains(body, "email_domains") || strings.Contains(body, "groups") {
					t.Errorf("%s %s: body %s, want forbidden naming no rule", user, c.path, body)
				}
			}
		}
	}
	if !strings.Contains(e.logs.String(), `"rule":"route.groups"`) || !strings.Contains(e.logs.String(), `"rule":"default.email_domains"`) {
		t.Errorf("the log does not name the rules that refused:\n%s", e.logs)
	}
}

// TestForbiddenPage pins the refusal a browser's navigation sees: the HTML
// page with the request id and a link that logs in again (prompt=login,
// so another account can be chosen), never a script; fetch() gets JSON.
func TestForbiddenPage(t *testing.T) {
	e := newPolEnv(t, nil)
	tk := e.login(t, "ben", idp.LoginRequest{})
	res, body := e.call(t, tk, "GET", "/admin/x", true)
	id := res.Header.Get(requestIDHeader)
	wantLink := `href="/.auth/login?prompt=login&amp;return_to=%2Fadmin%2Fx"`
	if res.StatusCode != 403 || res.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(body, "<title>Access denied</title>") || !strings.Contains(body, wantLink) ||
		id == "" || !strings.Contains(body, id) || strings.Contains(body, "<script") {
		t.Errorf("navigation = %d %s %q; want the 403 page with %s and the request id %s", res.StatusCode, res.Header.Get("Content-Type"), body, wantLink, id)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	res, body = e.call(t, tk, "GET", "/admin/x", false)
	if res.StatusCode != 403 || decodeError(t, body).Error != "forbidden" {
		t.Errorf("fetch = %d %s, want 403 forbidden JSON", res.StatusCode, body)
	}
	if n := e.upstreamSaw("/admin/x"); n != 0 {
		t.Errorf("the upstream received %d refused requests", n)
	}
}

// TestStepUp pins the answers of a route that needs acr urn:mfa: a session
// without it gets 401 step_up_required with a login URL asking for it (and
// an RFC 9470 challenge), a navigation a redirect to that URL (the page
// linking to it on a route that answers with a status); a session from a
// login that asked for urn:mfa and still lacks it gets 403 step_up_failed
// instead of another round; a session with it passes.
func TestStepUp(t *testing.T) {
	e := newPolEnv(t, nil)
	ben := e.login(t, "ben", idp.LoginRequest{})
	wantLogin := "/.auth/login?acr_values=urn%3Amfa&return_to=%2Fmfa%2Fx%3Fa%3D1"

	res, body := e.call(t, ben, "GET", "/mfa/x?a=1", false)
	var su stepUpError
	if err := json.Unmarshal([]byte(body), &su); err != nil || res.StatusCode != 401 || su.Error != "step_up_required" || su.LoginURL != wantLogin {
		t.Errorf("fetch = %d %s, want 401 step_up_required with login_url %s", res.StatusCode, body, wantLogin)
	}
	if got, want := res.Header.Get("WWW-Authenticate"), `Bearer error="insufficient_user_authentication", error_description="a stronger or more recent login is required", acr_values="urn:mfa"`; got != want {
		t.Errorf("WWW-Authenticate = %q, want %q", got, want)
	}
	res, _ = e.call(t, ben, "GET", "/mfa/x?a=1", true)
	if res.StatusCode != 302 || res.Header.Get("Location") != wantLogin {
		t.Errorf("navigation = %d to %q, want 302 to %s", res.StatusCode, res.Header.Get("Location"), wantLogin)
	}
	res, body = e.call(t, ben, "GET", "/mfa-status/x", true)
	if res.StatusCode != 401 || !strings.Contains(body, `href="/.auth/login?acr_values=urn%3Amfa&amp;return_to=%2Fmfa-status%2Fx"`) {
		t.Errorf("navigation on a status route = %d %q, want 401 with a page linking to the step-up login", res.StatusCode, body)
	}

	// ben's provider cannot give urn:mfa: after the step-up login his
	// session still lacks it.
	stepped := e.login(t, "ben", idp.LoginRequest{ACRValues: []string{"urn:mfa"}})
	res, body = e.call(t, stepped, "GET", "/mfa/x", true)
	if res.StatusCode != 403 || !strings.Contains(body, "did not give the stronger") {
		t.Errorf("after a step-up login that did not give urn:mfa: %d %q, want the 403 step_up_failed page", res.StatusCode, body)
	}
	res, body = e.call(t, stepped, "GET", "/mfa/x", false)
	if res.StatusCode != 403 || decodeError(t, body).Error != "step_up_failed" {
		t.Errorf("fetch after a failed step-up = %d %s, want 403 step_up_failed", res.StatusCode, body)
	}

	ada := e.login(t, "ada", idp.LoginRequest{ACRValues: []string{"urn:mfa"}})
	if res, body := e.call(t, ada, "GET", "/mfa/x", false); res.StatusCode != 200 {
		t.Errorf("ada (acr urn:mfa) = %d %s, want 200", res.StatusCode, body)
	}
	if n := e.upstreamSaw("/mfa/x"); n != 1 {
		t.Errorf("the upstream received %d requests on /mfa/x, want only ada's", n)
	}
}

// TestStepUpFailedOnlyWhileRecent pins the step-up loop guard with
// max_auth_age: a session from a login that asked for max_age is refused
// as failed only while it is younger than that age; an older one is asked
// to step up again, which is the point of the age.
func TestStepUpFailedOnlyWhileRecent(t *testing.T) {
	now := time.Now()
	want := idp.LoginRequest{MaxAge: 10 * time.Minute}
	asked := &session.Record{Login: idp.LoginRequest{MaxAge: 10 * time.Minute}, CreatedAt: now.Add(-time.Minute)}
	if !stepUpFailed(asked, want, now) {
		t.Error("a session a minute old, from a login that asked max_age=600, is not a failed step-up")
	}
	asked.CreatedAt = now.Add(-11 * time.Minute)
	if stepUpFailed(asked, want, now) {
		t.Error("a session 11 minutes old is a failed step-up; want another step-up")
	}
	plain := &session.Record{CreatedAt: now}
	if stepUpFailed(plain, want, now) {
		t.Error("a session from a plain login is a failed step-up")
	}
}

// TestPreviewInSessionEndpoint pins /.auth/session's routes: what each
// route with a policy holds for the user, without a request.
func TestPreviewInSessionEndpoint(t *testing.T) {
	e := newPolEnv(t, nil)
	tk := e.login(t, "ben", idp.LoginRequest{})
	r := e.req(t, "GET", "/.auth/session", nil)
	withTicket(r, tk)
	res, body := e.do(t, r)
	var info struct {
		Routes map[string]string `json:"routes"`
	}
	if err := json.Unmarshal([]byte(body), &info); err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /.auth/session = %d %s", res.StatusCode, body)
	}
	want := map[string]string{
		"/admin/": "denied", "/edit/": "conditional", "/mfa/": "step_up", "/mfa-status/": "step_up",
		"/partner/": "denied", "/plain/": "allowed",
	}
	if len(info.Routes) != len(want) {
		t.Errorf("routes = %v, want %v", info.Routes, want)
	}
	for path, access := range want {
		if info.Routes[path] != access {
			t.Errorf("routes[%s] = %q, want %q", path, info.Routes[path], access)
		}
	}
}

// TestIdentityHeaders pins what the upstream learns: on a route with an
// identity key, the mapped claims, the ID token and an assertion; on every
// route, with or without a session, no identity header the client sent.
func TestIdentityHeaders(t *testing.T) {
	e := newPolEnv(t, nil)
	ben := e.login(t, "ben", idp.LoginRequest{})
	forged := map[string]string{
		"X-Forwarded-Email": "admin@example.com", "X-Forwarded-User": "admin", "X-Forwarded-Groups": "admins",
		"X-Id-Token": "forged", "X-Tokenrelay-Assertion": "forged",
	}
	send := func(tk session.Ticket, path string) pxSeen {
		t.Helper()
		r := e.req(t, "GET", path, nil)
		if tk != (session.Ticket{}) {
			withTicket(r, tk)
		}
		for k, v := range forged {
			r.Header.Set(k, v)
		}
		// Hop-by-hop removal must not delete what tokenrelay sets.
		r.Header.Set("Connection", "X-Forwarded-User, X-Tokenrelay-Assertion")
		if res, body := e.do(t, r); res.StatusCode != 200 {
			t.Fatalf("GET %s = %d %s", path, res.StatusCode, body)
		}
		seen := e.up.requests()
		return seen[len(seen)-1]
	}

	got := send(ben, "/who/x").Header
	for k, v := range map[string]string{
		"X-Forwarded-User": "ben", "X-Forwarded-Email": "Ben@Example.com", "X-Forwarded-Groups": "staff",
		"X-Forwarded-Preferred-Username": "ben", "X-Id-Token": "idt-ben",
	} {
		if g := got.Values(k); len(g) != 1 || g[0] != v {
			t.Errorf("/who/: %s = %q, want [%q]", k, g, v)
		}
	}
	if a := got.Get("X-Tokenrelay-Assertion"); a == "" || a == "forged" || strings.Count(a, ".") != 2 {
		t.Errorf("/who/: X-Tokenrelay-Assertion = %q, want a JWT", a)
	}

	for _, c := range []struct {
		tk   session.Ticket
		path string
	}{{ben, "/plain/x"}, {session.Ticket{}, "/pub/x"}, {session.Ticket{}, "/opt/x"}} {
		h := send(c.tk, c.path).Header
		for k := range forged {
			if v := h.Values(k); len(v) != 0 {
				t.Errorf("%s: the upstream received the client's %s: %q", c.path, k, v)
			}
		}
	}
	// An optional route with a session sends the identity.
	if h := send(ben, "/opt/x").Header; h.Get("X-Forwarded-Email") != "Ben@Example.com" || h.Get("X-Tokenrelay-Assertion") != "" {
		t.Errorf("/opt/ with a session: email %q, assertion %q; want ben's email and no assertion", h.Get("X-Forwarded-Email"), h.Get("X-Tokenrelay-Assertion"))
	}
}

// TestJWKSEndpoint pins <auth_prefix>/jwks.json: the assertion keys,
// cacheable for five minutes; 404 when no route sends an assertion.
func TestJWKSEndpoint(t *testing.T) {
	e := newPolEnv(t, nil)
	res, body := e.do(t, e.req(t, "GET", "/.auth/jwks.json", nil))
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil || res.StatusCode != 200 || len(doc.Keys) != 1 || doc.Keys[0]["alg"] != "ES256" {
		t.Errorf("GET jwks.json = %d %s, want one ES256 key", res.StatusCode, body)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=300" {
		t.Errorf("Cache-Control = %q, want public, max-age=300", cc)
	}
	if res, _ := e.do(t, e.req(t, "POST", "/.auth/jwks.json", nil)); res.StatusCode != 405 {
		t.Errorf("POST jwks.json = %d, want 405", res.StatusCode)
	}
	plain := newPolEnv(t, func(o *Options) {
		o.Keys = nil
		o.Routes = o.Routes[:1]
	})
	if res, _ := plain.do(t, plain.req(t, "GET", "/.auth/jwks.json", nil)); res.StatusCode != 404 {
		t.Errorf("GET jwks.json without assertions = %d, want 404", res.StatusCode)
	}
}

// TestAssertionWithoutKeys pins that a route sending the assertion needs
// the key ring: New refuses to build without it.
func TestAssertionWithoutKeys(t *testing.T) {
	_, err := New(Options{
		Sessions: newFakeSessions(), Provider: &fakeProvider{},
		Routes: []Route{{Path: "/who/", Upstream: polUpstream, Identity: &identity.Options{Assertion: true}}},
	})
	if err == nil || !strings.Contains(err.Error(), "no signer") {
		t.Errorf("New = %v, want an error: the route sends an assertion, and there are no keys", err)
	}
}

// TestTooLargeHeaderLoggedOnce pins that an identity header left out for
// its size is logged at warning level once per route, then at debug level.
func TestTooLargeHeaderLoggedOnce(t *testing.T) {
	e := newPolEnv(t, nil)
	groups := make([]any, 1000)
	for i := range groups {
		groups[i] = "group-with-a-long-name-" + url.QueryEscape(time.Duration(i).String())
	}
	tk, err := e.mgr.Create(context.Background(), session.Record{
		AccessToken: "at", AccessExpiry: time.Now().Add(time.Hour), Subject: "many",
		Claims: map[string]any{"groups": groups},
	}, session.ViaLogin)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if res, body := e.call(t, tk, "GET", "/who/x", false); res.StatusCode != 200 {
			t.Fatalf("GET /who/x = %d %s", res.StatusCode, body)
		}
	}
	seen := e.up.requests()
	if g := seen[len(seen)-1].Header.Get("X-Forwarded-Groups"); g != "" {
		t.Errorf("X-Forwarded-Groups has %d bytes, want it left out", len(g))
	}
	warn, debug := 0, 0
	for _, l := range e.logs.lines(t) {
		if l["msg"] == "proxy: an identity header was left out: its value is too large" {
			switch l["level"] {
			case "WARN":
				warn++
			case "DEBUG":
				debug++
			}
		}
	}
	if warn != 1 || debug != 2 {
		t.Errorf("logged %d warnings and %d debug lines, want 1 and 2", warn, debug)
	}
}

// TestAssertionKeyRotation pins the rotation of generated keys as an
// upstream sees it through /.auth/jwks.json: an assertion signed just
// before the next key takes over still verifies after the switch, next to
// the new key's, until it expires and its key leaves the JWKS (twice the
// lifetime after the switch).
func TestAssertionKeyRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lifetime = time.Minute
		o := identity.AssertionOptions{Lifetime: lifetime, Rotation: 24 * time.Hour, PublishAhead: time.Hour}
		start := time.Now()
		keys, err := identity.NewKeyRing(context.Background(), identity.KeyRingConfig{
			Options: o, Store: &identity.MemoryKeyStore{}, Secret: []byte(strings.Repeat("k", 32)), Now: time.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		e := newPolEnv(t, func(opts *Options) {
			opts.Keys, opts.Assertion, opts.Now = keys, o, time.Now
			opts.Session = session.LifetimeOptions{MaxLifetime: 48 * time.Hour}
		})
		assertion := func() string {
			t.Helper()
			tk := e.login(t, "ben", idp.LoginRequest{})
			if res, body := e.call(t, tk, "GET", "/who/x", false); res.StatusCode != 200 {
				t.Fatalf("GET /who/x = %d %s", res.StatusCode, body)
			}
			seen := e.up.requests()
			return seen[len(seen)-1].Header.Get("X-Tokenrelay-Assertion")
		}
		jwks := func() keyfunc.Keyfunc {
			t.Helper()
			_, body := e.do(t, e.req(t, "GET", "/.auth/jwks.json", nil))
			k, err := keyfunc.NewJWKSetJSON(json.RawMessage(body))
			if err != nil {
				t.Fatalf("jwks %s: %v", body, err)
			}
			return k
		}
		verify := func(k keyfunc.Keyfunc, tok string) error {
			_, err := jwt.Parse(tok, k.Keyfunc, jwt.WithValidMethods([]string{"ES256"}),
				jwt.WithIssuer("https://app.example"), jwt.WithAudience(polUpstream), jwt.WithExpirationRequired())
			return err
		}

		// A replica in use notices the coming rotation PublishAhead
		// before it, and publishes the next key.
		time.Sleep(start.Add(o.Rotation - o.PublishAhead).Sub(time.Now()))
		if _, err := jwks().Keyfunc(&jwt.Token{Header: map[string]any{"kid": kidOf(t, assertion()), "alg": "ES256"}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(start.Add(o.Rotation - 20*time.Second).Sub(time.Now()))
		old := assertion()
		time.Sleep(30 * time.Second) // the next key has taken over
		fresh := assertion()
		k := jwks()
		if err := verify(k, old); err != nil {
			t.Errorf("after the switch, an assertion of the old key: %v", err)
		}
		if err := verify(k, fresh); err != nil {
			t.Errorf("after the switch, an assertion of the new key: %v", err)
		}
		if kidOf(t, old) == kidOf(t, fresh) {
			t.Fatalf("both assertions carry kid %s; want a new key after the rotation", kidOf(t, old))
		}
		time.Sleep(2 * lifetime)
		k = jwks()
		if _, err := k.Keyfunc(&jwt.Token{Header: map[string]any{"kid": kidOf(t, old), "alg": "ES256"}}); err == nil {
			t.Error("twice the lifetime after the switch, the old key is still published")
		}
		if err := verify(k, assertion()); err != nil {
			t.Errorf("a new assertion after the old key left: %v", err)
		}
	})
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := parsed.Header["kid"].(string)
	return kid
}
