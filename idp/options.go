package idp

import (
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/problem"
	"github.com/tokenrelay/tokenrelay/internal/valid"
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
	// AuthMethodPrivateKeyJWT signs a client assertion (RFC 7523) with
	// the private key of PrivateKey.
	AuthMethodPrivateKeyJWT = "private_key_jwt"
	// AuthMethodTLS is mutual TLS with a client certificate (RFC 8705
	// tls_client_auth); cmd puts the certificate on HTTPClient.
	AuthMethodTLS = "tls_client_auth"
)

// Pushed authorization request modes (RFC 9126).
const (
	// PARAuto pushes the authorization request when the provider's
	// discovery document requires it
	// (require_pushed_authorization_requests).
	PARAuto = "auto"
	// PARAlways always pushes it; the provider must have a
	// pushed_authorization_request_endpoint.
	PARAlways = "always"
	// PARNever never pushes it; a provider that requires it is a
	// configuration error.
	PARNever = "never"
)

// Request body formats of a custom refresh request.
const (
	FormatJSON = "json"
	FormatForm = "form"
)

// RefreshTokenPlaceholder is replaced by the refresh token in a custom refresh
// request's body values and header values.
const RefreshTokenPlaceholder = "{{refresh_token}}"

// Options configure a Provider (key `provider`). The field's first doc
// paragraph is its entry in the configuration reference
// (docs/configuration.md); the defaults are WithDefaults'. The fields
// without a key (yaml "-") are tuning and the Provider's dependencies,
// set by code, never by the file.
type Options struct {
	// `oidc` (discovery, ID tokens), `oauth2` (explicit endpoints) or
	// `custom` (non-RFC 6749 token endpoint).
	Type string `yaml:"type"`
	// OIDC issuer; discovery must return exactly this issuer. Required for
	// `oidc`.
	//
	// Discovery reads Issuer + "/.well-known/openid-configuration".
	Issuer string `yaml:"issuer"`
	// Client id registered at the provider.
	ClientID string `yaml:"client_id"`
	// Client secret (prefer `client_secret_file`).
	ClientSecret secret.String `yaml:"client_secret"`
	// File holding the client secret (a mounted Kubernetes Secret).
	//
	// Package config reads it into ClientSecret; the Provider never opens
	// it.
	ClientSecretFile string `yaml:"client_secret_file"`
	// `client_secret_basic`, `client_secret_post`, `private_key_jwt` (RFC
	// 7523, with `private_key_file`), `tls_client_auth` (RFC 8705 mutual
	// TLS, with `tls_client_cert_file`) or `none` (public client).
	// Default: private_key_jwt with a key, tls_client_auth with a
	// certificate, a secret method with a secret (basic, or post when
	// discovery lists only that), none otherwise. Never retried with
	// another method.
	//
	// +default=
	AuthMethod string `yaml:"auth_method"`
	// PEM private key (PKCS #8, SEC 1 EC or PKCS #1 RSA) that signs the
	// `private_key_jwt` client assertions. Register its public key at the
	// provider (the client's `jwks`); the assertion's `kid` is the key's
	// RFC 7638 thumbprint and its algorithm the first the provider lists
	// for the key type (RS256/PS256, ES256, EdDSA).
	//
	// Package config reads it into PrivateKey; the Provider never opens
	// it.
	PrivateKeyFile string `yaml:"private_key_file"`
	// PEM client certificate (chain) presented to the provider with
	// `tls_client_auth`.
	//
	// cmd builds HTTPClient with it; the Provider never opens the file.
	TLSClientCertFile string `yaml:"tls_client_cert_file"`
	// PEM private key of `tls_client_cert_file`.
	TLSClientKeyFile string `yaml:"tls_client_key_file"`
	// Bind every token to a key of the session (DPoP, RFC 9449): token
	// requests carry proofs, and every request tokenrelay forwards with a
	// token carries `Authorization: DPoP` and a fresh proof. The provider
	// must list ES256 in `dpop_signing_alg_values_supported`.
	DPoP bool `yaml:"dpop"`
	// Pushed authorization requests (RFC 9126): `auto` (when the provider
	// requires them), `always` or `never`.
	//
	// Auto does not push merely because the provider offers it: a pushed
	// request makes every login start a call to the provider, which a
	// plain redirect does not.
	PAR string `yaml:"par"`
	// Scopes requested; `offline_access` asks for a refresh token.
	//
	// +default=`[openid, offline_access, profile, email]` (oidc)
	Scopes []string `yaml:"scopes"`
	// Extra authorization parameters, e.g. `prompt: consent`,
	// `access_type: offline`, `audience: …`.
	//
	// They cannot replace the parameters the package sets itself (state,
	// nonce, PKCE, client_id, redirect_uri, response_type, scope).
	AuthParams map[string]string `yaml:"auth_params"`
	// Extra parameters of code exchange and refresh requests (`audience`,
	// `resource`).
	//
	// They cannot replace the parameters the package sets itself.
	TokenParams map[string]string `yaml:"token_params"`

	// Explicit endpoint (required for `oauth2`; overrides discovery for
	// `oidc`).
	AuthorizationEndpoint string `yaml:"authorization_endpoint"`
	// Explicit token endpoint (required for `oauth2` and `custom`).
	TokenEndpoint string `yaml:"token_endpoint"`
	// RFC 7009 revocation endpoint, used at logout.
	RevocationEndpoint string `yaml:"revocation_endpoint"`
	// RP-initiated logout endpoint.
	EndSessionEndpoint string `yaml:"end_session_endpoint"`
	// Userinfo endpoint; `oauth2` takes the user's claims from it.
	UserinfoEndpoint string `yaml:"userinfo_endpoint"`
	// Key set URL (overrides discovery).
	JWKSURI string `yaml:"jwks_uri"`

	// Access-token lifetime when neither the response's expires-in nor the
	// token's JWT `exp` says.
	AccessTokenLifetime time.Duration `yaml:"access_token_lifetime"`
	// Bound on each call to the provider (discovery, keys, code exchange,
	// revocation).
	//
	// Refresh uses the caller's deadline (refresh.timeout) and falls back
	// to Timeout only when the caller's context has none.
	Timeout time.Duration `yaml:"timeout"`
	// Cap on every provider response body.
	//
	// It also caps every captured body.
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
	// Clock skew tolerated on ID and logout tokens (`0s`: none).
	//
	// It applies to exp, nbf and iat. Nil (the key left out) means one
	// minute; zero tolerates no skew.
	ClockSkew *time.Duration `yaml:"clock_skew"`
	// ID-token (or userinfo) claims kept in the session and shown by
	// `/.auth/session`.
	Claims []string `yaml:"claims"`
	// PEM roots to trust for TLS to the provider.
	//
	// cmd builds HTTPClient with them; the Provider never opens the file.
	CAFile string `yaml:"ca_file"`

	// Custom describes a custom provider's refresh request and the field
	// names of its token responses. The mapping also applies to oidc and
	// oauth2 responses, with the RFC 6749 names as defaults.
	Custom CustomOptions `yaml:"custom"`

	// RedirectURL is the redirect URI of the authorization request; config
	// derives it from public_url and auth_prefix.
	RedirectURL string `yaml:"-"`
	// PrivateKey is the PEM text of PrivateKeyFile, read by config.
	PrivateKey secret.String `yaml:"-"`
	// Resources are the RFC 8707 resource indicators of the routes' user
	// tokens, asked for in the authorization request so that a refresh can
	// later obtain a token for each; config collects them from the routes.
	Resources []string `yaml:"-"`
	// LogoutTokenMaxAge is how old (by iat) a back-channel logout token may
	// be, plus ClockSkew. Default 5m.
	LogoutTokenMaxAge time.Duration `yaml:"-"`
	// JWKSRefreshInterval is how often the key set is fetched again in the
	// background. Default 1h.
	JWKSRefreshInterval time.Duration `yaml:"-"`
	// JWKSRefreshCooldown is the minimum time between two fetches of the
	// key set caused by tokens with an unknown kid, so that forged kids
	// cannot make tokenrelay hammer the provider. Default 1m. A token with
	// an unknown kid that arrives inside the cool-down is refused at once
	// when the cool-down is longer than Timeout (the default), and waits
	// for the cool-down to end otherwise.
	JWKSRefreshCooldown time.Duration `yaml:"-"`
	// ReplayCacheSize bounds the number of logout-token jti values kept to
	// refuse replays. Default 10000.
	ReplayCacheSize int `yaml:"-"`

	// HTTPClient makes every call to the provider. Nil means a client with
	// http.DefaultTransport and no overall timeout (each call has its own
	// deadline, see Timeout).
	HTTPClient *http.Client `yaml:"-"`
	// Now is the clock; nil means time.Now.
	Now func() time.Time `yaml:"-"`
	// Logger receives diagnostics (never a token, code or secret); nil
	// discards them.
	Logger *slog.Logger `yaml:"-"`

	// AuthMethodDefaulted says that AuthMethod was left out and
	// WithDefaults chose it, so the discovery document may choose the other
	// secret method (client_secret_post for a provider that lists only
	// that one).
	AuthMethodDefaulted bool `yaml:"-"`
}

