package session

import (
	"errors"
	"fmt"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Errors the manager returns; the HTTP layer maps them to statuses in one
// place.
var (
	// ErrNoSession: no cookie, a tampered cookie, or no live session for
	// it. HTTP: 401 login_required (or a redirect to login).
	ErrNoSession = errors.New("session: no session")
	// ErrSessionExpired: the provider refused the refresh token
	// (invalid_grant) or the absolute lifetime ended. The session is gone.
	// HTTP: 401 session_expired and the cookie cleared.
	ErrSessionExpired = errors.New("session: expired")
	// ErrStoreUnavailable wraps failures to reach the store. HTTP: 503
	// store_unavailable. The session is not lost.
	ErrStoreUnavailable = errors.New("session: store unavailable")
	// ErrUnknownState: a login state that is unknown, expired or used.
	ErrUnknownState = errors.New("session: unknown or used login state")
)

// UnavailableError says a refresh failed transiently and the access token
// has expired, so no request can be served now; the session is kept.
// HTTP: 503 with Retry-After.
type UnavailableError struct {
	RetryAfter time.Duration
	Err        error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("session: refresh unavailable (retry after %s): %v", e.RetryAfter, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Record is what a session holds. It is sealed before it reaches the store.
type Record struct {
	AccessToken  secret.String
	RefreshToken secret.String
	IDToken      secret.String
	AccessExpiry time.Time
	// RefreshExpiry is zero when the provider did not say.
	RefreshExpiry time.Time

	Issuer  string
	Subject string
	SID     string
	// Claims are the selected identity claims shown by /.auth/session.
	Claims map[string]any

	CreatedAt time.Time
}

// Session is a loaded session.
type Session struct {
	Record
	// Expires is when the session ends if unused: the earlier of the idle
	// timeout from now and the absolute lifetime.
	Expires time.Time
}

// AccessToken is the answer of Manager.AccessToken.
type AccessToken struct {
	Value secret.String
	// Expiry of Value.
	Expiry time.Time
	// Refreshed is set when this call waited for a refresh (its own or a
	// shared one), for the access log.
	Refreshed bool
}

// LoginState is the one-time state of a login in progress.
type LoginState struct {
	State    string
	Nonce    string
	Verifier string
	// ReturnTo is a validated same-origin relative path.
	ReturnTo  string
	CreatedAt time.Time
}
