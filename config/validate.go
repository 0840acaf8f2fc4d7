package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MinSecretBytes is the shortest server secret accepted.
const MinSecretBytes = 32

// Validate checks a configuration with defaults already set (Load calls
// SetDefaults first). It reports every problem at once, as Problems, each
// with its key path; warnings do not make it fail.
func (c *Config) Validate() (Warnings, error) {
	v := validator{}
	v.top(c)
	v.tls(&c.TLS)
	v.provider(c)
	v.session(&c.Session)
	v.cookie(&c.Cookie)
	v.refresh(c)
	v.csrf(&c.CSRF)
	if c.Logout.PostLogoutRedirectURI != "" {
		v.absoluteURL("logout.post_logout_redirect_uri", c.Logout.PostLogoutRedirectURI)
	}
	v.upstream(&c.Upstream)
	v.routes(c)
	return v.warnings, v.problems.err()
}

type validator struct {
	problems Problems
	warnings Warnings
}

func (v *validator) add(path, format string, args ...any) { v.problems.add(path, format, args...) }

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
		if err != nil || !secureURL(u) {
			v.add("public_url", "must be an https URL (http allowed only for loopback)")
		} else if u.RawQuery != "" || u.Fragment != "" || strings.Contains(c.PublicURL, "#") || u.ForceQuery {
			v.add("public_url", "must not have a query or fragment")
		} else if u.User != nil {
			v.add("public_url", "must not carry user information")
		}
	}
	if !strings.HasPrefix(c.AuthPrefix, "/") || c.AuthPrefix == "/" || strings.HasSuffix(c.AuthPrefix, "/") || !cleanPath(c.AuthPrefix) {
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
		if u, err := url.Parse(a.CA); err != nil || !secureURL(u) {
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
	p := &c.Provider
	if !v.oneOf("provider.type", p.Type, "oidc", "oauth2", "custom") {
		return
	}
	switch p.Type {
	case "oidc":
		if p.Issuer == "" {
			v.add("provider.issuer", "required with provider.type oidc")
		} else {
			v.secureURL("provider.issuer", p.Issuer)
		}
		if !slices.Contains(p.Scopes, "openid") {
			v.add("provider.scopes", "must include openid with provider.type oidc")
		}
		// Google asks for a refresh token with access_type=offline
		// instead of the offline_access scope.
		if !slices.Contains(p.Scopes, "offline_access") && p.AuthParams["access_type"] != "offline" {
			v.warnings.add("provider.scopes", "offline_access is missing: most providers then issue no refresh token, and sessions end when the access token expires")
		}
	case "oauth2":
		if p.AuthorizationEndpoint == "" {
			v.add("provider.authorization_endpoint", "required with provider.type oauth2")
		}
		if p.TokenEndpoint == "" {
			v.add("provider.token_endpoint", "required with provider.type oauth2")
		}
	case "custom":
		if p.TokenEndpoint == "" {
			v.add("provider.token_endpoint", "required with provider.type custom (the refresh endpoint)")
		}
		v.custom(&p.Custom, c.Routes)
	}
	if p.ClientID == "" && p.Type != "custom" {
		v.add("provider.client_id", "required with provider.type %s", p.Type)
	}
	endpoints := []struct{ path, value string }{
		{"provider.authorization_endpoint", p.AuthorizationEndpoint},
		{"provider.token_endpoint", p.TokenEndpoint},
		{"provider.revocation_endpoint", p.RevocationEndpoint},
		{"provider.end_session_endpoint", p.EndSessionEndpoint},
		{"provider.userinfo_endpoint", p.UserinfoEndpoint},
		{"provider.jwks_uri", p.JWKSURI},
	}
	for _, e := range endpoints {
		if e.value != "" {
			v.secureURL(e.path, e.value)
		}
	}
	if v.oneOf("provider.auth_method", p.AuthMethod, "client_secret_basic", "client_secret_post", "none") {
		switch {
		case p.AuthMethod == "none" && !p.ClientSecret.IsZero():
			v.add("provider.client_secret", "must not be set with provider.auth_method none")
		case p.AuthMethod != "none" && p.ClientSecret.IsZero():
			v.add("provider.client_secret", "required with provider.auth_method %s (or client_secret_file)", p.AuthMethod)
		}
	}
	v.positive("provider.access_token_lifetime", p.AccessTokenLifetime)
	v.positive("provider.timeout", p.Timeout)
	v.positiveInt("provider.max_response_bytes", p.MaxResponseBytes)
	if p.ClockSkew < 0 {
		v.add("provider.clock_skew", "must not be negative")
	}
	for i, claim := range p.Claims {
		if claim == "" {
			v.add(fmt.Sprintf("provider.claims[%d]", i), "must not be empty")
		}
	}
}

func (v *validator) custom(cu *CustomConfig, routes []Route) {
	const base = "provider.custom."
	rt := &cu.RefreshRequest
	if !validToken(rt.Method) {
		v.add(base+"refresh_request.method", "must be an HTTP method")
	}
	v.oneOf(base+"refresh_request.format", rt.Format, "json", "form")
	found := false
	for _, val := range rt.Body {
		found = found || strings.Contains(val, "{{refresh_token}}")
	}
	if !found {
		v.add(base+"refresh_request.body", "must contain \"{{refresh_token}}\" in a value")
	}
	for _, name := range sortedKeys(rt.Headers) {
		if !validToken(name) {
			v.add(base+"refresh_request.headers."+name, "is not a valid header name")
		}
	}
	for _, name := range sortedKeys(rt.HeaderFiles) {
		if !validToken(name) {
			v.add(base+"refresh_request.header_files."+name, "is not a valid header name")
		}
	}
	if cu.TokenResponse.AccessToken == "" {
		v.add(base+"token_response.access_token", "required with provider.type custom (the JSON field holding the access token)")
	}
	for i, s := range cu.DeadStatuses {
		if s < 100 || s > 599 {
			v.add(fmt.Sprintf(base+"dead_statuses[%d]", i), "must be an HTTP status code")
		}
	}
	if cu.DeadErrorField == "" && len(cu.DeadErrorValues) > 0 {
		v.add(base+"dead_error_field", "required with dead_error_values")
	}
	for i, c := range cu.Capture {
		path := fmt.Sprintf(base+"capture[%d]", i)
		if !validToken(c.Method) {
			v.add(path+".method", "must be an HTTP method")
		}
		switch {
		case c.Path == "":
			v.add(path+".path", "required")
		case !strings.HasPrefix(c.Path, "/") || !cleanPath(c.Path):
			v.add(path+".path", "must be a path starting with \"/\"")
		case !slices.ContainsFunc(routes, func(r Route) bool { return strings.HasPrefix(c.Path, r.Path) }):
			v.add(path+".path", "no route serves this path")
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
	case len(s.Secret.Reveal()) < MinSecretBytes:
		v.add("session.secret", "must be at least %d bytes", MinSecretBytes)
	}
	for i, p := range s.PreviousSecrets {
		if len(p.Reveal()) < MinSecretBytes {
			v.add(fmt.Sprintf("session.previous_secrets[%d]", i), "must be at least %d bytes", MinSecretBytes)
		}
	}
	v.positive("session.idle_timeout", s.IdleTimeout)
	v.positive("session.max_lifetime", s.MaxLifetime)
	v.positive("session.login_state_ttl", s.LoginStateTTL)
	if s.IdleTimeout > s.MaxLifetime && s.MaxLifetime > 0 {
		v.warnings.add("session.idle_timeout", "is longer than session.max_lifetime, so it never applies")
	}
	if s.Store == "redis" {
		v.redis(&s.Redis)
	} else if s.Redis.configured() {
		v.warnings.add("session.redis", "ignored with store memory")
	}
}

// configured reports whether any connection setting was given.
func (r *RedisConfig) configured() bool {
	return r.URL != "" || len(r.Addresses) > 0 || r.MasterName != "" || r.Cluster
}

func (v *validator) redis(r *RedisConfig) {
	const base = "session.redis."
	switch {
	case r.URL != "" && len(r.Addresses) > 0:
		v.add("session.redis", "set url or addresses, not both")
	case r.URL == "" && len(r.Addresses) == 0:
		v.add(base+"url", "required with store redis (or session.redis.addresses)")
	case r.URL != "":
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") || (u.Scheme != "unix" && u.Host == "") {
			v.add(base+"url", "must be a redis://, rediss:// or unix:// URL")
		}
		if r.Cluster {
			v.add(base+"cluster", "needs session.redis.addresses (the cluster nodes), not url")
		}
	}
	if r.MasterName != "" && len(r.Addresses) == 0 {
		v.add(base+"master_name", "requires session.redis.addresses (the sentinels)")
	}
	if r.MasterName != "" && r.Cluster {
		v.add(base+"cluster", "cannot be combined with master_name")
	}
	if !r.SentinelPassword.IsZero() && r.MasterName == "" {
		v.add(base+"sentinel_password", "only used with master_name")
	}
	for i, a := range r.Addresses {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || !validPort(port) {
			v.add(fmt.Sprintf(base+"addresses[%d]", i), "must be host:port")
		}
	}
	if r.DB < 0 {
		v.add(base+"db", "must not be negative")
	} else if r.DB != 0 && r.Cluster {
		v.add(base+"db", "must be 0 with a cluster")
	}
	if (r.CertFile == "") != (r.KeyFile == "") {
		v.add(base+"cert_file", "cert_file and key_file go together")
	}
	v.positive(base+"dial_timeout", r.DialTimeout)
	v.positive(base+"read_timeout", r.ReadTimeout)
	v.positive(base+"write_timeout", r.WriteTimeout)
	if r.PoolSize < 0 {
		v.add(base+"pool_size", "must not be negative")
	}
}

func (v *validator) cookie(c *CookieConfig) {
	secure := c.Secure == nil || *c.Secure
	switch {
	case !validToken(c.Name):
		v.add("cookie.name", "must be a valid cookie name")
	case !secure && (strings.HasPrefix(c.Name, "__Host-") || strings.HasPrefix(c.Name, "__Secure-")):
		v.add("cookie.name", "a __Host- or __Secure- cookie requires cookie.secure")
	}
	if !secure {
		v.warnings.add("cookie.secure", "false: the session cookie also travels over plain HTTP; use only for local development")
	}
	v.oneOf("cookie.same_site", c.SameSite, "lax", "strict")
}

func (v *validator) refresh(c *Config) {
	r := &c.Refresh
	v.positive("refresh.ahead", r.Ahead)
	v.positive("refresh.timeout", r.Timeout)
	v.positive("refresh.lock_ttl", r.LockTTL)
	v.positive("refresh.failure_backoff", r.FailureBackoff)
	if r.Timeout > 0 && r.LockTTL > 0 && r.Timeout >= r.LockTTL {
		v.add("refresh.timeout", "must be below refresh.lock_ttl (%s), so the lock cannot lapse during a refresh", r.LockTTL)
	}
	if r.Ahead > 0 && r.Ahead >= c.Provider.AccessTokenLifetime {
		v.add("refresh.ahead", "must be below provider.access_token_lifetime (%s)", c.Provider.AccessTokenLifetime)
	}
	if r.MaxRetryBody < 0 {
		v.add("refresh.max_retry_body", "must not be negative")
	}
}

func (v *validator) csrf(c *CSRFConfig) {
	if !validToken(c.Header) {
		v.add("csrf.header", "must be a valid header name")
	}
	for i, o := range c.TrustedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			v.add(fmt.Sprintf("csrf.trusted_origins[%d]", i), "must be an origin (scheme://host[:port])")
		}
	}
}

