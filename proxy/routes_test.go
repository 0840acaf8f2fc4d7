package proxy

import (
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenrelay/tokenrelay/internal/problem"
)

func TestRouteTableMatch(t *testing.T) {
	table := newRouteTable([]*route{
		{Route: Route{Name: "root", Path: "/"}},
		{Route: Route{Name: "api", Path: "/api/"}},
		{Route: Route{Name: "apiv2", Path: "/api/v2"}},
		{Route: Route{Name: "docs", Path: "/docs"}},
	})
	tests := []struct {
		path string
		want string
	}{
		{"/", "root"},
		{"/index.html", "root"},
		{"/api/", "api"},
		{"/api/x", "api"},
		{"/api", "root"}, // "/api/" claims only its subtree
		{"/apix", "root"},
		{"/api/v2", "apiv2"},
		{"/api/v2/users", "apiv2"},
		{"/api/v2x", "api"}, // segment-aware: not under /api/v2
		{"/docs", "docs"},
		{"/docs/", "docs"},
		{"/docs/a/b", "docs"},
		{"/docsx", "root"},
	}
	for _, tt := range tests {
		got := table.match(tt.path)
		if got == nil || got.Name != tt.want {
			gotName := "<nil>"
			if got != nil {
				gotName = got.Name
			}
			t.Errorf("match(%q) = %s, want %s", tt.path, gotName, tt.want)
		}
	}

	noRoot := newRouteTable([]*route{{Route: Route{Name: "api", Path: "/api"}}})
	for _, p := range []string{"/", "/apix", "/other", ""} {
		if got := noRoot.match(p); got != nil {
			t.Errorf("match(%q) without a root route = %s, want nil", p, got.Name)
		}
	}
}

func TestStripPrefix(t *testing.T) {
	tests := []struct {
		prefix, path, rawPath string
		wantPath, wantRaw     string
	}{
		{"/api/", "/api/users", "", "/users", ""},
		{"/api", "/api/users", "", "/users", ""},
		{"/api", "/api", "", "/", ""},
		{"/api/", "/api/", "", "/", ""},
		{"/api/", "/api/a%2Fb", "/api/a%2Fb", "/a%2Fb", "/a%2Fb"},
		{"/", "/x", "", "/x", ""},
		{"/café/", "/café/a/b", "/caf%C3%A9/a%2Fb", "/a/b", "/a%2Fb"},
	}
	for _, tt := range tests {
		u := &url.URL{Path: tt.path, RawPath: tt.rawPath}
		stripPrefix(u, tt.prefix, (&url.URL{Path: tt.prefix}).EscapedPath())
		if u.Path != tt.wantPath || u.RawPath != tt.wantRaw {
			t.Errorf("stripPrefix(%q, %q) = (%q, %q), want (%q, %q)", tt.path, tt.prefix, u.Path, u.RawPath, tt.wantPath, tt.wantRaw)
		}
	}
}

