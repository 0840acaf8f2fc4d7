package session

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
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
	// Login is what the login that started the session asked the
	// provider for beyond a plain login (a step-up's acr_values, max_age,
	// prompt); zero for a plain login or a captured one.
	Login idp.LoginRequest

	CreatedAt time.Time

	// UserAgent is a short summary of the browser that logged in (such
	// as "Chrome 131 on Linux"), for the admin API. It is kept in the
	// session's admin entry (admin.go), not in the sealed record, so a
	// loaded record has it empty.
	UserAgent string

	// The refresh engine's bookkeeping, shared by every replica through
	// the record (refresh.go).

	// RefreshedAt is when the tokens were last refreshed; zero when not
	// since login. A refresh forced by an upstream 401 waits
	// MinRefreshInterval after it.
	RefreshedAt time.Time
	// RetryAt is the end of the session's failure backoff: no refresh is
	// attempted before it, on any replica.
	RetryAt time.Time
	// Attempt is a refresh whose outcome the record does not hold: in
	// flight, or lost with the replica or the connection that made it.
	Attempt Attempt

	// Tokens are the access tokens of route targets other than the
	// login's own (AccessToken), one per target, each obtained with the
	// session's one refresh token. The refresh engine keeps them; an
	// expired one is dropped at the next save.
	Tokens []TargetToken
	// DPoPKey is the session's DPoP private key (idp.DPoPKeySize bytes),
	// empty without DPoP; every token of the session is bound to it.
	DPoPKey []byte
}

// TargetToken is the access token of one route target (idp.Target).
type TargetToken struct {
	// Target is the target's idp.Target.Key.
	Target string
	Value  secret.String
	Expiry time.Time
	// RefreshedAt is when it was obtained: a refresh forced by an
	// upstream 401 waits MinRefreshInterval after it.
	RefreshedAt time.Time
}

// held is the access token of a target as a record holds it.
type held struct {
	value       secret.String
	expiry      time.Time
	refreshedAt time.Time
}

// held returns the access token of target (an idp.Target.Key; "" for
// the login's own); a zero held when the record has none yet.
func (rec *Record) held(target string) held {
	if target == "" {
		return held{rec.AccessToken, rec.AccessExpiry, rec.RefreshedAt}
	}
	for _, t := range rec.Tokens {
		if t.Target == target {
			return held{t.Value, t.Expiry, t.RefreshedAt}
		}
	}
	return held{}
}

// setHeld stores the access token of target, refreshed at now, and drops
// the tokens that have expired by now: a target no route asks for any
// more leaves no trace, and the login's own token, when routes use only
// tokens of their own, stops taking the room of a JWT (its expiry stays,
// for /.auth/session). A session's record stays within the store budget
// with two resources' tokens beside an ID token.
func (rec *Record) setHeld(target string, value secret.String, expiry, now time.Time) {
	if target == "" {
		rec.AccessToken, rec.AccessExpiry, rec.RefreshedAt = value, expiry, now
	} else if !now.Before(rec.AccessExpiry) {
		rec.AccessToken = ""
	}
	kept := make([]TargetToken, 0, len(rec.Tokens)+1)
	for _, t := range rec.Tokens {
		if t.Target != target && now.Before(t.Expiry) {
			kept = append(kept, t)
		}
	}
	if target != "" {
		kept = append(kept, TargetToken{Target: target, Value: value, Expiry: expiry, RefreshedAt: now})
	}
	rec.Tokens = kept
}

// attemptDigestSize is how many bytes of SHA-256 of a refresh token an
// Attempt keeps: enough to tell two tokens apart, sealed like the rest.
const attemptDigestSize = 16

// Attempt records that a refresh token was sent to the token endpoint and
// the answer has not been saved yet. A replica writes it before the token
// leaves and clears it with the result, so whoever finds it later knows
// that the token may have been spent and its successor lost.
type Attempt struct {
	// Since is when the refresh token was first sent.
	Since time.Time
	// Token is a digest of the refresh token sent.
	Token [attemptDigestSize]byte
}

// IsZero reports whether a is no attempt.
func (a Attempt) IsZero() bool { return a.Since.IsZero() }

