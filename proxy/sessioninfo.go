package proxy

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/tokenrelay/tokenrelay/policy"
	"github.com/tokenrelay/tokenrelay/session"
)

// sessionLoader reads a session for GET {prefix}/session.
type sessionLoader interface {
	// Load returns the session of t and slides its idle timeout:
	// session.ErrNoSession when there is none (missing, expired, wrong
	// key), session.ErrStoreUnavailable when the store cannot be reached.
	Load(ctx context.Context, t session.Ticket) (*session.Session, error)
}

// sessionInfo is the answer of GET {prefix}/session. It never holds a
// token.
type sessionInfo struct {
	Authenticated bool           `json:"authenticated"`
	Subject       string         `json:"subject,omitempty"`
	Claims        map[string]any `json:"claims,omitempty"`
	// ExpiresAt is when the session ends if unused (idle timeout or
	// absolute lifetime, whichever is first).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// AccessTokenExpiresAt is when the current access token expires;
	// tokenrelay refreshes it before then.
	AccessTokenExpiresAt *time.Time `json:"access_token_expires_at,omitempty"`
	// Routes says, for each route path with a policy, whether the user
	// may use it: allowed, denied, step_up or conditional.
	Routes map[string]policy.Access `json:"routes,omitempty"`
}

// session answers GET {prefix}/session. A logged-in browser gets
//
//	200 {"authenticated": true, "subject": "...", "claims": {...},
//	     "expires_at": "<RFC 3339>", "access_token_expires_at": "<RFC 3339>",
//	     "routes": {"/api/admin/": "denied", ...}}
//
// and a browser without a live session gets 200 {"authenticated": false}
// rather than a 401, so a single-page app can ask "who is logged in?"
// without treating the answer as an error. With several session cookies the
// first whose session opens answers; a stale cookie is cleared only when it
// is the request's only session cookie. A store that cannot be reached
// gives 503 store_unavailable. The answer never contains a token.
func (a *authHandler) session(w http.ResponseWriter, r *http.Request) {
	cookies := readSessionCookies(a.cookie, r)
	_, s, err := openFirst(cookies, func(t session.Ticket) (*session.Session, error) {
		return a.loader.Load(r.Context(), t)
	})
	if errors.Is(err, session.ErrNoSession) || errors.Is(err, session.ErrSessionExpired) {
		if len(cookies.tickets) > 0 && !cookies.ambiguous() {
			a.clearCookie(w)
		}
		writeJSON(w, http.StatusOK, sessionInfo{})
		return
	}
	if err != nil {
		a.fail(w, r, "load session", err)
		return
	}
	claims := s.Claims
	if claims == nil {
		claims = map[string]any{}
	}
	expires, accessExpires := s.Expires.UTC(), s.AccessExpiry.UTC()
	writeJSON(w, http.StatusOK, sessionInfo{
		Authenticated:        true,
		Subject:              s.Subject,
		Claims:               claims,
		ExpiresAt:            &expires,
		AccessTokenExpiresAt: &accessExpires,
		Routes:               a.routes.preview(policy.User{Subject: s.Subject, Claims: s.Claims}),
	})
}

// preview says, for each route with a policy, what u may expect of it
// (policy.Preview); nil when no route has a policy.
func (t *routeTable) preview(u policy.User) map[string]policy.Access {
	if t == nil {
		return nil
	}
	var out map[string]policy.Access
	for _, rt := range t.routes {
		if rt.policy == nil {
			continue
		}
		if out == nil {
			out = map[string]policy.Access{}
		}
		out[rt.Path] = rt.policy.Preview(u)
	}
	return out
}
