package proxy

import (
	"cmp"
	"fmt"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/tokenrelay/tokenrelay/identity"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/problem"
	"github.com/tokenrelay/tokenrelay/internal/valid"
	"github.com/tokenrelay/tokenrelay/policy"
)

// AuthMode says what a route needs from the session. The empty value is
// AuthRequired, so a route that forgets to say is protected.
type AuthMode string

const (
	// AuthRequired routes need a session: without one the request is
	// answered 401 or redirected to login, never proxied.
	AuthRequired AuthMode = "required"
	// AuthOptional routes get the access token when there is a session and
	// are proxied without one otherwise.
	AuthOptional AuthMode = "optional"
	// AuthNone routes never get a token; the client's own Authorization
	// header passes through untouched.
	AuthNone AuthMode = "none"
)

// UnauthMode says how a request without a session is answered on an
// AuthRequired route. The empty value is UnauthAuto.
type UnauthMode string

const (
	// UnauthAuto redirects top-level navigations to login and answers
	// 401 JSON to everything else (fetch, XHR, API clients).
	UnauthAuto UnauthMode = "auto"
	// UnauthRedirect always redirects to login.
	UnauthRedirect UnauthMode = "redirect"
	// UnauthStatus always answers 401 JSON.
	UnauthStatus UnauthMode = "status"
)

// TokenType says which access token a route sends upstream.
type TokenType string

const (
	// TokenUser sends the session's token (of the route's resource and
	// scopes when it names them); the default on session routes.
	TokenUser TokenType = "user"
	// TokenUserOrNone sends the session's token when there is a session,
	// and none otherwise (auth optional).
	TokenUserOrNone TokenType = "user_or_none"
	// TokenClient sends tokenrelay's own client-credentials token.
	TokenClient TokenType = "client"
	// TokenUserOrClient sends the session's token when there is a
	// session, and tokenrelay's own otherwise (auth optional).
	TokenUserOrClient TokenType = "user_or_client"
	// TokenExchange sends a token obtained by exchanging the session's
	// token for one of the route's resource (RFC 8693).
	TokenExchange TokenType = "exchange"
	// TokenNone sends no token; the default with auth none.
	TokenNone TokenType = "none"
)

// Route maps a path prefix to an upstream (key `routes[n]`).
type Route struct {
	// Metric label of the route (default from the path: `/api/` → `api`,
	// `/` → `root`; `auth` and `unmatched` are reserved, so `/auth/` →
	// `auth_route`).
	//
	// It labels metrics and logs and must be unique.
	Name string `yaml:"name"`
	// Path prefix, matched by segment on the decoded request path; the
	// longest prefix wins. A request that spells the matched prefix with
	// escapes (`/api%2Fpublic/x` against `/api/public/`) is refused with
	// 400, see [security](security.md#routing-and-paths).
	//
	// "/api/" serves "/api/x"; "/api" serves "/api" and "/api/x" but not
	// "/apix"; "/" serves everything no longer prefix claims.
	Path string `yaml:"path"`
	// http(s) URL requests go to (required without forward_auth.listen).
	// Only configured upstreams are reachable.
	//
	// Scheme, host and an optional base path; nothing in a request can
	// select another host. With forward_auth.listen, a route without one
	// is served only to the ingress's verify requests (its paths are 404
	// on the public listener).
	Upstream string `yaml:"upstream"`
	// `required` (no session → 401 or login redirect), `optional` (token
	// when logged in) or `none`.
	Auth AuthMode `yaml:"auth"`
	// `auto` (redirect top-level navigations, 401 JSON for API calls),
	// `redirect` or `status`.
	OnUnauthenticated UnauthMode `yaml:"on_unauthenticated"`
	// Require the CSRF header on unsafe methods (default true on session
	// routes).
	//
	// The origin check applies to session routes regardless. Nil (the key
	// left out) means true unless Auth is none.
	CSRFHeader *bool `yaml:"csrf_header"`
	// Remove `path` from the forwarded path; the upstream gets it as
	// `X-Forwarded-Prefix`.
	StripPrefix bool `yaml:"strip_prefix"`
	// Forward the client's Host header instead of the upstream's
	// (`X-Forwarded-Host` is still `public_url`'s host).
	PassHost bool `yaml:"pass_host"`
	// The token sent upstream: `user` (the session's), `user_or_none`,
	// `client` (tokenrelay's own, client credentials), `user_or_client`,
	// `exchange` (RFC 8693 exchange of the user's token for one of
	// `resource`) or `none`. Default `user`, or `none` with auth none;
	// see [tokens](tokens.md).
	//
	// It also gives auth's default: required for user and exchange,
	// optional for user_or_none and user_or_client, none for client.
	Token TokenType `yaml:"token"`
	// RFC 8707 resource indicator (an absolute URI) the route's token is
	// for: its audience. Routes with different resources get different
	// tokens, and one route's token never reaches another's upstream.
	Resource string `yaml:"resource"`
	// Scopes of the route's token; for user tokens a subset of
	// provider.scopes.
	Scopes []string `yaml:"scopes"`
	// Who may use the route beyond having a session (`auth: required`
	// only): the keys of the top-level `policy` and `mode`, see
	// [policy](policy.md).
	//
	// The route's rules extend the top-level policy (both must pass)
	// unless mode is replace.
	Policy policy.RouteOptions `yaml:"policy"`
	// What the upstream learns about the user: claim headers, the ID
	// token, the signed assertion (see [policy](policy.md#identity-for-the-upstream)).
	// Left out: nothing; `{}`: the four default `X-Forwarded-*` headers.
	//
	// Client-sent identity headers are removed on every route, with or
	// without this key.
	Identity *identity.Options `yaml:"identity"`
}