// defaultAuthMethod is the client authentication the credentials
// configured imply.
func (o Options) defaultAuthMethod() string {
	switch {
	case o.PrivateKeyFile != "" || !o.PrivateKey.IsZero():
		return AuthMethodPrivateKeyJWT
	case o.TLSClientCertFile != "":
		return AuthMethodTLS
	case !o.ClientSecret.IsZero():
		return AuthMethodBasic
	}
	return AuthMethodNone
}

// CustomOptions describe a token endpoint that is not RFC 6749, such as
// Xano's POST /auth/token {"refreshToken": "..."} -> {"accessToken": "..."}
// (key `provider.custom`).
type CustomOptions struct {
	RefreshRequest RequestTemplate `yaml:"refresh_request"`
	Mapping        ResponseMapping `yaml:"token_response"`
	// Refresh-endpoint statuses that mean the refresh token is dead (the
	// session ends). Type `custom` only: for `oidc` and `oauth2` only
	// `invalid_grant` ends a session, and any other refusal
	// (`invalid_client`, a 401) is a configuration error that keeps it (see
	// [refresh](refresh.md#when-the-provider-refuses-the-client)).
	//
	// +default=`[400, 401, 403]` (custom)
	DeadStatuses []int `yaml:"dead_statuses"`
	// Dotted path of an error field that marks a dead refresh token …
	//
	// When its value in a JSON answer is one of DeadErrorValues, the
	// refresh token is dead whatever the status.
	DeadErrorField string `yaml:"dead_error_field"`
	// … when it holds one of these values.
	DeadErrorValues []string `yaml:"dead_error_values"`
	// Capture lists the login and signup routes whose successful answers
	// carry tokens that start a session (token capture).
	Capture []CaptureRoute `yaml:"capture"`
}

