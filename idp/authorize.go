package idp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenrelay/tokenrelay/secret"
)

// NewState returns a random login state: 256 bits, base64url.
func NewState() string { return randomString(32) }

// NewNonce returns a random OIDC nonce: 256 bits, base64url.
func NewNonce() string { return randomString(32) }

// NewVerifier returns a random PKCE code verifier: 256 bits as 43 base64url
// characters, the shortest RFC 7636 §4.1 allows and its recommended form.
func NewVerifier() string { return randomString(32) }

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24).
	return base64.RawURLEncoding.EncodeToString(b)
}

// challengeS256 is the RFC 7636 §4.2 S256 code challenge of verifier.
func challengeS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// reservedAuthParams are set by AuthCodeURL and cannot be replaced by
// AuthParams: replacing state, nonce or the PKCE challenge would break the
// login's defences.
var reservedAuthParams = map[string]bool{
	"response_type": true, "client_id": true, "redirect_uri": true, "scope": true,
	"state": true, "nonce": true, "code_challenge": true, "code_challenge_method": true,
}

// AuthCodeURL builds the authorization request URL (RFC 6749 §4.1.1 with
// RFC 7636 PKCE): response_type=code, client_id, redirect_uri, scope
// (space-separated, omitted when no scopes are configured), state, nonce
// (oidc only), code_challenge=S256(verifier), code_challenge_method=S256,
// a resource (RFC 8707) for each of Resources, then the configured
// AuthParams, then what req asks for: acr_values and max_age, and prompt
// values added to the configured prompt. Query parameters already in the
// authorization endpoint URL are kept.
func (p *Provider) AuthCodeURL(state, nonce, verifier string, req LoginRequest) string {
	u, err := url.Parse(p.authURL) // New checked it
	if err != nil || p.authURL == "" {
		return ""
	}
	u.RawQuery = p.authParams(u.Query(), state, nonce, verifier, req).Encode()
	return u.String()
}

// authParams adds the parameters of an authorization request to q.
func (p *Provider) authParams(q url.Values, state, nonce, verifier string, req LoginRequest) url.Values {
	for k, v := range p.opts.AuthParams {
		if !reservedAuthParams[k] {
			q.Set(k, v)
		}
	}
	q.Set("response_type", "code")
	q.Set("client_id", p.opts.ClientID)
	if p.opts.RedirectURL != "" {
		q.Set("redirect_uri", p.opts.RedirectURL)
	}
	if len(p.opts.Scopes) > 0 {
		q.Set("scope", strings.Join(p.opts.Scopes, " "))
	}
	q.Set("state", state)
	if p.opts.Type == TypeOIDC && nonce != "" {
		q.Set("nonce", nonce)
	}
	q.Set("code_challenge", challengeS256(verifier))
	q.Set("code_challenge_method", "S256")
	for _, r := range p.opts.Resources {
		if !slices.Contains(q["resource"], r) {
			q.Add("resource", r)
		}
	}
	prompt := q.Get("prompt")
	req.Set(q)
	if len(req.Prompt) > 0 {
		q.Set("prompt", mergePrompt(prompt, req.Prompt))
	}
	return q
}

// AuthorizationURL is where a login sends the browser: the authorization
// request URL (AuthCodeURL), or, when requests are pushed (RFC 9126), the
// authorization endpoint with only client_id and the request_uri the
// provider answered the pushed request with, so that no authorization
// parameter travels through the browser. A pushed request that fails is
// a *TokenError.
func (p *Provider) AuthorizationURL(ctx context.Context, state, nonce, verifier string, req LoginRequest) (string, error) {
	if p.parURL == "" {
		return p.AuthCodeURL(state, nonce, verifier, req), nil
	}
	requestURI, err := p.pushAuthorization(ctx, p.authParams(url.Values{}, state, nonce, verifier, req))
	if err != nil {
		return "", fmt.Errorf("idp: pushed authorization request: %w", err)
	}
	u, err := url.Parse(p.authURL)
	if err != nil {
		return "", fmt.Errorf("idp: authorization endpoint: %w", err)
	}
	q := u.Query()
	q.Set("client_id", p.opts.ClientID)
	q.Set("request_uri", requestURI)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// pushAuthorization posts the authorization parameters to the pushed
// authorization request endpoint, with client authentication, and returns
// the request_uri it answers (RFC 9126 §2).
func (p *Provider) pushAuthorization(ctx context.Context, params url.Values) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	req, err := p.formRequest(ctx, p.parURL, params)
	if err != nil {
		return "", err
	}
	resp, err := p.opts.HTTPClient.Do(req)
	if err != nil {
		return "", &TokenError{Err: sanitize(err)}
	}
	defer resp.Body.Close()
	body, err := readCapped(resp.Body, p.opts.MaxResponseBytes)
	te := &TokenError{Status: resp.StatusCode, Err: err, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), p.opts.Now())}
	if err != nil {
		return "", te
	}
	obj, err := decodeObject(body)
	if err != nil {
		te.Err = err
		return "", te
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		te.Code, _ = obj["error"].(string)
		te.Description, _ = obj["error_description"].(string)
		return "", te
	}
	uri, _ := obj["request_uri"].(string)
	if uri == "" {
		te.Err = errors.New("the answer has no request_uri")
		return "", te
	}
	return uri, nil
}

// maxLogoutHint bounds the logout_hint copied into the end-session URL.
const maxLogoutHint = 1024

// EndSessionURL is the OIDC RP-Initiated Logout 1.0 URL: the provider's
// end_session_endpoint with client_id, post_logout_redirect_uri and state
// (each when non-empty), and logout_hint when the ID token carries a
// login_hint claim. It is "" when the provider has no end_session_endpoint.
//
// The ID token itself is never put in the URL (no id_token_hint): the URL
// goes through the browser, its history and the provider's access logs,
// and tokens never reach the browser. RP-Initiated Logout 1.0 §2 lets
// client_id identify the client instead, which the provider needs to check
// post_logout_redirect_uri against the client's registered ones. What the
// hint would add — naming the user, so the provider can skip asking — the
// login_hint claim gives without a token: it is the provider's own opaque
// value for exactly that (Microsoft Entra ID's optional claim, for one);
// providers that do not issue it ask the user to confirm the logout.
func (p *Provider) EndSessionURL(idToken secret.String, postLogoutRedirectURI, state string) string {
	if p.endSessionURL == "" {
		return ""
	}
	u, err := url.Parse(p.endSessionURL)
	if err != nil {
		return ""
	}
	q := u.Query()
	if hint := loginHint(idToken); hint != "" {
		q.Set("logout_hint", hint)
	}
	if postLogoutRedirectURI != "" {
		q.Set("post_logout_redirect_uri", postLogoutRedirectURI)
	}
	if state != "" {
		q.Set("state", state)
	}
	if p.opts.ClientID != "" {
		q.Set("client_id", p.opts.ClientID)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// loginHint returns the login_hint claim of a signed ID token, "" when it
// has none (or is not a readable JWS). The token was verified at login and
// comes from the sealed session record, so its payload is read without
// checking the signature again.
func loginHint(idToken secret.String) string {
	if idToken.IsZero() {
		return ""
	}
	var claims struct {
		jwt.RegisteredClaims
		LoginHint string `json:"login_hint"`
	}
	if _, _, err := jwt.NewParser().ParseUnverified(idToken.Reveal(), &claims); err != nil {
		return ""
	}
	if len(claims.LoginHint) > maxLogoutHint {
		return ""
	}
	return claims.LoginHint
}
