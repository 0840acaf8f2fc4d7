package config

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// Defaults of the keys this package owns, that others refer to.
const (
	// letsEncryptCA is the default ACME directory.
	letsEncryptCA = "https://acme-v02.api.letsencrypt.org/directory"
	// DefaultAdminListen is admin_listen's default: loopback only, since
	// /metrics and /readyz are nobody else's business. A pod sets its own
	// address (the Helm chart does, from ports.admin) so probes and
	// Prometheus reach it.
	DefaultAdminListen = "127.0.0.1:9090"
)

// SetDefaults fills every unset field with its default: the defaults of the
// keys config owns here, every other section's from its own WithDefaults.
// For most keys zero means unset, so "0s" for a duration with a non-zero
// default gets the default; keys whose zero means something of its own are
// pointers (cookie.secure, provider.clock_skew) or have a zero default.
// Load calls it; tests that build a Config by hand may too. It is
// idempotent.
func (c *Config) SetDefaults() {
	setString(&c.Listen, ":8080")
	setString(&c.AdminListen, DefaultAdminListen)
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	setString(&c.AuthPrefix, "/.auth")
	setDuration(&c.ShutdownGrace, 25*time.Second)

	setString(&c.Log.Level, "info")
	setString(&c.Log.Format, "json")

	setString(&c.TLS.Mode, "none")
	setString(&c.TLS.HTTPListen, ":80")
	setString(&c.TLS.ACME.CA, letsEncryptCA)
	if len(c.TLS.ACME.Challenges) == 0 {
		c.TLS.ACME.Challenges = []string{"http-01", "tls-alpn-01"}
	}

	// Discovery compares the issuer exactly; the file's value loses a
	// trailing slash, as public_url does.
	c.Provider.Issuer = strings.TrimRight(c.Provider.Issuer, "/")
	c.Provider = c.Provider.WithDefaults()
	c.Provider.RedirectURL = c.RedirectURL()

	setString(&c.Session.Store, "memory")
	c.Session.LifetimeOptions = c.Session.LifetimeOptions.WithDefaults()
	c.Session.Redis = c.Session.Redis.WithDefaults()
	c.Cookie = c.Cookie.WithDefaults()
	c.Refresh.RefreshOptions = c.Refresh.RefreshOptions.WithDefaults()
	c.Refresh.RetryOptions = c.Refresh.RetryOptions.WithDefaults()
	c.CSRF = c.CSRF.WithDefaults()
	c.Logout = c.Logout.WithDefaults(c.PublicURL)
	c.Upstream = c.Upstream.WithDefaults()
	for i := range c.Routes {
		c.Routes[i] = c.Routes[i].WithDefaults()
	}
	c.Assertion = c.Assertion.WithDefaults()
	c.Provider.Resources = c.routeResources()
}

// routeResources are the resources of the routes whose user tokens are
// obtained with the session's refresh token: the login asks for each, so
// that a refresh may later ask for a token of it (RFC 8707 §2.1).
func (c *Config) routeResources() []string {
	var out []string
	for _, r := range c.Routes {
		if r.RefreshesTarget() && r.Resource != "" && !slices.Contains(out, r.Resource) {
			out = append(out, r.Resource)
		}
	}
	return out
}

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

// sortedKeys returns a map's keys in order, so problems come out the same
// way every run.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