// RequestTemplate is a custom provider's refresh request (key
// `provider.custom.refresh_request`). It is sent as is: no client
// authentication and no TokenParams are added.
type RequestTemplate struct {
	// HTTP method of the custom refresh request.
	Method string `yaml:"method"`
	// `json` or `form` body.
	Format string `yaml:"format"`
	// Body fields; `{{refresh_token}}` is replaced by the refresh token.
	//
	// The body is flat: dotted keys are not nested.
	Body map[string]string `yaml:"body"`
	// Static request headers.
	//
	// RefreshTokenPlaceholder in a value is replaced by the refresh token.
	Headers map[string]string `yaml:"headers"`
	// Headers whose values are read from files (API keys).
	//
	// Package config reads them into SecretHeaders.
	HeaderFiles map[string]string `yaml:"header_files"`
	// SecretHeaders are sent like Headers; a header name appears in only
	// one of the two.
	SecretHeaders map[string]secret.String `yaml:"-"`
}

// ResponseMapping names the fields of a token response as dotted paths into
// nested JSON objects ("data.auth.accessToken") (key
// `provider.custom.token_response`).
type ResponseMapping struct {
	// Dotted JSON path of the access token in token responses and captured
	// answers.
	//
	// A custom provider names its fields its own way, so it has no
	// default there: a missing mapping is reported rather than guessed.
	AccessToken string `yaml:"access_token"`
	// Dotted path of the refresh token.
	RefreshToken string `yaml:"refresh_token"`
	// Dotted path of the lifetime in seconds.
	ExpiresIn string `yaml:"expires_in"`
	// Dotted path of an ID token.
	IDToken string `yaml:"id_token"`
	// Dotted path of the user id in a captured login answer (e.g.
	// `user.id`).
	//
	// Empty means the access token's JWT sub.
	Subject string `yaml:"subject"`
}

