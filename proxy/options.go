package proxy

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/errorpage"
	"github.com/tokenrelay/tokenrelay/identity"
	"github.com/tokenrelay/tokenrelay/internal/problem"
	"github.com/tokenrelay/tokenrelay/internal/valid"
	"github.com/tokenrelay/tokenrelay/policy"
	"github.com/tokenrelay/tokenrelay/session"
)

// Options configures a Handler: the option sections of the configuration
// file the proxy reads, and its dependencies. Each section type has its
// WithDefaults, the one place that knows its defaults, and its Validate,
// whose problems New refuses. A section field's first doc paragraph is its
// entry in the configuration reference (docs/configuration.md).
type Options struct {
	// Sessions and Provider are required.
	Sessions Sessions
	Provider Provider
	// Transport reaches the upstreams; nil means NewTransport with
	// defaults.
	Transport http.RoundTripper
	// Logger receives the access log and error logs; nil discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil does not register them.
	Registerer prometheus.Registerer
	// Now is the clock of session records; nil means time.Now.
	Now func() time.Time
	// TracerProvider traces requests (a server span each, continuing the
	// client's W3C traceparent); nil turns tracing off.
	TracerProvider trace.TracerProvider

	// AuthPrefix is where tokenrelay's own endpoints live; default "/.auth".
	AuthPrefix string
	// PublicURL is where browsers reach tokenrelay; its origin is trusted
	// by the CSRF defence and it gives the default post-logout redirect.
	PublicURL *url.URL
	// Cookie names and shapes the session cookie (key cookie).
	Cookie session.CookieOptions
	// Session gives the session cookie's Max-Age (MaxLifetime) and the
	// login-binding cookie's (LoginStateTTL) (key session).
	Session session.LifetimeOptions
	// Retry is the retry on an upstream 401 (in key refresh).
	Retry RetryOptions
	// Upstream bounds request bodies and sets the flush interval (key
	// upstream; its transport settings are NewTransport's).
	Upstream UpstreamOptions
	// CSRF configures the cross-site request forgery defence (key csrf).
	CSRF CSRFOptions
	// Logout configures RP-initiated logout (key logout).
	Logout LogoutOptions
	// ForwardAuth turns on the verify endpoint an ingress asks about each
	// request (key forward_auth); ServeForwardAuth serves it.
	ForwardAuth ForwardAuthOptions
	// Routes are the allow-listed upstreams; a path no route serves is
	// answered 404 (key routes).
	Routes []Route
	// CaptureRoutes are login routes of custom backends whose answers
	// carry tokens (token capture; key provider.custom.capture).
	CaptureRoutes []CaptureRoute
	// Policy is the default policy of every auth: required route (key
	// policy); a route's own extends or replaces it.
	Policy policy.Options
	// Assertion shapes the signed identity assertion of the routes that
	// send one (key assertion).
	Assertion identity.AssertionOptions
	// Keys signs the identity assertion and serves the JWKS at
	// <auth_prefix>/jwks.json. Required when a route sends the assertion;
	// nil otherwise (cmd builds it on the session store, or from the key
	// file).
	Keys *identity.KeyRing
	// ErrorPages are the HTML pages a browser's navigation gets for an
	// error (key error_pages).
	ErrorPages errorpage.Options
}

// withDefaults returns o with the defaults of every section and working
// dependencies in place of nil ones.
func (o Options) withDefaults() Options {
	if o.AuthPrefix == "" {
		o.AuthPrefix = defaultAuthPrefix
	}
	o.Cookie = o.Cookie.WithDefaults()
	o.Session = o.Session.WithDefaults()
	o.Retry = o.Retry.WithDefaults()
	o.Upstream = o.Upstream.WithDefaults()
	o.CSRF = o.CSRF.WithDefaults()
	var public string
	if o.PublicURL != nil {
		public = o.PublicURL.String()
	}
	o.Logout = o.Logout.WithDefaults(public)
	routes := make([]Route, len(o.Routes))
	for i, r := range o.Routes {
		routes[i] = r.WithDefaults()
	}
	o.Routes = routes
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Transport == nil {
		o.Transport = NewTransport(TransportOptions{})
	}
	return o
}

