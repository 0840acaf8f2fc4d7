package idp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strings"

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
// then the configured AuthParams. Query parameters already in the
// authorization endpoint URL are kept.
func (p *Provider) AuthCodeURL(state, nonce, verifier string) string {
	u, err := url.Parse(p.authURL) // New checked it
	if err != nil || p.authURL == "" {
		return ""
	}
	q := u.Query()
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
	u.RawQuery = q.Encode()
	return u.String()
}

// EndSessionURL is the OIDC RP-Initiated Logout 1.0 URL: the provider's
// end_session_endpoint with id_token_hint (when non-empty),
// post_logout_redirect_uri and state (when non-empty) and client_id. It is
// "" when the provider has no end_session_endpoint.
func (p *Provider) EndSessionURL(idTokenHint secret.String, postLogoutRedirectURI, state string) string {
	if p.endSessionURL == "" {
		return ""
	}
	u, err := url.Parse(p.endSessionURL)
	if err != nil {
		return ""
	}
	q := u.Query()
	if !idTokenHint.IsZero() {
		q.Set("id_token_hint", idTokenHint.Reveal())
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
