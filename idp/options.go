package idp

import (
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Provider types.
const (
	TypeOIDC   = "oidc"
	TypeOAuth2 = "oauth2"
	TypeCustom = "custom"
)

// Client authentication methods at the token and revocation endpoints
// (RFC 6749 §2.3.1, OIDC Core §9). The method is used exactly as configured:
// a failed request is never retried with another method.
const (
	AuthMethodBasic = "client_secret_basic"
	AuthMethodPost  = "client_secret_post"
	AuthMethodNone  = "none"
)

// Request body formats of a custom refresh request.
const (
	FormatJSON = "json"
	FormatForm = "form"
)

// RefreshTokenPlaceholder is replaced by the refresh token in a custom refresh
// request's body values and header values.
const RefreshTokenPlaceholder = "{{refresh_token}}"

// Defaults applied by New to zero fields of Options.
const (
	DefaultMaxResponseBytes    = 1 << 20
	DefaultAccessTokenLifetime = 5 * time.Minute
	DefaultTimeout             = 10 * time.Second
	DefaultLogoutTokenMaxAge   = 5 * time.Minute
	DefaultJWKSRefreshInterval = time.Hour
	DefaultJWKSRefreshCooldown = time.Minute
	DefaultReplayCacheSize     = 10000
)

// Options configure a Provider. cmd/tokenrelay fills them from
// config.ProviderConfig; the zero value of most fields means "default".
type Options struct {
	// Type is oidc (discovery, ID tokens), oauth2 (explicit endpoints, no
	// ID token) or custom (a non-RFC 6749 refresh endpoint described by
	// Custom). Empty means oidc.
	Type string
	// Issuer is the OpenID Provider's issuer identifier. For oidc,
	// discovery reads Issuer + "/.well-known/openid-configuration" and the
	// document's issuer must equal Issuer exactly.
	Issuer       string
	ClientID     string
	ClientSecret secret.String
	// AuthMethod is client_secret_basic, client_secret_post or none. Empty
	// means client_secret_basic when ClientSecret is set, none otherwise.
	AuthMethod string
	Scopes     []string
	// AuthParams are extra authorization request parameters. They cannot
	// replace the parameters the package sets itself (state, nonce, PKCE,
	// client_id, redirect_uri, response_type, scope).
	AuthParams map[string]string
	// TokenParams are extra parameters of code exchange and RFC 6749
	// refresh requests (audience, resource). They cannot replace the
	// parameters the package sets itself.
	TokenParams map[string]string
	RedirectURL string

	// Explicit endpoints. Required for oauth2 and custom (token endpoint;
	// authorization endpoint for a login flow); for oidc they override the
	// discovered ones.
	AuthorizationEndpoint string
	TokenEndpoint         string
	RevocationEndpoint    string
	EndSessionEndpoint    string
	UserinfoEndpoint      string
	JWKSURI               string

	// AccessTokenLifetime is the access token's lifetime when neither the
	// response's expires-in nor the token's JWT exp says. Default 5m.
	AccessTokenLifetime time.Duration
	// ClockSkew is tolerated when checking exp, nbf and iat of ID and
	// logout tokens. It is used as given: zero tolerates no skew.
	ClockSkew time.Duration
	// MaxResponseBytes caps every response body read from the provider
	// (discovery, JWKS, token, userinfo) and every captured body.
	// Default 1 MiB.
	MaxResponseBytes int64
	// Claims are the claims copied from the ID token (or userinfo) into
	// Identity.Claims.
	Claims []string

	// Timeout bounds each call to the provider (discovery, JWKS, code
	// exchange, userinfo, revocation). Refresh uses the caller's deadline
	// (refresh.timeout) and falls back to Timeout only when the caller's
	// context has none. Default 10s.
	Timeout time.Duration
	// LogoutTokenMaxAge is how old (by iat) a back-channel logout token may
	// be, plus ClockSkew. Default 5m.
	LogoutTokenMaxAge time.Duration
	// JWKSRefreshInterval is how often the key set is fetched again in the
	// background. Default 1h.
	JWKSRefreshInterval time.Duration
	// JWKSRefreshCooldown is the minimum time between two fetches of the
	// key set caused by tokens with an unknown kid, so that forged kids
	// cannot make tokenrelay hammer the provider. Default 1m. A token with
	// an unknown kid that arrives inside the cool-down is refused at once
	// when the cool-down is longer than Timeout (the default), and waits
	// for the cool-down to end otherwise.
	JWKSRefreshCooldown time.Duration
	// ReplayCacheSize bounds the number of logout-token jti values kept to
	// refuse replays. Default 10000.
	ReplayCacheSize int

	// HTTPClient makes every call to the provider. Nil means a client with
	// http.DefaultTransport and no overall timeout (each call has its own
	// deadline, see Timeout).
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives diagnostics (never a token, code or secret); nil
	// discards them.
	Logger *slog.Logger

	// Custom describes a custom provider's refresh request and the field
	// names of its token responses. The mapping also applies to oidc and
	// oauth2 responses when set, although those use the RFC 6749 names.
	Custom CustomOptions
}

// CustomOptions describe a token endpoint that is not RFC 6749, such as
// Xano's POST /auth/token {"refreshToken": "..."} -> {"accessToken": "..."}.
type CustomOptions struct {
	RefreshRequest RequestTemplate
	Mapping        ResponseMapping
	// DeadStatuses are HTTP statuses of the refresh endpoint that mean the
	// refresh token is dead. Nil means [400, 401, 403] for custom providers;
	// other types use RFC 6749's invalid_grant only.
	DeadStatuses []int
	// DeadErrorField is a dotted path into a JSON answer whose value, when
	// it is one of DeadErrorValues, marks the refresh token dead whatever
	// the status.
	DeadErrorField  string
	DeadErrorValues []string
}

// RequestTemplate is a custom provider's refresh request. It is sent as is:
// no client authentication and no TokenParams are added.
type RequestTemplate struct {
	// Method defaults to POST.
	Method string
	// Format is json (default) or form.
	Format string
	// Body is a flat set of fields; RefreshTokenPlaceholder in a value is
	// replaced by the refresh token.
	Body map[string]string
	// Headers are sent with the request; RefreshTokenPlaceholder in a value
	// is replaced by the refresh token.
	Headers map[string]secret.String
}

// ResponseMapping names the fields of a token response as dotted paths into
// nested JSON objects ("data.auth.accessToken"). Empty fields default to the
// RFC 6749 names.
type ResponseMapping struct {
	AccessToken  string // default access_token
	RefreshToken string // default refresh_token
	ExpiresIn    string // default expires_in
	IDToken      string // default id_token
	// Subject names the user in a captured login answer (e.g. user.id);
	// empty means the access token's JWT sub.
	Subject string
}

var asymmetricAlgs = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// withDefaults returns a copy of o with defaults applied, or an error naming
// the first invalid field.
func (o Options) withDefaults() (Options, error) {
	switch o.Type {
	case "":
		o.Type = TypeOIDC
	case TypeOIDC, TypeOAuth2, TypeCustom:
	default:
		return o, fmt.Errorf("idp: type %q: want oidc, oauth2 or custom", o.Type)
	}
	switch o.AuthMethod {
	case "":
		o.AuthMethod = AuthMethodNone
		if !o.ClientSecret.IsZero() {
			o.AuthMethod = AuthMethodBasic
		}
	case AuthMethodBasic, AuthMethodPost:
		if o.ClientSecret.IsZero() {
			return o, fmt.Errorf("idp: auth method %s needs a client secret", o.AuthMethod)
		}
	case AuthMethodNone:
	default:
		return o, fmt.Errorf("idp: auth method %q: want client_secret_basic, client_secret_post or none", o.AuthMethod)
	}
	if o.Type == TypeOIDC && o.Issuer == "" {
		return o, fmt.Errorf("idp: oidc needs an issuer")
	}
	if o.Type != TypeCustom && o.ClientID == "" {
		return o, fmt.Errorf("idp: %s needs a client id", o.Type)
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.AccessTokenLifetime <= 0 {
		o.AccessTokenLifetime = DefaultAccessTokenLifetime
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.LogoutTokenMaxAge <= 0 {
		o.LogoutTokenMaxAge = DefaultLogoutTokenMaxAge
	}
	if o.JWKSRefreshInterval <= 0 {
		o.JWKSRefreshInterval = DefaultJWKSRefreshInterval
	}
	if o.JWKSRefreshCooldown <= 0 {
		o.JWKSRefreshCooldown = DefaultJWKSRefreshCooldown
	}
	if o.ReplayCacheSize <= 0 {
		o.ReplayCacheSize = DefaultReplayCacheSize
	}
	if o.ClockSkew < 0 {
		o.ClockSkew = 0
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}

	c := &o.Custom
	m := &c.Mapping
	m.AccessToken = cmp.Or(m.AccessToken, "access_token")
	m.RefreshToken = cmp.Or(m.RefreshToken, "refresh_token")
	m.ExpiresIn = cmp.Or(m.ExpiresIn, "expires_in")
	m.IDToken = cmp.Or(m.IDToken, "id_token")
	if o.Type == TypeCustom {
		r := &c.RefreshRequest
		r.Method = strings.ToUpper(cmp.Or(r.Method, http.MethodPost))
		switch r.Format = cmp.Or(r.Format, FormatJSON); r.Format {
		case FormatJSON, FormatForm:
		default:
			return o, fmt.Errorf("idp: custom refresh request format %q: want json or form", r.Format)
		}
		if c.DeadStatuses == nil {
			c.DeadStatuses = []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden}
		}
	}
	// Copy what callers might still mutate.
	o.Scopes = slices.Clone(o.Scopes)
	o.Claims = slices.Clone(o.Claims)
	o.AuthParams = maps.Clone(o.AuthParams)
	o.TokenParams = maps.Clone(o.TokenParams)
	c.RefreshRequest.Body = maps.Clone(c.RefreshRequest.Body)
	c.RefreshRequest.Headers = maps.Clone(c.RefreshRequest.Headers)
	c.DeadStatuses = slices.Clone(c.DeadStatuses)
	c.DeadErrorValues = slices.Clone(c.DeadErrorValues)
	return o, nil
}
