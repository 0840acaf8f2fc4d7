package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/problem"
	"github.com/tokenrelay/tokenrelay/internal/valid"
	"github.com/tokenrelay/tokenrelay/proxy"
	"github.com/tokenrelay/tokenrelay/session"
)

// Validate checks a configuration with defaults already set (Load calls
// SetDefaults first). It reports every problem at once, as Problems, each
// with its key path; warnings do not make it fail.
func (c *Config) Validate() (Warnings, error) {
	v := validator{}
	v.top(c)
	v.tls(&c.TLS)
	v.provider(c)
	v.session(&c.Session)
	v.under("cookie", c.Cookie.Validate())
	v.refresh(c)
	v.under("csrf", c.CSRF.Validate())
	v.under("logout", c.Logout.Validate())
	v.under("upstream", c.Upstream.Validate())
	v.forwardAuth(c)
	v.routes(c)
	v.under("policy", c.Policy.Validate())
	v.assertion(c)
	v.under("error_pages", c.ErrorPages.Validate())
	v.under("admin", c.Admin.Validate())
	v.under("tracing", c.Tracing.Validate())
	return v.warnings, v.problems.err()
}

// assertion checks the assertion section, and that a route sending the
// assertion has an issuer for it (public_url).
func (v *validator) assertion(c *Config) {
	v.under("assertion", c.Assertion.Validate())
	for i, r := range c.Routes {
		if r.Identity != nil && r.Identity.Assertion && c.PublicURL == "" {
			v.add(fmt.Sprintf("routes[%d].identity.assertion", i), "needs public_url: it is the assertion's issuer (iss)")
		}
	}
}

type validator struct {
	problems Problems
	warnings Warnings
}

func (v *validator) add(path, format string, args ...any) { v.problems.add(path, format, args...) }

// under adds the problems a package's Validate found in options that sit
// at key path prefix, errors and warnings apart.
func (v *validator) under(prefix string, ps []problem.Problem) {
	for _, p := range problem.Under(prefix, ps) {
		if p.Severity == problem.Error {
			v.problems = append(v.problems, p)
		} else {
			v.warnings = append(v.warnings, p)
		}
	}
}

func (v *validator) top(c *Config) {
	v.listenAddr("listen", c.Listen)
	v.listenAddr("admin_listen", c.AdminListen)
	if c.Listen == c.AdminListen && !strings.HasSuffix(c.Listen, ":0") {
		v.add("admin_listen", "must differ from listen")
	}
	switch {
	case c.PublicURL == "":
		if c.Provider.Type != "custom" {
			v.add("public_url", "required: the redirect URI is public_url + %q", c.AuthPrefix+"/callback")
		}
	default:
		u, err := url.Parse(c.PublicURL)
		if err != nil || !valid.Secure(u) {
			v.add("public_url", "must be an https URL (http allowed only for loopback)")
		} else if u.RawQuery != "" || u.Fragment != "" || strings.Contains(c.PublicURL, "#") || u.ForceQuery {
			v.add("public_url", "must not have a query or fragment")
		} else if u.User != nil {
			v.add("public_url", "must not carry user information")
		}
	}
	if !strings.HasPrefix(c.AuthPrefix, "/") || c.AuthPrefix == "/" || strings.HasSuffix(c.AuthPrefix, "/") || !valid.CleanPath(c.AuthPrefix) {
		v.add("auth_prefix", "must be a path such as \"/.auth\" (leading slash, no trailing slash)")
	}
	v.positive("shutdown_grace", c.ShutdownGrace)
	if c.ShutdownDelay < 0 {
		v.add("shutdown_delay", "must not be negative")
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "json", "text")
}