// CaptureRoute is a login or signup endpoint of a custom backend whose
// successful answer carries tokens: tokenrelay keeps them in a new session
// and hands the browser the answer without them (key
// `provider.custom.capture[n]`).
type CaptureRoute struct {
	// Method of a login/signup route whose successful answer carries tokens
	// (token capture; default `POST`). Every answer of the route is
	// inspected, whatever its status or Content-Type: see
	// [endpoints](endpoints.md#token-capture).
	Method string `yaml:"method"`
	// Path of that route, matched without regard to case or a trailing
	// slash (as lenient routers such as Express match it).
	//
	// "/Auth/Login/" reaches the same handler upstream, so it is a capture
	// route too.
	Path string `yaml:"path"`
}

// defaultClockSkew is ClockSkew's default; a pointer, so that zero can
// mean no skew.
const defaultClockSkew = time.Minute

var asymmetricAlgs = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// WithDefaults returns o with every default filled in; it is the only
// place that knows them. It leaves the dependencies (HTTPClient, Now,
// Logger) alone: New fills those. It is idempotent.
func (o Options) WithDefaults() Options {
	if o.Type == "" {
		o.Type = TypeOIDC
	}
	if o.AuthMethod == "" {
		o.AuthMethod, o.AuthMethodDefaulted = o.defaultAuthMethod(), true
	}
	if o.PAR == "" {
		o.PAR = PARAuto
	}
	if o.Type == TypeOIDC && len(o.Scopes) == 0 {
		o.Scopes = []string{"openid", "offline_access", "profile", "email"}
	}
	o.AccessTokenLifetime = orDefault(o.AccessTokenLifetime, 5*time.Minute)
	o.Timeout = orDefault(o.Timeout, 10*time.Second)
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = 1 << 20
	}
	if o.ClockSkew == nil {
		skew := defaultClockSkew
		o.ClockSkew = &skew
	}
	if len(o.Claims) == 0 {
		o.Claims = []string{"sub", "name", "email", "preferred_username"}
	}
	o.LogoutTokenMaxAge = orDefault(o.LogoutTokenMaxAge, 5*time.Minute)
	o.JWKSRefreshInterval = orDefault(o.JWKSRefreshInterval, time.Hour)
	o.JWKSRefreshCooldown = orDefault(o.JWKSRefreshCooldown, time.Minute)
	if o.ReplayCacheSize == 0 {
		o.ReplayCacheSize = 10000
	}
	o.Custom = o.Custom.withDefaults(o.Type)
	return o
}