// newAttempt records that rt is about to be sent at now.
func newAttempt(rt secret.String, now time.Time) Attempt {
	return Attempt{Since: now, Token: digestToken(rt)}
}

// sends reports whether a is an attempt with refresh token rt.
func (a Attempt) sends(rt secret.String) bool {
	return !a.IsZero() && a.Token == digestToken(rt)
}

func digestToken(rt secret.String) [attemptDigestSize]byte {
	sum := sha256.Sum256([]byte(rt.Reveal()))
	return [attemptDigestSize]byte(sum[:attemptDigestSize])
}

// Session is a loaded session.
type Session struct {
	Record
	// Expires is when the session ends if unused: the earlier of the idle
	// timeout from now and the absolute lifetime.
	Expires time.Time
}

// TokenRequest asks Manager.AccessToken for the access token of a session.
type TokenRequest struct {
	// Ticket names the session.
	Ticket Ticket
	// Rejected, when set, is the access token the upstream answered 401
	// to. It forces a refresh while it is the stored token (and the last
	// refresh is MinRefreshInterval old), and is never handed out again.
	Rejected secret.String
	// Target is the token asked for: zero for the login's own; else the
	// access token of that resource and scope, obtained with the
	// session's refresh token (RFC 8707) and kept in the record.
	Target idp.Target
	// Exchange asks for Target by token exchange (RFC 8693) of the
	// login's own access token instead, cached per session and target in
	// this process.
	Exchange bool
	// Opened, when set, is the session Manager.Open read for Ticket in
	// this request: AccessToken goes on from it instead of reading the
	// store again.
	Opened *Opened
}

// Opened is a session read for one request by Manager.Open, claims
// included: who the user is, for the request's policy and the identity
// told to its upstream, and what AccessToken needs to hand out its token
// without a second store read. It belongs to that request; it is not safe
// to share between goroutines, and its record must not be modified.
type Opened struct {
	l *loaded
}

// Record is the session as stored when it was read. Do not modify it.
func (o *Opened) Record() *Record { return o.l.rec }

// CacheKey names the session for caches that live in this process (the
// identity assertion's): a hash of the session id, never the id itself,
// the same for every request of the session.
func (o *Opened) CacheKey() string { return o.l.key }

// AccessToken is the answer of Manager.AccessToken.
type AccessToken struct {
	Value secret.String
	// Expiry of Value.
	Expiry time.Time
	// Refreshed is set when this call waited for a refresh (its own or a
	// shared one), for the access log.
	Refreshed bool
	// DPoP is the key Value is bound to; nil for a Bearer token. Every
	// request sent with Value carries a proof signed with it.
	DPoP *idp.DPoPKey
	// header is Header's value when it was built ahead; empty otherwise.
	header secret.String
}

// Header returns the Authorization header value that sends the token as a
// Bearer token: "Bearer " and Value (empty when Value is). On the request
// path it is built once per record rather than once per request. A DPoP
// token's header is the proxy's to build, with its proof.
func (a AccessToken) Header() secret.String {
	if !a.header.IsZero() && a.header[len(bearerPrefix):] == a.Value {
		return a.header
	}
	return bearerOf(a.Value)
}

// LoginState is the one-time state of a login in progress. It lives sealed
// in the browser's login-binding cookie (Manager.SealLogin), never in the
// store.
type LoginState struct {
	State    string
	Nonce    string
	Verifier string
	// ReturnTo is a validated same-origin relative path.
	ReturnTo string
	// Request is what the login asks the provider for beyond a plain
	// login (a step-up); the session it starts records it as
	// Record.Login.
	Request   idp.LoginRequest
	CreatedAt time.Time
}

// ErrClientRejected: the provider refused tokenrelay's client (a wrong
// client secret, a disabled client), not the refresh token.
var ErrClientRejected = errors.New("session: the provider rejects the client")

// ErrTokenRefused: the provider refused the token of a route's target
// (invalid_target, invalid_scope, an exchange it does not allow) while the
// session, and the client, are fine. HTTP: 403 token_refused.
var ErrTokenRefused = errors.New("session: the provider refused this route's token")