func (v *validator) tls(t *TLSConfig) {
	if !v.oneOf("tls.mode", t.Mode, "none", "files", "acme") {
		return
	}
	switch t.Mode {
	case "files":
		if t.CertFile == "" {
			v.add("tls.cert_file", "required with tls.mode files")
		}
		if t.KeyFile == "" {
			v.add("tls.key_file", "required with tls.mode files")
		}
	case "acme":
		a := &t.ACME
		if len(a.Domains) == 0 {
			v.add("tls.acme.domains", "required with tls.mode acme")
		}
		for i, d := range a.Domains {
			path := fmt.Sprintf("tls.acme.domains[%d]", i)
			switch {
			case strings.HasPrefix(d, "*."):
				v.add(path, "wildcard names need the DNS-01 challenge, which tokenrelay does not use")
			case !validDomain(d):
				v.add(path, "must be a host name or IP address, without scheme or port")
			}
		}
		if a.Storage == "" {
			v.add("tls.acme.storage", "required with tls.mode acme (a persistent folder for certificates and keys)")
		}
		if !valid.SecureURL(a.CA) {
			v.add("tls.acme.ca", "must be an https URL (http allowed only for loopback)")
		}
		for i, ch := range a.Challenges {
			if !slices.Contains([]string{"http-01", "tls-alpn-01"}, ch) || slices.Index(a.Challenges, ch) != i {
				v.add(fmt.Sprintf("tls.acme.challenges[%d]", i), "must be http-01 or tls-alpn-01, each at most once (got %q)", ch)
			}
		}
		if a.Email != "" && !strings.Contains(a.Email, "@") {
			v.add("tls.acme.email", "must be an email address")
		}
		v.listenAddr("tls.http_listen", t.HTTPListen)
	}
}

func (v *validator) provider(c *Config) {
	v.under("provider", c.Provider.Validate())
	for i, cr := range c.Provider.Custom.Capture {
		if c.Provider.Type != idp.TypeCustom || cr.Path == "" || !strings.HasPrefix(cr.Path, "/") || !valid.CleanPath(cr.Path) {
			continue // not checked, or already refused
		}
		serving := -1
		for j, r := range c.Routes {
			if strings.HasPrefix(cr.Path, r.Path) && (serving < 0 || len(r.Path) > len(c.Routes[serving].Path)) {
				serving = j
			}
		}
		switch {
		case serving < 0:
			v.add(fmt.Sprintf("provider.custom.capture[%d].path", i), "no route serves this path")
		case c.Routes[serving].Upstream == "" && c.ForwardAuth.Enabled():
			// (Without forward-auth the route is refused for lacking one.)
			v.add(fmt.Sprintf("provider.custom.capture[%d].path", i), "routes[%d] serves it without an upstream: token capture needs tokenrelay to proxy the login", serving)
		}
	}
}

func (v *validator) session(s *SessionConfig) {
	if !v.oneOf("session.store", s.Store, "memory", "redis") {
		return
	}
	switch {
	case s.Secret.IsZero() && s.Store == "redis":
		v.add("session.secret", "required with store redis")
	case s.Secret.IsZero():
		v.warnings.add("session.secret", "not set: a random secret is generated at start, and sessions end with the process")
	case len(s.Secret.Reveal()) < session.MinSecretBytes:
		v.add("session.secret", "must be at least %d bytes", session.MinSecretBytes)
	}
	for i, p := range s.PreviousSecrets {
		if len(p.Reveal()) < session.MinSecretBytes {
			v.add(fmt.Sprintf("session.previous_secrets[%d]", i), "must be at least %d bytes", session.MinSecretBytes)
		}
	}
	v.under("session", s.LifetimeOptions.Validate())
	if s.Store == "redis" {
		v.under("session.redis", s.Redis.Validate())
	} else if !s.Redis.IsZero() {
		v.warnings.add("session.redis", "ignored with store memory")
	}
}

// refresh checks the refresh section, and that a token is refreshed ahead
// of an expiry it can reach.
func (v *validator) refresh(c *Config) {
	r := &c.Refresh
	v.under("refresh", r.RefreshOptions.Validate())
	if r.Ahead > 0 && r.Ahead >= c.Provider.AccessTokenLifetime {
		v.add("refresh.ahead", "must be below provider.access_token_lifetime (%s)", c.Provider.AccessTokenLifetime)
	}
	v.under("refresh", r.RetryOptions.Validate())
}

// routes checks the routes, against the auth prefix.
func (v *validator) routes(c *Config) {
	if len(c.Routes) == 0 {
		v.add("routes", "at least one route is required")
		return
	}
	v.under("routes", proxy.ValidateRoutes(c.Routes, c.AuthPrefix, c.ForwardAuth.Enabled()))
	for i, r := range c.Routes {
		v.routeToken(fmt.Sprintf("routes[%d]", i), r, &c.Provider)
	}
}