func (c CustomOptions) withDefaults(typ string) CustomOptions {
	r := &c.RefreshRequest
	r.Method = strings.ToUpper(orString(r.Method, http.MethodPost))
	r.Format = orString(r.Format, FormatJSON)
	m := &c.Mapping
	if typ != TypeCustom {
		m.AccessToken = orString(m.AccessToken, "access_token")
	}
	m.RefreshToken = orString(m.RefreshToken, "refresh_token")
	m.ExpiresIn = orString(m.ExpiresIn, "expires_in")
	m.IDToken = orString(m.IDToken, "id_token")
	if typ == TypeCustom && len(c.DeadStatuses) == 0 {
		c.DeadStatuses = []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden}
	}
	if len(c.Capture) > 0 {
		c.Capture = slices.Clone(c.Capture)
		for i := range c.Capture {
			c.Capture[i].Method = strings.ToUpper(orString(c.Capture[i].Method, http.MethodPost))
		}
	}
	return c
}

// withDependencies returns o, with defaults, and its nil dependencies
// replaced by working ones, and its maps and slices copied so a caller
// cannot change them under the Provider.
func (o Options) withDependencies() Options {
	o = o.WithDefaults()
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Scopes = slices.Clone(o.Scopes)
	o.Claims = slices.Clone(o.Claims)
	o.Resources = slices.Clone(o.Resources)
	o.AuthParams = maps.Clone(o.AuthParams)
	o.TokenParams = maps.Clone(o.TokenParams)
	c := &o.Custom
	c.RefreshRequest.Body = maps.Clone(c.RefreshRequest.Body)
	c.RefreshRequest.Headers = maps.Clone(c.RefreshRequest.Headers)
	c.RefreshRequest.SecretHeaders = maps.Clone(c.RefreshRequest.SecretHeaders)
	c.DeadStatuses = slices.Clone(c.DeadStatuses)
	c.DeadErrorValues = slices.Clone(c.DeadErrorValues)
	return o
}

// clockSkew is the skew tolerated, once defaults are in.
func (o Options) clockSkew() time.Duration {
	if o.ClockSkew == nil {
		return defaultClockSkew
	}
	return *o.ClockSkew
}

// Validate reports every problem in o, after defaults, with paths relative
// to the options ("issuer", "custom.capture[1].path"), and a warning when
// an oidc provider is not asked for a refresh token. It reads no file and
// calls nobody.
func (o Options) Validate() []problem.Problem {
	o = o.WithDefaults()
	var ps problem.List
	if !oneOf(&ps, "type", o.Type, TypeOIDC, TypeOAuth2, TypeCustom) {
		return ps
	}
	o.validateType(&ps)
	if o.Type != TypeCustom && len(o.Custom.DeadStatuses) > 0 {
		ps.Add("custom.dead_statuses", "only for provider.type custom: with %s only invalid_grant means the refresh token is dead, and other refusals (invalid_client, a 401) keep the session", o.Type)
	}
	if o.ClientID == "" && o.Type != TypeCustom {
		ps.Add("client_id", "required with provider.type %s", o.Type)
	}
	o.validateEndpoints(&ps)
	o.validateClientAuth(&ps)
	if o.AccessTokenLifetime <= 0 {
		ps.Add("access_token_lifetime", "must be a positive duration")
	}
	if o.Timeout <= 0 {
		ps.Add("timeout", "must be a positive duration")
	}
	if o.MaxResponseBytes <= 0 {
		ps.Add("max_response_bytes", "must be positive")
	}
	if o.clockSkew() < 0 {
		ps.Add("clock_skew", "must not be negative")
	}
	for i, claim := range o.Claims {
		if claim == "" {
			ps.Add(fmt.Sprintf("claims[%d]", i), "must not be empty")
		}
	}
	return ps
}

