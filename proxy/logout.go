package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

// revokeTimeout bounds the revocation call at logout when the provider
// client sets no shorter limit, so a slow provider cannot hold the logout
// answer forever.
const revokeTimeout = 10 * time.Second

// sessionEnder ends the session of a logout.
type sessionEnder interface {
	// End deletes the session of t (and its index entries) and returns the
	// record it held, for revocation and the logout URL.
	End(ctx context.Context, t session.Ticket, reason session.EndReason) (*session.Record, error)
}

// logoutProvider is what a logout asks of the provider.
type logoutProvider interface {
	// Revoke revokes a refresh token (RFC 7009); idp.ErrNotSupported when
	// the provider has no revocation endpoint.
	Revoke(ctx context.Context, refreshToken secret.String) error
	// EndSessionURL is the RP-initiated logout URL, "" when the provider
	// has no end_session_endpoint. It identifies the client by client_id
	// and never carries the ID token: idToken only lends its login_hint
	// claim, when it has one, as logout_hint.
	EndSessionURL(idToken secret.String, postLogoutRedirectURI, state string) string
}

// logoutAnswer is the JSON answer of POST {prefix}/logout to fetch/XHR.
type logoutAnswer struct {
	// LogoutURL is where the browser goes next: the provider's
	// end_session_endpoint (RP-initiated logout) or the post-logout URI.
	LogoutURL string `json:"logout_url"`
}

// logout answers POST {prefix}/logout. It passes the CSRF guard (origin and
// header), ends the session (of the first session cookie whose session
// opens, when there are several), revokes the refresh token when configured
// (a failed revocation is logged and counted but does not block the
// logout), clears the cookie, and sends the browser on to the provider's
// end-session URL: as JSON {"logout_url": ...} to fetch/XHR callers, as a
// 303 redirect to form posts. The end-session URL names the client and the
// post-logout URI, never the ID token (see idp.Provider.EndSessionURL).
// Without a session it still clears the cookie
// and answers the same way with the post-logout URI (local logout). When
// the store cannot be reached it answers 503 and keeps the cookie, so a
// retry can still end the session and revoke its token.
func (a *authHandler) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := a.csrf.Check(r, true); err != nil {
		a.fail(w, r, "logout", err)
		return
	}
	_, rec, err := openFirst(readSessionCookies(a.cookie, r), func(t session.Ticket) (*session.Record, error) {
		return a.ender.End(ctx, t, session.ReasonLogout)
	})
	switch {
	case errors.Is(err, session.ErrNoSession), errors.Is(err, session.ErrSessionExpired):
		rec = nil
	case err != nil:
		a.fail(w, r, "end session", err)
		return
	}
	if rec != nil && a.revokeOnLogout && !rec.RefreshToken.IsZero() {
		a.revoke(ctx, r, rec)
	}
	a.clearCookie(w)

	next := a.postLogoutURI
	if rec != nil {
		if u := a.logouts.EndSessionURL(rec.IDToken, a.postLogoutURI, idp.NewState()); u != "" {
			next = u
		}
		a.logger(r).Info("auth: logout", "subject", rec.Subject)
	}
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, logoutAnswer{LogoutURL: next})
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// newRevocations builds tokenrelay_revocations_total{result} and registers
// it on reg (nil: not registered, still counted). Both series exist from the
// start, so a rate() over them works before the first failure.
func newRevocations(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenrelay_revocations_total",
		Help: "Refresh-token revocations at logout, by result (success, failed).",
	}, []string{"result"})
	c.WithLabelValues("success")
	c.WithLabelValues("failed")
	if reg != nil {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("proxy: auth: register metrics: %w", err)
		}
	}
	return c, nil
}

// revoke revokes rec's refresh token. The call survives the client going
// away (the session is already gone, the token should be too) but is
// bounded by revokeTimeout.
func (a *authHandler) revoke(ctx context.Context, r *http.Request, rec *session.Record) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	err := a.logouts.Revoke(ctx, rec.RefreshToken)
	switch {
	case errors.Is(err, idp.ErrNotSupported):
	case err != nil:
		a.revocations.WithLabelValues("failed").Inc()
		a.logger(r).Warn("auth: refresh token revocation failed; logout continues", "subject", rec.Subject, "err", err)
	default:
		a.revocations.WithLabelValues("success").Inc()
	}
}

// wantsJSON reports whether r comes from fetch/XHR rather than a form post
// or a navigation.
func wantsJSON(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Mode") {
	case "cors", "same-origin":
		return true
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(v), "application/json") {
			return true
		}
	}
	return false
}
