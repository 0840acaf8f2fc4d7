package config

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// Defaults that other packages and the docs refer to.
const (
	// LetsEncryptCA is the default ACME directory.
	LetsEncryptCA = "https://acme-v02.api.letsencrypt.org/directory"
	// DefaultCookieName is the session cookie's name when cookie.secure is
	// on; InsecureCookieName when it is off (__Host- requires Secure).
	DefaultCookieName  = "__Host-tokenrelay"
	InsecureCookieName = "tokenrelay"
)

// SetDefaults fills every unset field with its documented default. Zero
// means unset, so "0s" for a duration with a non-zero default gets the
// default. Load calls it; tests that build a Config by hand may too. It
// is idempotent.
func (c *Config) SetDefaults() {
	setString(&c.Listen, ":8080")
	setString(&c.AdminListen, ":9090")
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	setString(&c.AuthPrefix, "/.auth")
	setDuration(&c.ShutdownGrace, 25*time.Second)

	setString(&c.Log.Level, "info")
	setString(&c.Log.Format, "json")

	setString(&c.TLS.Mode, "none")
	setString(&c.TLS.HTTPListen, ":80")
	setString(&c.TLS.ACME.CA, LetsEncryptCA)
	if len(c.TLS.ACME.Challenges) == 0 {
		c.TLS.ACME.Challenges = []string{"http-01", "tls-alpn-01"}
	}

	c.Provider.setDefaults()
	c.Session.setDefaults()

	setBool(&c.Cookie.Secure, true)
	if *c.Cookie.Secure {
		setString(&c.Cookie.Name, DefaultCookieName)
	} else {
		setString(&c.Cookie.Name, InsecureCookieName)
	}
	setString(&c.Cookie.SameSite, "lax")

	r := &c.Refresh
	setDuration(&r.Ahead, 60*time.Second)
	setDuration(&r.Timeout, 10*time.Second)
	setDuration(&r.LockTTL, r.Timeout+5*time.Second)
	setBool(&r.RetryOn401, true)
	setInt(&r.MaxRetryBody, 64<<10)
	setDuration(&r.FailureBackoff, 5*time.Second)

	setString(&c.CSRF.Header, "X-CSRF")

	if c.PublicURL != "" {
		setString(&c.Logout.PostLogoutRedirectURI, c.PublicURL+"/")
	}
	setBool(&c.Logout.Revoke, true)

	u := &c.Upstream
	setInt(&u.MaxIdleConnsPerHost, 256)
	setDuration(&u.IdleConnTimeout, 90*time.Second)
	setDuration(&u.DialTimeout, 5*time.Second)
	setDuration(&u.ResponseHeaderTimeout, 60*time.Second)

	for i := range c.Routes {
		rt := &c.Routes[i]
		setString(&rt.Name, RouteName(rt.Path))
		setString(&rt.Auth, "required")
		setString(&rt.OnUnauthenticated, "auto")
		setBool(&rt.CSRFHeader, rt.Auth != "none")
	}
}

func (p *ProviderConfig) setDefaults() {
	setString(&p.Type, "oidc")
	p.Issuer = strings.TrimRight(p.Issuer, "/")
	if p.ClientSecret.IsZero() {
		setString(&p.AuthMethod, "none")
	} else {
		setString(&p.AuthMethod, "client_secret_basic")
	}
	if p.Type == "oidc" && len(p.Scopes) == 0 {
		p.Scopes = []string{"openid", "offline_access", "profile", "email"}
	}
	setDuration(&p.AccessTokenLifetime, 5*time.Minute)
	setDuration(&p.Timeout, 10*time.Second)
	setInt(&p.MaxResponseBytes, 1<<20)
	setDuration(&p.ClockSkew, time.Minute)
	if len(p.Claims) == 0 {
		p.Claims = []string{"sub", "name", "email", "preferred_username"}
	}

	cu := &p.Custom
	setString(&cu.RefreshRequest.Method, "POST")
	cu.RefreshRequest.Method = strings.ToUpper(cu.RefreshRequest.Method)
	setString(&cu.RefreshRequest.Format, "json")
	// A custom backend names its fields its own way: the access token
	// field must be configured, so a missing mapping is reported rather
	// than guessed.
	if p.Type != "custom" {
		setString(&cu.TokenResponse.AccessToken, "access_token")
	}
	setString(&cu.TokenResponse.RefreshToken, "refresh_token")
	setString(&cu.TokenResponse.ExpiresIn, "expires_in")
	setString(&cu.TokenResponse.IDToken, "id_token")
	if len(cu.DeadStatuses) == 0 {
		cu.DeadStatuses = []int{400, 401, 403}
	}
	for i := range cu.Capture {
		setString(&cu.Capture[i].Method, "POST")
		cu.Capture[i].Method = strings.ToUpper(cu.Capture[i].Method)
	}
}

func (s *SessionConfig) setDefaults() {
	setString(&s.Store, "memory")
	setDuration(&s.IdleTimeout, 24*time.Hour)
	setDuration(&s.MaxLifetime, 720*time.Hour)
	setDuration(&s.LoginStateTTL, 10*time.Minute)
	r := &s.Redis
	setString(&r.KeyPrefix, "tokenrelay:")
	setDuration(&r.DialTimeout, 2*time.Second)
	setDuration(&r.ReadTimeout, time.Second)
	setDuration(&r.WriteTimeout, time.Second)
}

// RouteName derives a route's metric name from its path: "/api/" -> "api",
// "/api/v1/" -> "api_v1", "/" -> "root". Characters outside [a-z0-9] become
// "_". A name that would be one of the proxy's reserved labels ("auth" and
// "unmatched", e.g. for a custom backend's "/auth/" route) gets the suffix
// "_route".
func RouteName(path string) string {
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
	case reservedRouteName(name):
		return name + "_route"
	}
	return name
}

// reservedRouteName reports whether name is a metric label the proxy uses
// for its own requests (the auth endpoints and requests no route serves).
func reservedRouteName(name string) bool { return name == "auth" || name == "unmatched" }

// RedirectURL is the OAuth2 redirect URI: public_url + auth_prefix +
// "/callback".
func (c *Config) RedirectURL() string { return c.PublicURL + c.AuthPrefix + "/callback" }

func setString(p *string, def string) {
	if *p == "" {
		*p = def
	}
}

func setDuration(p *time.Duration, def time.Duration) {
	if *p == 0 {
		*p = def
	}
}

func setInt[T int | int64](p *T, def T) {
	if *p == 0 {
		*p = def
	}
}

func setBool(p **bool, def bool) {
	if *p == nil {
		*p = &def
	}
}

// sortedKeys returns a map's keys in order, so problems come out the same
// way every run.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