// validateType checks what each provider type requires.
func (o Options) validateType(ps *problem.List) {
	switch o.Type {
	case TypeOIDC:
		if o.Issuer == "" {
			ps.Add("issuer", "required with provider.type oidc")
		} else if !valid.SecureURL(o.Issuer) {
			ps.Add("issuer", "must be an https URL (http allowed only for loopback)")
		}
		if !slices.Contains(o.Scopes, "openid") {
			ps.Add("scopes", "must include openid with provider.type oidc")
		}
		// Google asks for a refresh token with access_type=offline
		// instead of the offline_access scope.
		if !slices.Contains(o.Scopes, "offline_access") && o.AuthParams["access_type"] != "offline" {
			ps.Warn("scopes", "offline_access is missing: most providers then issue no refresh token, and sessions end when the access token expires")
		}
	case TypeOAuth2:
		if o.AuthorizationEndpoint == "" {
			ps.Add("authorization_endpoint", "required with provider.type oauth2")
		}
		if o.TokenEndpoint == "" {
			ps.Add("token_endpoint", "required with provider.type oauth2")
		}
	case TypeCustom:
		if o.TokenEndpoint == "" {
			ps.Add("token_endpoint", "required with provider.type custom (the refresh endpoint)")
		}
		ps.Append("custom", o.Custom.validate())
	}
}

// validateEndpoints checks that every explicit endpoint is https (or http
// on loopback).
func (o Options) validateEndpoints(ps *problem.List) {
	for _, e := range []struct{ key, value string }{
		{"authorization_endpoint", o.AuthorizationEndpoint},
		{"token_endpoint", o.TokenEndpoint},
		{"revocation_endpoint", o.RevocationEndpoint},
		{"end_session_endpoint", o.EndSessionEndpoint},
		{"userinfo_endpoint", o.UserinfoEndpoint},
		{"jwks_uri", o.JWKSURI},
	} {
		if e.value != "" && !valid.SecureURL(e.value) {
			ps.Add(e.key, "must be an https URL (http allowed only for loopback)")
		}
	}
}

// validateClientAuth checks the client authentication method against the
// credentials, and the features that need a confidential client or an
// RFC 6749 token endpoint.
func (o Options) validateClientAuth(ps *problem.List) {
	if !oneOf(ps, "auth_method", o.AuthMethod, AuthMethodBasic, AuthMethodPost, AuthMethodPrivateKeyJWT, AuthMethodTLS, AuthMethodNone) {
		return
	}
	secretMethod := o.AuthMethod == AuthMethodBasic || o.AuthMethod == AuthMethodPost
	switch {
	case !secretMethod && !o.ClientSecret.IsZero():
		ps.Add("client_secret", "must not be set with provider.auth_method %s", o.AuthMethod)
	case secretMethod && o.ClientSecret.IsZero():
		ps.Add("client_secret", "required with provider.auth_method %s (or client_secret_file)", o.AuthMethod)
	}
	o.validateKeyMethods(ps)
	if o.DPoP && o.Type == TypeCustom {
		ps.Add("dpop", "needs an RFC 6749 token endpoint (provider.type oidc or oauth2)")
	}
	if oneOf(ps, "par", o.PAR, PARAuto, PARAlways, PARNever) && o.PAR == PARAlways && o.Type != TypeOIDC {
		ps.Add("par", "always needs the provider's discovery document (provider.type oidc), which names the pushed authorization request endpoint")
	}
}

