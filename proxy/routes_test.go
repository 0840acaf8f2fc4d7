package proxy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
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
	}
	for _, tt := range tests {
		u := &url.URL{Path: tt.path, RawPath: tt.rawPath}
		stripPrefix(u, tt.prefix)
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
		{Name: "api", Path: "/api/", Upstream: api.url(), Auth: AuthNone, StripPrefix: true},
		{Name: "legacy", Path: "/legacy", Upstream: baseURL, Auth: AuthNone},
		{Name: "root", Path: "/", Upstream: web.url(), Auth: AuthNone},
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
	e := newPxEnv(t, Options{Routes: []Route{{Name: "api", Path: "/api/", Upstream: api.url(), Auth: AuthNone}}})

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
	e := newPxEnv(t, Options{Routes: []Route{{Name: "api", Path: "/api/", Upstream: api.url(), Auth: AuthNone}}})
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

func TestNewRejectsBadRoutes(t *testing.T) {
	up := mustURL(t, "http://127.0.0.1:1")
	tests := []struct {
		name   string
		routes []Route
		want   string
	}{
		{"no name", []Route{{Path: "/", Upstream: up}}, "name is required"},
		{"reserved", []Route{{Name: "auth", Path: "/", Upstream: up}}, "reserved"},
		{"relative path", []Route{{Name: "a", Path: "api/", Upstream: up}}, "must start with /"},
		{"dot path", []Route{{Name: "a", Path: "/a/../b/", Upstream: up}}, "not clean"},
		{"no upstream", []Route{{Name: "a", Path: "/"}}, "upstream is required"},
		{"bad scheme", []Route{{Name: "a", Path: "/", Upstream: mustURL(t, "ftp://x")}}, "scheme"},
		{"no host", []Route{{Name: "a", Path: "/", Upstream: mustURL(t, "http:///x")}}, "no host"},
		{"credentials", []Route{{Name: "a", Path: "/", Upstream: mustURL(t, "http://u:p@x")}}, "credentials"},
		{"under auth prefix", []Route{{Name: "a", Path: "/.auth/x", Upstream: up}}, "auth prefix"},
		{"duplicate name", []Route{{Name: "a", Path: "/", Upstream: up}, {Name: "a", Path: "/b", Upstream: up}}, "twice"},
		{"duplicate path", []Route{{Name: "a", Path: "/", Upstream: up}, {Name: "b", Path: "/", Upstream: up}}, "twice"},
		{"bad auth mode", []Route{{Name: "a", Path: "/", Upstream: up, Auth: AuthMode(7)}}, "auth mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{Sessions: newPxSessions(), Provider: &pxProvider{}, Routes: tt.routes})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := New(Options{Provider: &pxProvider{}}); err == nil {
		t.Error("New without Sessions: no error")
	}
}

func TestParseModes(t *testing.T) {
	auth := map[string]AuthMode{"": AuthRequired, "required": AuthRequired, "optional": AuthOptional, "none": AuthNone}
	for in, want := range auth {
		if got, err := ParseAuthMode(in); err != nil || got != want {
			t.Errorf("ParseAuthMode(%q) = %v, %v, want %v", in, got, err, want)
		}
		if in != "" && want.String() != in {
			t.Errorf("%v.String() = %q, want %q", want, want.String(), in)
		}
	}
	unauth := map[string]UnauthMode{"": UnauthAuto, "auto": UnauthAuto, "redirect": UnauthRedirect, "status": UnauthStatus}
	for in, want := range unauth {
		if got, err := ParseUnauthMode(in); err != nil || got != want {
			t.Errorf("ParseUnauthMode(%q) = %v, %v, want %v", in, got, err, want)
		}
		if in != "" && want.String() != in {
			t.Errorf("%v.String() = %q, want %q", want, want.String(), in)
		}
	}
	for _, bad := range []string{"Required", "yes", "login"} {
		if _, err := ParseAuthMode(bad); err == nil {
			t.Errorf("ParseAuthMode(%q): no error", bad)
		}
		if _, err := ParseUnauthMode(bad); err == nil {
			t.Errorf("ParseUnauthMode(%q): no error", bad)
		}
	}
}