// WithDefaults returns r with every default filled in: a name derived from
// the path, auth required, on_unauthenticated auto, and the CSRF header
// required on session routes.
func (r Route) WithDefaults() Route {
	if r.Name == "" {
		r.Name = routeName(r.Path)
	}
	if r.Auth == "" {
		r.Auth = r.Token.defaultAuth()
	}
	if r.Token == "" {
		r.Token = TokenUser
		if r.Auth == AuthNone {
			r.Token = TokenNone
		}
	}
	if r.OnUnauthenticated == "" {
		r.OnUnauthenticated = UnauthAuto
	}
	if r.CSRFHeader == nil {
		r.CSRFHeader = new(r.Auth != AuthNone)
	}
	return r
}

// defaultAuth is the auth a route of token type t needs when it does not
// say: required, but optional for the types that work without a session
// and none for tokenrelay's own token.
func (t TokenType) defaultAuth() AuthMode {
	switch t {
	case TokenUserOrNone, TokenUserOrClient:
		return AuthOptional
	case TokenClient:
		return AuthNone
	}
	return AuthRequired
}

// usesSession reports whether the token type sends a user's token.
func (t TokenType) usesSession() bool {
	switch t {
	case TokenUser, TokenUserOrNone, TokenUserOrClient, TokenExchange:
		return true
	}
	return false
}

// RefreshesTarget reports whether the route's token is a session token
// of its own target, obtained with the session's refresh token (so its
// resource must be asked for at login).
func (r Route) RefreshesTarget() bool {
	switch r.Token {
	case TokenUser, TokenUserOrNone, TokenUserOrClient, "":
		return r.Resource != "" || len(r.Scopes) > 0
	}
	return false
}

// routeName derives a route's metric name from its path: "/api/" -> "api",
// "/api/v1/" -> "api_v1", "/" -> "root". Characters outside [a-z0-9] become
// "_". A name that would be one of the proxy's reserved labels ("auth" and
// "unmatched", e.g. for a custom backend's "/auth/" route) gets the suffix
// "_route".
func routeName(path string) string {
	var b strings.Builder
	underscore := false
	for _, r := range strings.ToLower(strings.Trim(path, "/")) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			underscore = false
		} else if !underscore && b.Len() > 0 {
			b.WriteByte('_')
			underscore = true
		}
	}
	name := strings.TrimRight(b.String(), "_")
	switch {
	case name == "":
		return "root"
	case reservedLabel(name):
		return name + "_route"
	}
	return name
}

// ValidateRoutes reports every problem in routes, after defaults, with
// paths relative to the list ("[1].upstream"): each route's own, paths and
// names used twice, and paths under authPrefix. With forwardAuth (the
// verify endpoint is on), a route may have no upstream.
func ValidateRoutes(routes []Route, authPrefix string, forwardAuth bool) []problem.Problem {
	var ps problem.List
	paths := map[string]int{}
	names := map[string]int{}
	for i, r := range routes {
		r = r.WithDefaults()
		base := fmt.Sprintf("[%d]", i)
		ps.Append(base, r.validatePath(authPrefix))
		if j, dup := paths[r.Path]; dup {
			ps.Add(base+".path", "duplicates routes[%d].path", j)
		} else {
			paths[r.Path] = i
		}
		switch j, dup := names[r.Name]; {
		case !validRouteName(r.Name):
			ps.Add(base+".name", "must match [a-z0-9_]+")
		case reservedLabel(r.Name):
			ps.Add(base+".name", "%q is reserved for tokenrelay's own metrics (choose another name)", r.Name)
		case dup:
			ps.Add(base+".name", "%q duplicates routes[%d].name (set a name explicitly)", r.Name, j)
		default:
			names[r.Name] = i
		}
		ps.Append(base, r.validateTarget(forwardAuth))
		ps.Append(base, r.validateIdentity())
	}
	return ps
}