// routeToken checks that the provider can give a route its token: client
// credentials need a confidential client; a resource, scopes and token
// exchange need an RFC 6749 token endpoint; a user token's scopes are
// among those the login asks for (a refresh may narrow the scopes, never
// widen them).
func (v *validator) routeToken(path string, r proxy.Route, p *idp.Options) {
	switch {
	case (r.Token == proxy.TokenClient || r.Token == proxy.TokenUserOrClient) && !p.Confidential():
		v.add(path+".token", "%s needs tokenrelay's own client credentials, which a %s client cannot use (provider.auth_method %s)", r.Token, p.Type, p.AuthMethod)
	case r.Token == proxy.TokenExchange && p.Type == idp.TypeCustom:
		v.add(path+".token", "exchange needs an RFC 8693 token endpoint, which provider.type custom has not")
	case r.RefreshesTarget() && p.Type == idp.TypeCustom:
		v.add(path+".resource", "a token of its own resource or scopes needs an RFC 6749 token endpoint, which provider.type custom has not")
	case r.RefreshesTarget():
		for i, sc := range r.Scopes {
			if !slices.Contains(p.Scopes, sc) {
				v.add(fmt.Sprintf("%s.scopes[%d]", path, i), "%q is not among provider.scopes: a refresh may narrow the login's scopes, never widen them", sc)
			}
		}
	}
}

// forwardAuth checks the forward-auth section, and that its listener is
// none of the others: the verify endpoint must never share the public
// listener, where browsers would reach it.
func (v *validator) forwardAuth(c *Config) {
	v.under("forward_auth", c.ForwardAuth.Validate())
	l := c.ForwardAuth.Listen
	if l == "" || strings.HasSuffix(l, ":0") {
		return
	}
	others := []struct{ key, addr string }{{"listen", c.Listen}, {"admin_listen", c.AdminListen}}
	if c.TLS.Mode == "acme" {
		others = append(others, struct{ key, addr string }{"tls.http_listen", c.TLS.HTTPListen})
	}
	for _, other := range others {
		if sameListenAddr(l, other.addr) {
			v.add("forward_auth.listen", "must differ from %s (the verify endpoint's answers carry access tokens: browsers must not reach it)", other.key)
		}
	}
}

// sameListenAddr reports whether two listen addresses would bind the same
// port on overlapping addresses (":8080" and "127.0.0.1:8080" do).
func sameListenAddr(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb {
		return false
	}
	return ha == hb || ha == "" || hb == "" || ha == "0.0.0.0" || hb == "0.0.0.0" || ha == "::" || hb == "::"
}

// CheckProvider reports where the configuration conflicts with the
// provider's discovery document m: the provider's own options
// (idp.Options.CheckMetadata) and the grants the routes' tokens need.
// `tokenrelay check-config --discover` prints it; a replica refuses to
// start on its errors.
func (c *Config) CheckProvider(m *idp.Metadata) Problems {
	var ps Problems
	for _, p := range problem.Under("provider", c.Provider.CheckMetadata(m)) {
		ps = append(ps, p)
	}
	for i, r := range c.Routes {
		var grant string
		switch r.Token {
		case proxy.TokenClient, proxy.TokenUserOrClient:
			grant = idp.GrantClientCredentials
		case proxy.TokenExchange:
			grant = idp.GrantTokenExchange
		default:
			continue
		}
		if !m.SupportsGrant(grant) {
			ps.add(fmt.Sprintf("routes[%d].token", i), "%s needs the %s grant, which the provider does not list (grant_types_supported: %s)", r.Token, grant, strings.Join(m.GrantTypes, ", "))
		}
	}
	return ps
}

// oneOf checks that value is one of allowed and reports whether it is.
func (v *validator) oneOf(path, value string, allowed ...string) bool {
	if slices.Contains(allowed, value) {
		return true
	}
	v.add(path, "must be one of %s (got %q)", strings.Join(allowed, ", "), value)
	return false
}

func (v *validator) positive(path string, d time.Duration) {
	if d <= 0 {
		v.add(path, "must be a positive duration")
	}
}

func (v *validator) listenAddr(path, addr string) {
	if _, port, err := net.SplitHostPort(addr); err != nil || !valid.Port(port) {
		v.add(path, "must be host:port or :port (got %q)", addr)
	}
}

// validDomain accepts a DNS name or an IP address: no scheme, port, path or
// spaces.
func validDomain(d string) bool {
	if _, err := netip.ParseAddr(d); err == nil {
		return true
	}
	if d == "" || len(d) > 253 || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for i := range len(label) {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