// validate reports the problems of every section, placed under the keys
// the configuration file gives them.
func (o Options) validate() []problem.Problem {
	var ps problem.List
	ps.Append("cookie", o.Cookie.Validate())
	ps.Append("session", o.Session.Validate())
	ps.Append("refresh", o.Retry.Validate())
	ps.Append("upstream", o.Upstream.Validate())
	ps.Append("csrf", o.CSRF.Validate())
	ps.Append("logout", o.Logout.Validate())
	ps.Append("routes", ValidateRoutes(o.Routes, o.AuthPrefix, o.ForwardAuth.Enabled()))
	ps.Append("policy", o.Policy.Validate())
	ps.Append("assertion", o.Assertion.Validate())
	ps.Append("error_pages", o.ErrorPages.Validate())
	ps.Append("forward_auth", o.ForwardAuth.Validate())
	return ps
}

// RetryOptions say whether a request is sent again, with a refreshed
// token, when the upstream answers 401 (in key `refresh`).
type RetryOptions struct {
	// Refresh and retry once when the upstream answers 401 to a replayable
	// request.
	//
	// Nil (the key left out) means true.
	RetryOn401 *bool `yaml:"retry_on_401"`
	// Largest request body buffered for that retry.
	//
	// Larger bodies stream without a retry.
	MaxRetryBody int64 `yaml:"max_retry_body"`
}

// WithDefaults returns o with every default filled in.
func (o RetryOptions) WithDefaults() RetryOptions {
	if o.RetryOn401 == nil {
		o.RetryOn401 = new(true)
	}
	if o.MaxRetryBody == 0 {
		o.MaxRetryBody = 64 << 10
	}
	return o
}

// Validate reports every problem in o, with paths relative to the section
// that holds it.
func (o RetryOptions) Validate() []problem.Problem {
	var ps problem.List
	if o.MaxRetryBody < 0 {
		ps.Add("max_retry_body", "must not be negative")
	}
	return ps
}

// UpstreamOptions tune what the proxy does with upstream traffic (key
// `upstream`): the transport's settings (TransportOptions, given to
// NewTransport) and the handler's.
type UpstreamOptions struct {
	TransportOptions `yaml:",inline"`
	// Flush interval of streamed bodies (event streams always flush at
	// once).
	//
	// Zero flushes only when the buffer fills; text/event-stream bodies
	// and bodies of unknown length always flush at once.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// Larger request bodies get 413 (0: no limit).
	MaxRequestBody int64 `yaml:"max_request_body"`
	// Time a client has to send a request body, from its first byte read
	// to its last; after it, `408 request_timeout` and the connection
	// closes. Downloads, event streams and WebSockets are not limited by
	// it. Raise it if the app takes large uploads over slow links.
	BodyReadTimeout time.Duration `yaml:"body_read_timeout"`
}

// WithDefaults returns o with every default filled in; zero FlushInterval
// and MaxRequestBody mean what they say.
func (o UpstreamOptions) WithDefaults() UpstreamOptions {
	o.TransportOptions = o.TransportOptions.WithDefaults()
	if o.BodyReadTimeout == 0 {
		o.BodyReadTimeout = 30 * time.Second
	}
	return o
}

// Validate reports every problem in o, after defaults, with paths relative
// to the section.
func (o UpstreamOptions) Validate() []problem.Problem {
	o = o.WithDefaults()
	ps := problem.List(o.TransportOptions.Validate())
	if o.MaxRequestBody < 0 {
		ps.Add("max_request_body", "must not be negative")
	}
	if o.BodyReadTimeout < 0 {
		ps.Add("body_read_timeout", "must not be negative")
	}
	return ps
}

