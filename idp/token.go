package idp

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Token is what a token endpoint (or a captured login response) handed out.
//
// Expiry is always set by the package: from the response's expires-in field,
// else the access token's JWT exp claim, else the configured lifetime.
// RefreshToken is empty when the response carried none; callers then keep the
// refresh token they already had (RFC 6749 §6).
type Token struct {
	AccessToken  secret.String
	RefreshToken secret.String
	IDToken      secret.String
	TokenType    string
	Expiry       time.Time
	// RefreshExpiry is when the refresh token expires, when the provider says
	// so (refresh_expires_in, as Keycloak sends); zero when unknown.
	RefreshExpiry time.Time
	// DPoPKey is the key a login's tokens are bound to (set by Exchange
	// when the provider uses DPoP); the session keeps it.
	DPoPKey *DPoPKey

	// subject and profile come from the custom Subject mapping (a
	// captured login answer), for Identify.
	subject string
	profile map[string]any
}

// ErrInvalidGrant is matched by errors.Is for a *TokenError whose code is
// invalid_grant, or which a custom provider's rules classify as "refresh token
// dead". The session that holds that refresh token is over.
var ErrInvalidGrant = errors.New("idp: invalid_grant")

// ErrClientRejected is matched by errors.Is for a *TokenError that is the
// provider refusing tokenrelay's client or request rather than the refresh
// token: invalid_client, unauthorized_client, unsupported_grant_type, a 401
// or 403 without invalid_grant, a wrong token endpoint. It is a
// configuration error: no session should end for it.
var ErrClientRejected = errors.New("idp: the provider rejects the client")

// TokenError is an error answer from, or a failed call to, the token endpoint.
type TokenError struct {
	// Code is the RFC 6749 §5.2 error code ("invalid_grant",
	// "invalid_client", ...) or empty when the answer had none.
	Code        string
	Description string
	// Status is the HTTP status of the answer, 0 when no answer arrived.
	Status int
	// RetryAfter is the server's Retry-After, when it sent one.
	RetryAfter time.Duration
	// Dead is set when the refresh token is known to be unusable
	// (invalid_grant, or a custom provider's dead-token rule).
	Dead bool
	// Err is the underlying transport or decoding error, if any.
	Err error
	// Sent is set when the request was fully written to the provider. With
	// no status (Status 0) it means the provider may have acted on the
	// request without tokenrelay seeing the answer: see OutcomeUnknown.
	Sent bool
}

func (e *TokenError) Error() string {
	msg := "idp: token endpoint"
	if e.Status != 0 {
		msg += fmt.Sprintf(": status %d", e.Status)
	}
	if e.Code != "" {
		msg += ": " + e.Code
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *TokenError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalidGrant) true for dead refresh tokens and
// errors.Is(err, ErrClientRejected) true for refusals of the client.
func (e *TokenError) Is(target error) bool {
	switch target {
	case ErrInvalidGrant:
		return e.Dead
	case ErrClientRejected:
		return e.ClientRejected()
	}
	return false
}

// ClientRejected reports whether the provider answered, and refused the
// client or the request rather than the refresh token: an error answer that
// is neither Dead nor Temporary (a 4xx other than 429 without
// invalid_grant, a 3xx, an error code in a 2xx).
func (e *TokenError) ClientRejected() bool {
	if e.Dead || e.Status == 0 || e.Temporary() {
		return false
	}
	return e.Code != "" || e.Status < 200 || e.Status >= 300
}

// OutcomeUnknown reports whether the provider may have acted on the request
// without tokenrelay learning the result: the request was sent and no
// answer came back (a timeout, a connection reset), or a 2xx came back
// whose tokens could not be read. A rotating provider may have spent the
// refresh token; sending it again would be a reuse.
func (e *TokenError) OutcomeUnknown() bool {
	if !e.Sent || e.Dead {
		return false
	}
	return e.Status == 0 || (e.Status >= 200 && e.Status < 300 && e.Code == "")
}

// Temporary reports whether trying again later may succeed: no answer at all
// (network error, timeout), 5xx, 429, or an answer that could not be parsed.
// A dead refresh token and client errors such as invalid_client are not
// temporary.
func (e *TokenError) Temporary() bool {
	if e.Dead {
		return false
	}
	switch {
	case e.Status == 0:
		return true
	case e.Status == http.StatusTooManyRequests, e.Status >= 500:
		return true
	case e.Code == "" && e.Status >= 200 && e.Status < 300:
		// A 2xx that was not a usable token response (HTML, garbage).
		return true
	}
	return e.Code == "temporarily_unavailable"
}
