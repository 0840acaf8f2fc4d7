package idp

import (
	"errors"
	"time"
)

// ErrNotSupported is returned when the provider lacks the endpoint an
// operation needs (no revocation_endpoint, no userinfo_endpoint).
var ErrNotSupported = errors.New("idp: not supported by this provider")

// Identity is who logged in, taken from a verified ID token, the userinfo
// endpoint, or a captured login answer.
type Identity struct {
	Issuer  string
	Subject string
	// SID is the OIDC session id (sid claim), used by back-channel logout.
	SID string
	// Claims are the configured claims to keep in the session (never
	// tokens).
	Claims map[string]any
	// Expiry is the ID token's exp, zero when there is no ID token.
	Expiry time.Time
}

// LogoutToken is a validated OIDC back-channel logout token.
type LogoutToken struct {
	Issuer   string
	Subject  string
	SID      string
	JTI      string
	IssuedAt time.Time
}