// validateIdentity checks a route's policy and identity, with paths
// relative to the route. A policy needs a required session: on an optional
// route a refused user would simply go on without the cookie, so the
// policy would protect nothing. Identity needs a session at all.
func (r Route) validateIdentity() []problem.Problem {
	var ps problem.List
	ps.Append("policy", r.Policy.Validate())
	if r.Auth != AuthRequired && !r.Policy.IsZero() {
		ps.Add("policy", "applies only to auth: required routes (on an %s route a refused user would go on without a session)", r.Auth)
	}
	if r.Identity != nil {
		ps.Append("identity", r.Identity.Validate())
		if r.Auth == AuthNone {
			ps.Add("identity", "has nothing to tell with auth none: there is no session")
		}
	}
	return ps
}

// validatePath checks a route's path, with paths relative to the route.
func (r Route) validatePath(authPrefix string) []problem.Problem {
	var ps problem.List
	switch {
	case !strings.HasPrefix(r.Path, "/") || !valid.CleanPath(r.Path):
		ps.Add("path", "must be a path starting with \"/\"")
	case hasDotSegment(r.Path) || strings.Contains(r.Path, "//"):
		ps.Add("path", "must not hold \".\" or \"..\" segments or \"//\"")
	case pathMatches(authPrefix, r.Path):
		ps.Add("path", "must not be under auth_prefix %q", authPrefix)
	}
	return ps
}

// validateTarget checks a route's upstream and modes, with paths relative
// to the route. Without forward-auth the upstream is required.
func (r Route) validateTarget(forwardAuth bool) []problem.Problem {
	var ps problem.List
	switch u, err := url.Parse(r.Upstream); {
	case r.Upstream == "" && forwardAuth:
		// Served only to the ingress's verify requests.
	case r.Upstream == "":
		ps.Add("upstream", "required (a route without one is for forward-auth, which forward_auth.listen turns on)")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "":
		ps.Add("upstream", "must be an http or https URL")
	case u.User != nil:
		ps.Add("upstream", "must not carry credentials")
	}
	oneOf(&ps, "auth", string(r.Auth), string(AuthRequired), string(AuthOptional), string(AuthNone))
	oneOf(&ps, "on_unauthenticated", string(r.OnUnauthenticated), string(UnauthAuto), string(UnauthRedirect), string(UnauthStatus))
	if r.Auth == AuthNone && r.OnUnauthenticated != UnauthAuto {
		ps.Warn("on_unauthenticated", "has no effect with auth none")
	}
	r.validateToken(&ps)
	return ps
}

// validateToken checks a route's token type against its auth mode, and
// its resource and scopes.
func (r Route) validateToken(ps *problem.List) {
	if !oneOf(ps, "token", string(r.Token), string(TokenUser), string(TokenUserOrNone), string(TokenClient), string(TokenUserOrClient), string(TokenExchange), string(TokenNone)) {
		return
	}
	switch {
	case r.Token.usesSession() && r.Auth == AuthNone:
		ps.Add("token", "%s sends a user's token, but auth none never reads the session (use auth required or optional)", r.Token)
	case (r.Token == TokenUserOrNone || r.Token == TokenUserOrClient) && r.Auth == AuthRequired:
		ps.Add("token", "%s says what to send without a session, but auth required never forwards a request without one (use auth optional, or token user)", r.Token)
	case r.Token == TokenExchange && r.Resource == "" && len(r.Scopes) == 0:
		ps.Add("resource", "required with token exchange (the audience to exchange the user's token for), or scopes")
	case r.Token == TokenNone && (r.Resource != "" || len(r.Scopes) > 0):
		ps.Add("token", "none, but the route names a resource or scopes for its token")
	}
	if r.Resource != "" {
		if u, err := url.Parse(r.Resource); err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(r.Resource, " ") {
			ps.Add("resource", "must be an absolute URI without a fragment (RFC 8707 §2)")
		}
	}
	for i, sc := range r.Scopes {
		if sc == "" || strings.ContainsAny(sc, " \"\\") {
			ps.Add(fmt.Sprintf("scopes[%d]", i), "must be a scope token (no spaces, quotes or backslashes)")
		}
	}
}