func (v *validator) upstream(u *UpstreamConfig) {
	const base = "upstream."
	if u.MaxIdleConnsPerHost < 0 {
		v.add(base+"max_idle_conns_per_host", "must not be negative")
	}
	v.positive(base+"idle_conn_timeout", u.IdleConnTimeout)
	v.positive(base+"dial_timeout", u.DialTimeout)
	v.positive(base+"response_header_timeout", u.ResponseHeaderTimeout)
	if u.MaxRequestBody < 0 {
		v.add(base+"max_request_body", "must not be negative")
	}
}

func (v *validator) routes(c *Config) {
	if len(c.Routes) == 0 {
		v.add("routes", "at least one route is required")
		return
	}
	paths := map[string]int{}
	names := map[string]int{}
	for i, r := range c.Routes {
		base := fmt.Sprintf("routes[%d]", i)
		switch {
		case !strings.HasPrefix(r.Path, "/") || !cleanPath(r.Path):
			v.add(base+".path", "must be a path starting with \"/\"")
		case r.Path == c.AuthPrefix || strings.HasPrefix(r.Path, c.AuthPrefix+"/"):
			v.add(base+".path", "must not be under auth_prefix %q", c.AuthPrefix)
		}
		if j, dup := paths[r.Path]; dup {
			v.add(base+".path", "duplicates routes[%d].path", j)
		} else {
			paths[r.Path] = i
		}
		if !validRouteName(r.Name) {
			v.add(base+".name", "must match [a-z0-9_]+")
		} else if reservedRouteName(r.Name) {
			v.add(base+".name", "%q is reserved for tokenrelay's own metrics (choose another name)", r.Name)
		} else if j, dup := names[r.Name]; dup {
			v.add(base+".name", "%q duplicates routes[%d].name (set a name explicitly)", r.Name, j)
		} else {
			names[r.Name] = i
		}
		if u, err := url.Parse(r.Upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
			v.add(base+".upstream", "must be an http or https URL")
		}
		v.oneOf(base+".auth", r.Auth, "required", "optional", "none")
		v.oneOf(base+".on_unauthenticated", r.OnUnauthenticated, "auto", "redirect", "status")
		if r.Auth == "none" && r.OnUnauthenticated != "auto" {
			v.warnings.add(base+".on_unauthenticated", "has no effect with auth none")
		}
	}
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

func (v *validator) positiveInt(path string, n int64) {
	if n <= 0 {
		v.add(path, "must be positive")
	}
}

func (v *validator) listenAddr(path, addr string) {
	if _, port, err := net.SplitHostPort(addr); err != nil || !validPort(port) {
		v.add(path, "must be host:port or :port (got %q)", addr)
	}
}

func (v *validator) secureURL(path, raw string) {
	if u, err := url.Parse(raw); err != nil || !secureURL(u) {
		v.add(path, "must be an https URL (http allowed only for loopback)")
	}
}

func (v *validator) absoluteURL(path, raw string) {
	if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.add(path, "must be an absolute http or https URL")
	}
}

// secureURL reports whether u is an absolute https URL, or http to a
// loopback host (localhost, 127.0.0.0/8, ::1).
func secureURL(u *url.URL) bool {
	if u.Host == "" || u.Opaque != "" {
		return false
	}
	return u.Scheme == "https" || (u.Scheme == "http" && IsLoopbackHost(u.Hostname()))
}

// IsLoopbackHost reports whether host (without port or brackets) is
// localhost or a loopback IP address.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535 && strconv.Itoa(n) == port
}

// cleanPath reports whether p has no query, fragment, spaces or control
// characters.
func cleanPath(p string) bool {
	return !strings.ContainsFunc(p, func(r rune) bool {
		return r == '?' || r == '#' || r <= ' ' || r == 0x7f
	})
}

// validToken reports whether s is an RFC 9110 token (header names, cookie
// names, methods).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

func validRouteName(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_')
	})
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
