// Package config holds tokenrelay's configuration: the types that mirror the
// YAML file, Load (YAML + TOKENRELAY_* environment + *_file secrets),
// defaults and Validate. It does no I/O beyond reading the file and the
// secret files it names, and holds no runtime objects.
package config

import (
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Config is the whole configuration file.
type Config struct {
	Listen      string `yaml:"listen"`       // default ":8080"
	AdminListen string `yaml:"admin_listen"` // default ":9090"
	// PublicURL is where browsers reach tokenrelay; the redirect URI is
	// PublicURL + AuthPrefix + "/callback".
	PublicURL string `yaml:"public_url"`
	// AuthPrefix is the path prefix of tokenrelay's own endpoints.
	AuthPrefix string `yaml:"auth_prefix"` // default "/.auth"
	// ShutdownGrace bounds how long in-flight requests may finish after
	// SIGTERM.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"` // default 25s
	// ShutdownDelay is how long /readyz fails before the listener stops
	// accepting, so load balancers drain first.
	ShutdownDelay time.Duration `yaml:"shutdown_delay"` // default 0

	Log      LogConfig      `yaml:"log"`
	TLS      TLSConfig      `yaml:"tls"`
	Provider ProviderConfig `yaml:"provider"`
	Session  SessionConfig  `yaml:"session"`
	Cookie   CookieConfig   `yaml:"cookie"`
	Refresh  RefreshConfig  `yaml:"refresh"`
	CSRF     CSRFConfig     `yaml:"csrf"`
	Logout   LogoutConfig   `yaml:"logout"`
	Upstream UpstreamConfig `yaml:"upstream"`
	Routes   []Route        `yaml:"routes"`
}

// LogConfig selects the log format and level.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error; default info
	Format string `yaml:"format"` // json | text; default json
}

// TLSConfig says whether tokenrelay terminates TLS itself.
type TLSConfig struct {
	Mode     string     `yaml:"mode"` // none | files | acme; default none
	CertFile string     `yaml:"cert_file"`
	KeyFile  string     `yaml:"key_file"`
	ACME     ACMEConfig `yaml:"acme"`
	// HTTPListen is where plain HTTP is answered (ACME HTTP-01 challenges
	// and redirects to HTTPS) in acme mode; default ":80".
	HTTPListen string `yaml:"http_listen"`
}

// ACMEConfig configures certmagic.
type ACMEConfig struct {
	Domains []string `yaml:"domains"`
	Email   string   `yaml:"email"`
	// CA is the ACME directory URL; default Let's Encrypt production.
	CA string `yaml:"ca"`
	// CARootFile is a PEM bundle to trust for a private ACME server.
	CARootFile string `yaml:"ca_root_file"`
	// Storage is the folder where certificates and account keys live.
	Storage string `yaml:"storage"`
	// Challenges are the ACME challenge types to solve: http-01 (answered
	// on tls.http_listen) and tls-alpn-01 (answered on listen). Default
	// both.
	Challenges []string `yaml:"challenges"`
}

// ProviderConfig describes the identity provider.
type ProviderConfig struct {
	Type string `yaml:"type"` // oidc | oauth2 | custom; default oidc
	// Issuer is required for oidc; discovery reads
	// Issuer + "/.well-known/openid-configuration" and the issuer in the
	// document must match exactly.
	Issuer           string        `yaml:"issuer"`
	ClientID         string        `yaml:"client_id"`
	ClientSecret     secret.String `yaml:"client_secret"`
	ClientSecretFile string        `yaml:"client_secret_file"`
	// AuthMethod: client_secret_basic | client_secret_post | none.
	// Default client_secret_basic with a secret, none without.
	AuthMethod string   `yaml:"auth_method"`
	Scopes     []string `yaml:"scopes"` // default [openid, offline_access, profile, email] for oidc
	// AuthParams are extra authorization request parameters
	// (prompt: consent, access_type: offline, audience: ...).
	AuthParams map[string]string `yaml:"auth_params"`
	// TokenParams are extra parameters sent with code exchange and refresh
	// requests (audience, resource).
	TokenParams map[string]string `yaml:"token_params"`

	// Explicit endpoints: required for oauth2/custom, optional overrides
	// of discovery for oidc.
	AuthorizationEndpoint string `yaml:"authorization_endpoint"`
	TokenEndpoint         string `yaml:"token_endpoint"`
	RevocationEndpoint    string `yaml:"revocation_endpoint"`
	EndSessionEndpoint    string `yaml:"end_session_endpoint"`
	UserinfoEndpoint      string `yaml:"userinfo_endpoint"`
	JWKSURI               string `yaml:"jwks_uri"`

	// AccessTokenLifetime is the last resort when neither expires_in nor a
	// JWT exp tells the lifetime. Default 5m.
	AccessTokenLifetime time.Duration `yaml:"access_token_lifetime"`
	// Timeout bounds every call to the provider (discovery, exchange,
	// revocation). Refresh calls use refresh.timeout. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxResponseBytes caps every provider response body. Default 1 MiB.
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
	// ClockSkew is tolerated when checking ID and logout tokens. Default 1m.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// Claims are the ID-token (or userinfo) claims kept in the session and
	// shown by /.auth/session. Default [sub, name, email, preferred_username].
	Claims []string `yaml:"claims"`
	// CAFile is a PEM bundle trusted for TLS to the provider (private CAs).
	CAFile string `yaml:"ca_file"`

	// Custom is used by type custom (non-RFC 6749 token endpoints).
	Custom CustomConfig `yaml:"custom"`
}