func TestHasDotSegment(t *testing.T) {
	tests := map[string]bool{
		"/":              false,
		"/a/b":           false,
		"/a/..b/c.":      false,
		"/.well-known/x": false,
		"/a/../b":        true,
		"/..":            true,
		"/./a":           true,
		"/a/.":           true,
	}
	for p, want := range tests {
		if got := hasDotSegment(p); got != want {
			t.Errorf("hasDotSegment(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestRouting sends requests through the Handler to two upstreams and checks
// which one answered and what path it saw.
func TestRouting(t *testing.T) {
	api := newPxUpstream(t, "api", nil)
	web := newPxUpstream(t, "web", nil)
	base := newPxUpstream(t, "base", nil)
	baseURL := base.url()
	baseURL.Path = "/base/"
	e := newPxEnv(t, Options{Routes: []Route{
		{Name: "api", Path: "/api/", Upstream: api.url().String(), Auth: AuthNone, StripPrefix: true},
		{Name: "legacy", Path: "/legacy", Upstream: baseURL.String(), Auth: AuthNone},
		{Name: "root", Path: "/", Upstream: web.url().String(), Auth: AuthNone},
	}})
	tests := []struct {
		path     string
		wantBody string
		wantPath string
		wantRaw  string
	}{
		{"/api/users?x=1", "ok api", "/users", ""},
		{"/api/a%2Fb", "ok api", "/a/b", "/a%2Fb"},
		{"/api", "ok web", "/api", ""},
		{"/apix", "ok web", "/apix", ""},
		{"/legacy", "ok base", "/base/legacy", ""},
		{"/legacy/x", "ok base", "/base/legacy/x", ""},
		{"/", "ok web", "/", ""},
	}
	for _, tt := range tests {
		ups := map[string]*pxUpstream{"ok api": api, "ok web": web, "ok base": base}
		before := len(ups[tt.wantBody].requests())
		res, body := e.do(t, e.req(t, http.MethodGet, tt.path, nil))
		if res.StatusCode != http.StatusOK || body != tt.wantBody {
			t.Errorf("GET %s = %d %q, want 200 %q", tt.path, res.StatusCode, body, tt.wantBody)
			continue
		}
		seen := ups[tt.wantBody].requests()
		if len(seen) != before+1 {
			t.Fatalf("GET %s: upstream saw %d requests, want %d", tt.path, len(seen), before+1)
		}
		got := seen[len(seen)-1]
		if got.Path != tt.wantPath || got.RawPath != tt.wantRaw {
			t.Errorf("GET %s: upstream path = (%q, %q), want (%q, %q)", tt.path, got.Path, got.RawPath, tt.wantPath, tt.wantRaw)
		}
		if strings.Contains(tt.path, "?") && got.RawQuery != "x=1" {
			t.Errorf("GET %s: upstream query = %q, want x=1", tt.path, got.RawQuery)
		}
	}
}

func TestUnmatchedAndUncleanPaths(t *testing.T) {
	api := newPxUpstream(t, "api", nil)
	e := newPxEnv(t, Options{Routes: []Route{{Name: "api", Path: "/api/", Upstream: api.url().String(), Auth: AuthNone}}})

	res, body := e.do(t, e.req(t, http.MethodGet, "/other", nil))
	if res.StatusCode != http.StatusNotFound || decodeError(t, body).Error != "not_found" {
		t.Errorf("GET /other = %d %s, want 404 not_found", res.StatusCode, body)
	}
	res, body = e.raw(t, "GET /api/../admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if res.StatusCode != http.StatusBadRequest || decodeError(t, body).Error != "bad_request" {
		t.Errorf("GET /api/../admin = %d %s, want 400 bad_request", res.StatusCode, body)
	}
	if got := len(api.requests()); got != 0 {
		t.Errorf("upstream saw %d requests, want 0", got)
	}
	if got, want := e.requests(labelUnmatched, "404"), 1.0; got != want {
		t.Errorf("requests{unmatched,404} = %v, want %v", got, want)
	}
	if got, want := e.requests(labelUnmatched, "400"), 1.0; got != want {
		t.Errorf("requests{unmatched,400} = %v, want %v", got, want)
	}
}

// TestOnlyConfiguredUpstreams: an absolute-form request URI and a foreign
// Host header cannot make tokenrelay connect anywhere else.
func TestOnlyConfiguredUpstreams(t *testing.T) {
	api := newPxUpstream(t, "api", nil)
	other := newPxUpstream(t, "other", nil)
	e := newPxEnv(t, Options{Routes: []Route{{Name: "api", Path: "/api/", Upstream: api.url().String(), Auth: AuthNone}}})
	otherHost := other.url().Host

	for _, text := range []string{
		"GET http://" + otherHost + "/api/x HTTP/1.1\r\nHost: " + otherHost + "\r\nConnection: close\r\n\r\n",
		"GET /api/x HTTP/1.1\r\nHost: " + otherHost + "\r\nConnection: close\r\n\r\n",
	} {
		res, body := e.raw(t, text)
		if res.StatusCode != http.StatusOK || body != "ok api" {
			t.Errorf("%q = %d %q, want 200 \"ok api\"", strings.SplitN(text, "\r\n", 2)[0], res.StatusCode, body)
		}
	}
	if got := len(other.requests()); got != 0 {
		t.Errorf("unconfigured upstream saw %d requests, want 0", got)
	}
	seen := api.requests()
	if len(seen) != 2 {
		t.Fatalf("api saw %d requests, want 2", len(seen))
	}
	for _, s := range seen {
		if s.Host != api.url().Host {
			t.Errorf("upstream Host = %q, want %q", s.Host, api.url().Host)
		}
	}
}

// TestNewRejectsBadRoutes pins that New refuses the routes ValidateRoutes
// reports, with the key path of the problem.
func TestNewRejectsBadRoutes(t *testing.T) {
	const up = "http://127.0.0.1:1"
	tests := []struct {
		name   string
		routes []Route
		want   string
	}{
		{"bad name", []Route{{Name: "API", Path: "/", Upstream: up}}, "routes[0].name: must match [a-z0-9_]+"},
		{"reserved", []Route{{Name: "auth", Path: "/", Upstream: up}}, `routes[0].name: "auth" is reserved`},
		{"relative path", []Route{{Name: "a", Path: "api/", Upstream: up}}, `routes[0].path: must be a path starting with "/"`},
		{"dot path", []Route{{Name: "a", Path: "/a/../b/", Upstream: up}}, `routes[0].path: must not hold "." or ".." segments or "//"`},
		{"no upstream", []Route{{Name: "a", Path: "/"}}, "routes[0].upstream: required"},
		{"bad scheme", []Route{{Name: "a", Path: "/", Upstream: "ftp://x"}}, "routes[0].upstream: must be an http or https URL"},
		{"no host", []Route{{Name: "a", Path: "/", Upstream: "http:///x"}}, "routes[0].upstream: must be an http or https URL"},
		{"credentials", []Route{{Name: "a", Path: "/", Upstream: "http://u:p@x"}}, "routes[0].upstream: must not carry credentials"},
		{"under auth prefix", []Route{{Name: "a", Path: "/.auth/x", Upstream: up}}, `routes[0].path: must not be under auth_prefix "/.auth"`},
		{"duplicate name", []Route{{Name: "a", Path: "/", Upstream: up}, {Name: "a", Path: "/b", Upstream: up}}, `routes[1].name: "a" duplicates routes[0].name`},
		{"duplicate path", []Route{{Name: "a", Path: "/", Upstream: up}, {Name: "b", Path: "/", Upstream: up}}, "routes[1].path: duplicates routes[0].path"},
		{"bad auth mode", []Route{{Name: "a", Path: "/", Upstream: up, Auth: "sometimes"}}, `routes[0].auth: must be one of required, optional, none (got "sometimes")`},
		{"bad unauthenticated mode", []Route{{Name: "a", Path: "/", Upstream: up, OnUnauthenticated: "login"}}, `routes[0].on_unauthenticated: must be one of auto, redirect, status (got "login")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{Sessions: newFakeSessions(), Provider: &fakeProvider{}, Routes: tt.routes})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := New(Options{Provider: &fakeProvider{}}); err == nil {
		t.Error("New without Sessions: no error")
	}
}

// TestRouteDefaults pins a route's defaults, each written once in
// Route.WithDefaults: the name from the path, auth required,
// on_unauthenticated auto, and the CSRF header required on session routes
// only, unless the route says otherwise.
func TestRouteDefaults(t *testing.T) {
	tests := []struct {
		in   Route
		want Route
	}{
		{Route{Path: "/api/"}, Route{Name: "api", Path: "/api/", Auth: AuthRequired, OnUnauthenticated: UnauthAuto, CSRFHeader: new(true), Token: TokenUser}},
		{Route{Path: "/", Auth: AuthNone}, Route{Name: "root", Path: "/", Auth: AuthNone, OnUnauthenticated: UnauthAuto, CSRFHeader: new(false), Token: TokenNone}},
		{Route{Path: "/hooks/", Auth: AuthOptional, CSRFHeader: new(false)}, Route{Name: "hooks", Path: "/hooks/", Auth: AuthOptional, OnUnauthenticated: UnauthAuto, CSRFHeader: new(false), Token: TokenUser}},
		{Route{Name: "x", Path: "/", OnUnauthenticated: UnauthStatus}, Route{Name: "x", Path: "/", Auth: AuthRequired, OnUnauthenticated: UnauthStatus, CSRFHeader: new(true), Token: TokenUser}},
		// The token type gives auth its default.
		{Route{Path: "/svc/", Token: TokenClient}, Route{Name: "svc", Path: "/svc/", Auth: AuthNone, OnUnauthenticated: UnauthAuto, CSRFHeader: new(false), Token: TokenClient}},
		{Route{Path: "/pub/", Token: TokenUserOrNone}, Route{Name: "pub", Path: "/pub/", Auth: AuthOptional, OnUnauthenticated: UnauthAuto, CSRFHeader: new(true), Token: TokenUserOrNone}},
		{Route{Path: "/mix/", Token: TokenUserOrClient}, Route{Name: "mix", Path: "/mix/", Auth: AuthOptional, OnUnauthenticated: UnauthAuto, CSRFHeader: new(true), Token: TokenUserOrClient}},
		{Route{Path: "/x/", Token: TokenExchange, Resource: "https://x"}, Route{Name: "x", Path: "/x/", Auth: AuthRequired, OnUnauthenticated: UnauthAuto, CSRFHeader: new(true), Token: TokenExchange, Resource: "https://x"}},
	}
	for _, tt := range tests {
		if got := tt.in.WithDefaults(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%+v.WithDefaults() = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestRouteName(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/", "root"},
		{"/api/", "api"},
		{"/api", "api"},
		{"/api/v1/", "api_v1"},
		{"/Auth-Login//x/", "auth_login_x"},
		{"/-/", "root"},
		{"/ü/", "root"},
		{"/a.b/", "a_b"},
		{"/auth/", "auth_route"},
		{"/Auth", "auth_route"},
		{"/unmatched/", "unmatched_route"},
		{"/auth/login", "auth_login"},
	}
	for _, tt := range tests {
		if got := routeName(tt.path); got != tt.want {
			t.Errorf("routeName(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// TestValidateRoutesWarns pins the one warning of a route: an
// on_unauthenticated mode on a route without sessions.
func TestValidateRoutesWarns(t *testing.T) {
	ps := ValidateRoutes([]Route{{Path: "/", Upstream: "http://127.0.0.1:1", Auth: AuthNone, OnUnauthenticated: UnauthRedirect}}, "/.auth", false)
	if len(ps) != 1 || ps[0].String() != "[0].on_unauthenticated: has no effect with auth none" || ps[0].Severity != problem.Warning {
		t.Errorf("ValidateRoutes = %v, want one warning about on_unauthenticated", ps)
	}
}

// TestValidateRouteTokens pins the problems check-config reports for a
// route's token type, resource and scopes.
func TestValidateRouteTokens(t *testing.T) {
	tests := []struct {
		name  string
		route Route
		want  string // "" for none
	}{
		{"user on auth none", Route{Token: TokenUser, Auth: AuthNone}, "[0].token: user sends a user's token, but auth none never reads the session (use auth required or optional)"},
		{"exchange on auth none", Route{Token: TokenExchange, Auth: AuthNone, Resource: "https://x"}, "[0].token: exchange sends a user's token, but auth none never reads the session (use auth required or optional)"},
		{"user_or_none required", Route{Token: TokenUserOrNone, Auth: AuthRequired}, "[0].token: user_or_none says what to send without a session, but auth required never forwards a request without one (use auth optional, or token user)"},
		{"user_or_client required", Route{Token: TokenUserOrClient, Auth: AuthRequired}, "[0].token: user_or_client says what to send without a session, but auth required never forwards a request without one (use auth optional, or token user)"},
		{"exchange without audience", Route{Token: TokenExchange}, "[0].resource: required with token exchange (the audience to exchange the user's token for), or scopes"},
		{"none with resource", Route{Token: TokenNone, Resource: "https://x"}, "[0].token: none, but the route names a resource or scopes for its token"},
		{"relative resource", Route{Resource: "/api"}, "[0].resource: must be an absolute URI without a fragment (RFC 8707 §2)"},
		{"resource with fragment", Route{Resource: "https://api.example#x"}, "[0].resource: must be an absolute URI without a fragment (RFC 8707 §2)"},
		{"bad scope", Route{Scopes: []string{"a b"}}, "[0].scopes[0]: must be a scope token (no spaces, quotes or backslashes)"},
		{"unknown type", Route{Token: "service"}, `[0].token: must be one of user, user_or_none, client, user_or_client, exchange, none (got "service")`},
		{"client gated by a session", Route{Token: TokenClient, Auth: AuthRequired, Resource: "urn:svc"}, ""},
		{"client", Route{Token: TokenClient}, ""},
		{"user with a resource", Route{Resource: "https://api.example", Scopes: []string{"read"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.route.Path, tt.route.Upstream = "/x/", "http://up.example"
			var got []string
			for _, p := range ValidateRoutes([]Route{tt.route}, "/.auth", false) {
				got = append(got, p.String())
			}
			want := []string{}
			if tt.want != "" {
				want = []string{tt.want}
			}
			if len(got) != len(want) || (len(got) == 1 && got[0] != want[0]) {
				t.Errorf("problems = %q, want %q", got, want)
			}
		})
	}
}
