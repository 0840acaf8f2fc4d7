package proxy

import (
	"cmp"
	"fmt"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
)

// AuthMode says what a route needs from the session. The zero value is
// AuthRequired, so a route that forgets to say is protected.
type AuthMode int

const (
	// AuthRequired routes need a session: without one the request is
	// answered 401 or redirected to login, never proxied.
	AuthRequired AuthMode = iota
	// AuthOptional routes get the access token when there is a session and
	// are proxied without one otherwise.
	AuthOptional
	// AuthNone routes never get a token; the client's own Authorization
	// header passes through untouched.
	AuthNone
)

func (m AuthMode) String() string {
	switch m {
	case AuthRequired:
		return "required"
	case AuthOptional:
		return "optional"
	case AuthNone:
		return "none"
	}
	return fmt.Sprintf("AuthMode(%d)", int(m))
}

// ParseAuthMode reads a configuration value: "required" (or ""),
// "optional" or "none".
func ParseAuthMode(s string) (AuthMode, error) {
	switch s {
	case "", "required":
		return AuthRequired, nil
	case "optional":
		return AuthOptional, nil
	case "none":
		return AuthNone, nil
	}
	return 0, fmt.Errorf("proxy: unknown auth mode %q (want required, optional or none)", s)
}

// UnauthMode says how a request without a session is answered on an
// AuthRequired route.
type UnauthMode int

const (
	// UnauthAuto redirects top-level navigations to login and answers
	// 401 JSON to everything else (fetch, XHR, API clients).
	UnauthAuto UnauthMode = iota
	// UnauthRedirect always redirects to login.
	UnauthRedirect
	// UnauthStatus always answers 401 JSON.
	UnauthStatus
)

func (m UnauthMode) String() string {
	switch m {
	case UnauthAuto:
		return "auto"
	case UnauthRedirect:
		return "redirect"
	case UnauthStatus:
		return "status"
	}
	return fmt.Sprintf("UnauthMode(%d)", int(m))
}

// ParseUnauthMode reads a configuration value: "auto" (or ""), "redirect"
// or "status".
func ParseUnauthMode(s string) (UnauthMode, error) {
	switch s {
	case "", "auto":
		return UnauthAuto, nil
	case "redirect":
		return UnauthRedirect, nil
	case "status":
		return UnauthStatus, nil
	}
	return 0, fmt.Errorf("proxy: unknown on_unauthenticated mode %q (want auto, redirect or status)", s)
}

// Route maps a path prefix to an upstream.
type Route struct {
	// Name labels metrics and logs; it must be unique and must not be one
	// of the reserved labels "auth" and "unmatched".
	Name string
	// Path is the prefix this route serves, matched segment by segment:
	// "/api/" serves "/api/x"; "/api" serves "/api" and "/api/x" but not
	// "/apix"; "/" serves everything no longer prefix claims.
	Path string
	// Upstream is where requests go (scheme, host and an optional base
	// path). Nothing in a request can select another host.
	Upstream          *url.URL
	Auth              AuthMode
	OnUnauthenticated UnauthMode
	// CSRFHeader requires the CSRF header on unsafe methods (the origin
	// check applies to AuthRequired and AuthOptional routes regardless).
	CSRFHeader bool
	// StripPrefix removes Path from the forwarded path.
	StripPrefix bool
	// PassHost forwards the client's Host header instead of the
	// upstream's host.
	PassHost bool
}

// Reserved route labels.
const (
	labelAuth      = "auth"
	labelUnmatched = "unmatched"
)

// route is a configured Route with what serving it needs.
type route struct {
	Route
	proxy   *httputil.ReverseProxy
	metrics *routeMetrics
}

// routeTable finds the route of a path. It is read-only after New and safe
// for concurrent use.
type routeTable struct {
	// routes is ordered by decreasing Path length, so the first match is
	// the longest prefix.
	routes []*route
}

func newRouteTable(routes []*route) *routeTable {
	sorted := slices.Clone(routes)
	slices.SortStableFunc(sorted, func(a, b *route) int { return cmp.Compare(len(b.Path), len(a.Path)) })
	return &routeTable{routes: sorted}
}

// match returns the route with the longest prefix matching p, or nil.
func (t *routeTable) match(p string) *route {
	for _, rt := range t.routes {
		if pathMatches(rt.Path, p) {
			return rt
		}
	}
	return nil
}

// pathMatches reports whether prefix serves p, segment by segment.
func pathMatches(prefix, p string) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	if strings.HasSuffix(prefix, "/") || len(p) == len(prefix) {
		return true
	}
	return p[len(prefix)] == '/'
}

// stripPrefix removes a route's prefix from a forwarded URL, keeping the
// escaped form (RawPath) consistent with the decoded one. The result always
// starts with "/".
func stripPrefix(u *url.URL, prefix string) {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return
	}
	u.Path = ensureLeadingSlash(strings.TrimPrefix(u.Path, prefix))
	if u.RawPath != "" {
		// Route paths are plain: their escaped form is themselves, so the
		// escaped path starts with the same bytes when it matched.
		u.RawPath = ensureLeadingSlash(strings.TrimPrefix(u.RawPath, prefix))
	}
}

func ensureLeadingSlash(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "/" + p
	}
	return p
}

// hasDotSegment reports whether p holds a "." or ".." segment. Such paths
// are refused rather than routed: "/public/../api/x" would match the public
// route here and reach the API once the upstream cleaned it.
func hasDotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// validateRoute checks one route of the configuration.
func validateRoute(r Route, authPrefix string) error {
	switch {
	case r.Name == "":
		return fmt.Errorf("route %q: name is required", r.Path)
	case r.Name == labelAuth || r.Name == labelUnmatched:
		return fmt.Errorf("route %q: name %q is reserved", r.Path, r.Name)
	case !strings.HasPrefix(r.Path, "/"):
		return fmt.Errorf("route %q: path must start with /", r.Name)
	case hasDotSegment(r.Path) || strings.Contains(r.Path, "//"):
		return fmt.Errorf("route %q: path %q is not clean", r.Name, r.Path)
	case r.Upstream == nil:
		return fmt.Errorf("route %q: upstream is required", r.Name)
	case r.Upstream.Scheme != "http" && r.Upstream.Scheme != "https":
		return fmt.Errorf("route %q: upstream scheme must be http or https", r.Name)
	case r.Upstream.Host == "":
		return fmt.Errorf("route %q: upstream has no host", r.Name)
	case r.Upstream.User != nil:
		return fmt.Errorf("route %q: upstream must not carry credentials", r.Name)
	case r.Auth < AuthRequired || r.Auth > AuthNone:
		return fmt.Errorf("route %q: unknown auth mode %v", r.Name, r.Auth)
	case r.OnUnauthenticated < UnauthAuto || r.OnUnauthenticated > UnauthStatus:
		return fmt.Errorf("route %q: unknown on_unauthenticated mode %v", r.Name, r.OnUnauthenticated)
	case pathMatches(authPrefix, r.Path):
		return fmt.Errorf("route %q: path %q is inside the auth prefix %q", r.Name, r.Path, authPrefix)
	}
	return nil
}
