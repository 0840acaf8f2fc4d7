package proxy

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/session"
)

// authOptions configures tokenrelay's own endpoints under Prefix.
type authOptions struct {
	Sessions Sessions
	Provider Provider
	Cookie   session.CookieOptions
	// Prefix is the path prefix of the endpoints, e.g. "/.auth".
	Prefix    string
	PublicURL *url.URL
	// PostLogoutRedirectURI defaults to PublicURL + "/".
	PostLogoutRedirectURI string
	RevokeOnLogout        bool
	CSRF                  *csrfGuard
	SessionMaxAge         time.Duration
	Logger                *slog.Logger
	Registerer            prometheus.Registerer
	Now                   func() time.Time
}

// authHandler serves login, callback, session, logout and back-channel
// logout. It is safe for concurrent use.
type authHandler struct {
	o authOptions
}

// newAuthHandler checks o and builds the handler.
func newAuthHandler(o authOptions) (*authHandler, error) {
	if o.Sessions == nil || o.Provider == nil || o.CSRF == nil {
		return nil, errors.New("proxy: auth: Sessions, Provider and CSRF are required")
	}
	return &authHandler{o: o}, nil
}

// ServeHTTP serves every path under the prefix.
func (a *authHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
}
