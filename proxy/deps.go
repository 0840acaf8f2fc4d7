package proxy

import (
	"context"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

// Sessions is what the HTTP layer needs from the session manager
// (*session.Manager implements it).
type Sessions interface {
	// Create stores a new session and returns its fresh ticket. via is a
	// metric label: "login" or "capture".
	Create(ctx context.Context, rec session.Record, via string) (session.Ticket, error)
	// Load returns the session of t: session.ErrNoSession when there is
	// none (missing, expired, wrong key), session.ErrStoreUnavailable when
	// the store cannot be reached.
	Load(ctx context.Context, t session.Ticket) (*session.Session, error)
	// AccessToken returns a usable access token for t, refreshing when it
	// is stale or expired, or when rejected equals the stored token (the
	// upstream answered 401 to it). Errors: session.ErrNoSession,
	// session.ErrSessionExpired (refresh token dead: clear the cookie),
	// *session.UnavailableError (transient: 503 with Retry-After),
	// session.ErrStoreUnavailable.
	AccessToken(ctx context.Context, t session.Ticket, rejected secret.String) (session.AccessToken, error)
	// End deletes the session of t (and its index entries) and returns the
	// record it held, for revocation and id_token_hint. reason is a metric
	// label ("logout", "backchannel", ...).
	End(ctx context.Context, t session.Ticket, reason string) (*session.Record, error)
	// EndBySID and EndBySubject end every session carrying that provider
	// sid / sub (back-channel logout) and report how many.
	EndBySID(ctx context.Context, sid string) (int, error)
	EndBySubject(ctx context.Context, sub string) (int, error)
	// SaveLoginState and TakeLoginState keep one-time login states;
	// TakeLoginState returns session.ErrUnknownState for an unknown,
	// expired or already used state.
	SaveLoginState(ctx context.Context, st session.LoginState) error
	TakeLoginState(ctx context.Context, state string) (*session.LoginState, error)
}

// Provider is what the HTTP layer needs from the identity provider
// (*idp.Provider implements it).
type Provider interface {
	// AuthCodeURL builds the authorization request URL with state, nonce
	// (omitted by plain OAuth2 providers), the S256 challenge of verifier,
	// scopes and configured extra parameters.
	AuthCodeURL(state, nonce, verifier string) string
	// Exchange trades an authorization code for tokens.
	Exchange(ctx context.Context, code, verifier string) (*idp.Token, error)
	// Identify turns a fresh token response into the user's identity: for
	// OIDC it verifies the ID token (signature, iss, aud, exp, nonce); for
	// plain OAuth2 it asks the userinfo endpoint when one is configured.
	Identify(ctx context.Context, tok *idp.Token, nonce string) (*idp.Identity, error)
	// Revoke revokes a refresh token (RFC 7009); idp.ErrNotSupported when
	// the provider has no revocation endpoint.
	Revoke(ctx context.Context, refreshToken secret.String) error
	// EndSessionURL is the RP-initiated logout URL, "" when the provider
	// has no end_session_endpoint.
	EndSessionURL(idTokenHint secret.String, postLogoutRedirectURI, state string) string
	// VerifyLogoutToken validates a back-channel logout token.
	VerifyLogoutToken(ctx context.Context, raw string) (*idp.LogoutToken, error)
	// Capture reads a captured login answer (custom providers): ok is false
	// when body holds no mapped access token; stripped is body without the
	// token fields.
	Capture(body []byte) (tok *idp.Token, id *idp.Identity, stripped []byte, ok bool, err error)
}

// Readiness is checked by /readyz (store reachable, provider metadata and
// keys loaded).
type Readiness interface {
	Ready(ctx context.Context) error
}