// CSRFOptions configure the cross-site request forgery defence (key
// `csrf`).
type CSRFOptions struct {
	// Custom header unsafe requests must carry (any non-empty value).
	//
	// A route turns the requirement off with csrf_header: false.
	Header string `yaml:"header"`
	// Extra origins allowed to send unsafe requests.
	//
	// Each is scheme://host[:port].
	TrustedOrigins []string `yaml:"trusted_origins"`
}

// WithDefaults returns o with every default filled in.
func (o CSRFOptions) WithDefaults() CSRFOptions {
	if o.Header == "" {
		o.Header = defaultCSRFHeader
	}
	return o
}

// Validate reports every problem in o, after defaults, with paths relative
// to the section.
func (o CSRFOptions) Validate() []problem.Problem {
	o = o.WithDefaults()
	var ps problem.List
	if !valid.Token(o.Header) {
		ps.Add("header", "must be a valid header name")
	}
	for i, origin := range o.TrustedOrigins {
		u, err := url.Parse(origin)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			ps.Add(fmt.Sprintf("trusted_origins[%d]", i), "must be an origin (scheme://host[:port])")
		}
	}
	return ps
}

// LogoutOptions configure RP-initiated logout (key `logout`).
type LogoutOptions struct {
	// Where the provider sends the browser after logout (default
	// `<public_url>/`).
	//
	// It is sent to the provider's end_session_endpoint and is where a
	// logout ends when the provider has none. It never comes from the
	// request.
	PostLogoutRedirectURI string `yaml:"post_logout_redirect_uri"`
	// Revoke the refresh token at logout (RFC 7009) when the provider can.
	//
	// Nil (the key left out) means true.
	Revoke *bool `yaml:"revoke"`
}

// WithDefaults returns o with every default filled in: the post-logout
// redirect is publicURL + "/" when publicURL is known.
func (o LogoutOptions) WithDefaults(publicURL string) LogoutOptions {
	if o.PostLogoutRedirectURI == "" && publicURL != "" {
		o.PostLogoutRedirectURI = strings.TrimRight(publicURL, "/") + "/"
	}
	if o.Revoke == nil {
		o.Revoke = new(true)
	}
	return o
}

// Validate reports every problem in o, with paths relative to the section.
func (o LogoutOptions) Validate() []problem.Problem {
	var ps problem.List
	if o.PostLogoutRedirectURI == "" {
		return ps
	}
	if u, err := url.Parse(o.PostLogoutRedirectURI); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ps.Add("post_logout_redirect_uri", "must be an absolute http or https URL")
	}
	return ps
}

// ForwardAuthOptions turn on forward-auth mode (key `forward_auth`): an
// ingress (nginx auth_request, ingress-nginx auth-url, Traefik
// ForwardAuth, Caddy forward_auth, Envoy ext_authz) asks tokenrelay about
// each request and forwards it to the app itself, with the access token
// tokenrelay answers (docs/forward-auth.md).
type ForwardAuthOptions struct {
	// Address of the forward-auth listener, which serves only the verify
	// endpoint `<auth_prefix>/verify` to an ingress (empty: off). Its
	// answers carry access tokens: never route it to browsers; see
	// [forward-auth](forward-auth.md).
	//
	// While it is set, routes may leave out `upstream`.
	Listen string `yaml:"listen"`
}

// Enabled reports whether forward-auth mode is on.
func (o ForwardAuthOptions) Enabled() bool { return o.Listen != "" }

// Validate reports every problem in o, with paths relative to the section.
func (o ForwardAuthOptions) Validate() []problem.Problem {
	var ps problem.List
	if o.Listen == "" {
		return ps
	}
	if _, port, err := net.SplitHostPort(o.Listen); err != nil || !valid.Port(port) {
		ps.Add("listen", "must be host:port or :port (got %q)", o.Listen)
	}
	return ps
}