// CustomConfig describes a token endpoint that is not RFC 6749, e.g. Xano's
// POST /auth/token {"refreshToken": "..."} -> {"accessToken": "..."}.
type CustomConfig struct {
	RefreshRequest RequestTemplate `yaml:"refresh_request"`
	TokenResponse  ResponseMapping `yaml:"token_response"`
	// DeadStatuses are HTTP statuses from the refresh endpoint that mean
	// the refresh token is dead (session ends). Default [400, 401, 403].
	DeadStatuses []int `yaml:"dead_statuses"`
	// DeadErrorField/DeadErrorValues: a JSON field (dotted path) whose value
	// marks a dead refresh token regardless of status.
	DeadErrorField  string   `yaml:"dead_error_field"`
	DeadErrorValues []string `yaml:"dead_error_values"`
	// Capture lists the routes whose 2xx JSON answers carry tokens that
	// start a session (token capture).
	Capture []CaptureRoute `yaml:"capture"`
}

// RequestTemplate is the refresh request of a custom provider.
type RequestTemplate struct {
	Method string `yaml:"method"` // default POST
	Format string `yaml:"format"` // json | form; default json
	// Body fields; "{{refresh_token}}" is replaced by the refresh token.
	// Dotted keys are not nested: the body is flat.
	Body map[string]string `yaml:"body"`
	// Headers are static headers; HeaderFiles read a header value from a
	// file (an API key from a Kubernetes Secret).
	Headers     map[string]string `yaml:"headers"`
	HeaderFiles map[string]string `yaml:"header_files"`
	// SecretHeaders holds the values read from HeaderFiles by Load. They
	// are sent like Headers; a header name appears in only one of the two.
	SecretHeaders map[string]secret.String `yaml:"-"`
}

// ResponseMapping names the JSON fields (dotted paths into nested objects)
// of a token response. Defaults are the RFC 6749 names.
type ResponseMapping struct {
	AccessToken  string `yaml:"access_token"`  // default access_token
	RefreshToken string `yaml:"refresh_token"` // default refresh_token
	ExpiresIn    string `yaml:"expires_in"`    // default expires_in
	IDToken      string `yaml:"id_token"`      // default id_token
	// Subject is a field of the captured login answer that names the user
	// (e.g. user.id) when the access token is not a JWT with sub.
	Subject string `yaml:"subject"`
}

// CaptureRoute is a login or signup route whose answer carries tokens.
type CaptureRoute struct {
	Method string `yaml:"method"` // default POST
	Path   string `yaml:"path"`   // exact path, e.g. /auth/login
}

// SessionConfig chooses the store and the session lifetimes.
type SessionConfig struct {
	Store string `yaml:"store"` // memory | redis; default memory
	// Secret seals session records together with each session's own key.
	// At least 32 bytes. Required with redis; generated (with a warning)
	// for memory when unset.
	Secret     secret.String `yaml:"secret"`
	SecretFile string        `yaml:"secret_file"`
	// PreviousSecrets still open records sealed before a secret rotation;
	// new records are always sealed with Secret. Each is at least 32 bytes.
	PreviousSecrets     []secret.String `yaml:"previous_secrets"`
	PreviousSecretFiles []string        `yaml:"previous_secret_files"`

	IdleTimeout time.Duration `yaml:"idle_timeout"` // default 24h
	MaxLifetime time.Duration `yaml:"max_lifetime"` // default 720h
	// LoginStateTTL bounds how long a login may take at the provider.
	LoginStateTTL time.Duration `yaml:"login_state_ttl"` // default 10m

	Redis RedisConfig `yaml:"redis"`
}