// validateKeyMethods checks the private key of private_key_jwt and the
// client certificate of tls_client_auth.
func (o Options) validateKeyMethods(ps *problem.List) {
	hasKey := o.PrivateKeyFile != "" || !o.PrivateKey.IsZero()
	switch {
	case o.AuthMethod == AuthMethodPrivateKeyJWT && !hasKey:
		ps.Add("private_key_file", "required with provider.auth_method private_key_jwt")
	case o.AuthMethod != AuthMethodPrivateKeyJWT && hasKey:
		ps.Add("private_key_file", "only with provider.auth_method private_key_jwt (got %s): a key that signs nothing is a mistake", o.AuthMethod)
	case hasKey && !o.PrivateKey.IsZero():
		if _, err := parseSigningKey([]byte(o.PrivateKey.Reveal())); err != nil {
			ps.Add("private_key_file", "%v", err)
		}
	}
	hasCert := o.TLSClientCertFile != "" || o.TLSClientKeyFile != ""
	switch {
	case o.AuthMethod == AuthMethodTLS && (o.TLSClientCertFile == "" || o.TLSClientKeyFile == ""):
		ps.Add("tls_client_cert_file", "tls_client_cert_file and tls_client_key_file are required with provider.auth_method tls_client_auth")
	case o.AuthMethod != AuthMethodTLS && hasCert:
		ps.Add("tls_client_cert_file", "only with provider.auth_method tls_client_auth (got %s)", o.AuthMethod)
	}
	if o.AuthMethod == AuthMethodTLS && o.ClientID == "" {
		ps.Add("client_id", "required with provider.auth_method tls_client_auth (RFC 8705 §2)")
	}
}

// Confidential reports whether the client authenticates itself, so it may
// use grants only a confidential client gets (client credentials, token
// exchange).
func (o Options) Confidential() bool {
	return o.Type != TypeCustom && o.WithDefaults().AuthMethod != AuthMethodNone
}

// validate checks a custom provider's options, with paths relative to
// them.
func (c CustomOptions) validate() []problem.Problem {
	var ps problem.List
	rt := &c.RefreshRequest
	if !valid.Token(rt.Method) {
		ps.Add("refresh_request.method", "must be an HTTP method")
	}
	oneOf(&ps, "refresh_request.format", rt.Format, FormatJSON, FormatForm)
	if !bodyHasPlaceholder(rt.Body) {
		ps.Add("refresh_request.body", "must contain %q in a value", RefreshTokenPlaceholder)
	}
	for _, name := range slices.Sorted(maps.Keys(rt.Headers)) {
		if !valid.Token(name) {
			ps.Add("refresh_request.headers."+name, "is not a valid header name")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rt.HeaderFiles)) {
		if !valid.Token(name) {
			ps.Add("refresh_request.header_files."+name, "is not a valid header name")
		}
	}
	if c.Mapping.AccessToken == "" {
		ps.Add("token_response.access_token", "required with provider.type custom (the JSON field holding the access token)")
	}
	for i, s := range c.DeadStatuses {
		if s < 100 || s > 599 {
			ps.Add(fmt.Sprintf("dead_statuses[%d]", i), "must be an HTTP status code")
		}
	}
	if c.DeadErrorField == "" && len(c.DeadErrorValues) > 0 {
		ps.Add("dead_error_field", "required with dead_error_values")
	}
	for i, r := range c.Capture {
		ps.Append(fmt.Sprintf("capture[%d]", i), r.validate())
	}
	return ps
}

// validate checks a capture route's method and path; whether a route
// serves the path is config's to check.
func (r CaptureRoute) validate() []problem.Problem {
	var ps problem.List
	if !valid.Token(r.Method) {
		ps.Add("method", "must be an HTTP method")
	}
	switch {
	case r.Path == "":
		ps.Add("path", "required")
	case !strings.HasPrefix(r.Path, "/") || !valid.CleanPath(r.Path):
		ps.Add("path", "must be a path starting with \"/\"")
	}
	return ps
}

func bodyHasPlaceholder(body map[string]string) bool {
	for _, v := range body {
		if strings.Contains(v, RefreshTokenPlaceholder) {
			return true
		}
	}
	return false
}

// oneOf checks that value is one of allowed and reports whether it is.
func oneOf(ps *problem.List, path, value string, allowed ...string) bool {
	if slices.Contains(allowed, value) {
		return true
	}
	ps.Add(path, "must be one of %s (got %q)", strings.Join(allowed, ", "), value)
	return false
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