// reservedLabel reports whether name is a metric label the proxy uses for
// its own requests (the auth endpoints and requests no route serves).
func reservedLabel(name string) bool { return name == labelAuth || name == labelUnmatched }

func validRouteName(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
	})
}

// oneOf checks that value is one of allowed and reports whether it is.
func oneOf(ps *problem.List, path, value string, allowed ...string) bool {
	if slices.Contains(allowed, value) {
		return true
	}
	ps.Add(path, "must be one of %s (got %q)", strings.Join(allowed, ", "), value)
	return false
}

// Reserved route labels.
const (
	labelAuth      = "auth"
	labelUnmatched = "unmatched"
)

// route is a configured Route, defaults applied, with what serving it
// needs.
type route struct {
	Route
	// target is Upstream, parsed; nil for a route served only to
	// forward-auth verify requests, which has no upstream.
	target *url.URL
	// token is the target of the route's token (resource and scopes).
	token idp.Target
	// csrfHeader is CSRFHeader, resolved.
	csrfHeader bool
	proxy      *httputil.ReverseProxy
	metrics    *routeMetrics
	// escapedPath is Path as it is spelled in an escaped request path.
	escapedPath string
	// forwardedPrefix is the X-Forwarded-Prefix value (nil unless the
	// route strips its prefix); shared by requests, never written to.
	forwardedPrefix []string
	// cookieWarned is set once a warning said that this route's upstream
	// tried to set one of tokenrelay's cookies.
	cookieWarned atomic.Bool
	// nonces is the upstream's last DPoP nonce.
	nonces dpopNonces

	// policy is the route's compiled policy (the default one and its
	// own); nil when the route has none to apply.
	policy *policy.Policy
	// identity tells the upstream who the user is; nil without an
	// identity key.
	identity *identity.Route
	// withClaims: the session is read with its claims (for the policy or
	// the identity); a plain route skips decoding them.
	withClaims bool
	// tooLargeWarned is set once a warning said that an identity header
	// of this route was left out for its size.
	tooLargeWarned atomic.Bool
}

// newRoute prepares a route that passed ValidateRoutes, defaults applied.
func newRoute(r Route, m *routeMetrics) *route {
	var target *url.URL
	if r.Upstream != "" {
		target, _ = url.Parse(r.Upstream) // ValidateRoutes parsed it
	}
	return &route{
		Route:           r,
		target:          target,
		token:           idp.NewTarget(r.Resource, r.Scopes),
		csrfHeader:      *r.CSRFHeader,
		metrics:         m,
		escapedPath:     (&url.URL{Path: r.Path}).EscapedPath(),
		forwardedPrefix: forwardedPrefix(r),
	}
}

// matchesEscaped reports whether the request path u, as it will be
// forwarded, is under rt's prefix too. Routing is on the decoded path; a
// request whose escapes cross the prefix ("/api%2Fpublic/x" decodes into
// "/api/public/" while the upstream receives the single segment
// "api%2Fpublic"; "/%61pi/" decodes into "/api/") would be routed by one
// form and served by another, so it is refused. A path in its canonical
// form (RawPath empty, nearly every request) matches by construction.
// Hex digits of escapes may be in either case; the bytes outside escapes
// are those the decoded path matched, so comparing without regard to case
// adds nothing else.
func (rt *route) matchesEscaped(u *url.URL) bool {
	if u.RawPath == "" {
		return true
	}
	p, prefix := u.EscapedPath(), rt.escapedPath
	if len(p) < len(prefix) || !strings.EqualFold(p[:len(prefix)], prefix) {
		return false
	}
	// The segment boundary, as in pathMatches.
	return strings.HasSuffix(prefix, "/") || len(p) == len(prefix) || p[len(prefix)] == '/'
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
// escaped form (RawPath) consistent with the decoded one. escaped is the
// prefix's escaped spelling, which RawPath starts with (matchesEscaped
// checked it). The result always starts with "/".
func stripPrefix(u *url.URL, prefix, escaped string) {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return
	}
	u.Path = ensureLeadingSlash(strings.TrimPrefix(u.Path, prefix))
	if u.RawPath != "" {
		u.RawPath = ensureLeadingSlash(strings.TrimPrefix(u.RawPath, strings.TrimSuffix(escaped, "/")))
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
// route here and reach the API once the upstream cleaned it. A segment is
// read as servlet containers (Tomcat, Jetty) read it, without its
// ";parameters", so "/public/..;/api/x" is refused too.
func hasDotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		seg, _, _ = strings.Cut(seg, ";")
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