// RedisConfig reaches a standalone Redis, a Sentinel set or a Cluster.
type RedisConfig struct {
	// URL: redis:// or rediss:// (standalone).
	URL string `yaml:"url"`
	// Addresses: several host:port for a cluster, or the sentinels when
	// MasterName is set.
	Addresses  []string `yaml:"addresses"`
	MasterName string   `yaml:"master_name"`
	Cluster    bool     `yaml:"cluster"`

	Username         string        `yaml:"username"`
	Password         secret.String `yaml:"password"`
	PasswordFile     string        `yaml:"password_file"`
	SentinelPassword secret.String `yaml:"sentinel_password"`
	SentinelPassFile string        `yaml:"sentinel_password_file"`
	DB               int           `yaml:"db"`

	TLS        bool   `yaml:"tls"`
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`

	KeyPrefix    string        `yaml:"key_prefix"`    // default "tokenrelay:"
	DialTimeout  time.Duration `yaml:"dial_timeout"`  // default 2s
	ReadTimeout  time.Duration `yaml:"read_timeout"`  // default 1s
	WriteTimeout time.Duration `yaml:"write_timeout"` // default 1s
	PoolSize     int           `yaml:"pool_size"`     // default 0 = go-redis default
}

// CookieConfig shapes the session cookie.
type CookieConfig struct {
	// Name defaults to "__Host-tokenrelay" (or "tokenrelay" when Secure is
	// off, since __Host- requires Secure).
	Name string `yaml:"name"`
	// Secure can be turned off only for plain-http local use.
	Secure   *bool  `yaml:"secure"`
	SameSite string `yaml:"same_site"` // lax | strict; default lax
}

// RefreshConfig tunes the refresh engine.
type RefreshConfig struct {
	// Ahead: an access token this close to expiry is refreshed before it
	// is used. Must be below provider.access_token_lifetime.
	Ahead time.Duration `yaml:"ahead"` // default 60s
	// Timeout bounds one refresh (token endpoint call and save).
	Timeout time.Duration `yaml:"timeout"` // default 10s
	// LockTTL is the lifetime of the cross-replica refresh lock. It must
	// exceed Timeout so the lock cannot lapse while a refresh is in flight.
	LockTTL    time.Duration `yaml:"lock_ttl"`     // default Timeout + 5s
	RetryOn401 *bool         `yaml:"retry_on_401"` // default true
	// MaxRetryBody is the largest request body buffered so the request can
	// be replayed after a 401. Default 64 KiB.
	MaxRetryBody int64 `yaml:"max_retry_body"`
	// FailureBackoff is the minimum wait between failed refresh attempts of
	// one session. Default 5s.
	FailureBackoff time.Duration `yaml:"failure_backoff"`
}

// CSRFConfig configures the cross-site request forgery defence.
type CSRFConfig struct {
	// Header is the custom header unsafe requests must carry; default
	// "X-CSRF" (any non-empty value). Empty string after defaults is not
	// allowed; turn it off per route with csrf_header: false.
	Header string `yaml:"header"`
	// TrustedOrigins are extra origins (scheme://host[:port]) allowed to
	// send unsafe requests.
	TrustedOrigins []string `yaml:"trusted_origins"`
}

// LogoutConfig configures RP-initiated logout.
type LogoutConfig struct {
	// PostLogoutRedirectURI is sent to the provider's end_session_endpoint;
	// default PublicURL + "/".
	PostLogoutRedirectURI string `yaml:"post_logout_redirect_uri"`
	// Revoke the refresh token at logout when the provider can. Default true.
	Revoke *bool `yaml:"revoke"`
}

// UpstreamConfig tunes the transport to upstreams.
type UpstreamConfig struct {
	MaxIdleConnsPerHost   int           `yaml:"max_idle_conns_per_host"` // default 256
	IdleConnTimeout       time.Duration `yaml:"idle_conn_timeout"`       // default 90s
	DialTimeout           time.Duration `yaml:"dial_timeout"`            // default 5s
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"` // default 60s
	FlushInterval         time.Duration `yaml:"flush_interval"`          // default 0 (SSE flushes at once anyway)
	MaxRequestBody        int64         `yaml:"max_request_body"`        // default 0 = unlimited
}

// Route maps a path prefix to an upstream.
type Route struct {
	// Name labels metrics; default derived from Path ("api" for /api/, "root" for /).
	Name     string `yaml:"name"`
	Path     string `yaml:"path"`
	Upstream string `yaml:"upstream"`
	// Auth: required | optional | none. required: no session -> 401/redirect.
	// optional: token added when there is a session.
	Auth string `yaml:"auth"`
	// OnUnauthenticated: auto | redirect | status. auto redirects top-level
	// navigations (Sec-Fetch-Mode: navigate, or Accept: text/html) and
	// answers 401 JSON to API calls. Default auto.
	OnUnauthenticated string `yaml:"on_unauthenticated"`
	// CSRFHeader: whether unsafe methods must carry the CSRF header on
	// this route. Default true for auth required/optional.
	CSRFHeader *bool `yaml:"csrf_header"`
	// StripPrefix removes Path from the forwarded request path.
	StripPrefix bool `yaml:"strip_prefix"`
	// PassHost forwards the client's Host header instead of the
	// upstream's.
	PassHost bool `yaml:"pass_host"`
}
