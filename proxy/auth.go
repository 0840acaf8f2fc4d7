package proxy

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/session"
)

const (
	// maxLogoutTokenBody bounds a back-channel logout request body. A logout
	// token is a signed JWT of a few hundred bytes; 64 KiB is generous.
	maxLogoutTokenBody = 64 << 10
	// revokeTimeout bounds the revocation call at logout when the provider
	// client sets no shorter limit, so a slow provider cannot hold the
	// logout answer forever.
	revokeTimeout = 10 * time.Second
	// defaultLoginCookieTTL is the login binding cookie's lifetime when
	// authOptions.LoginStateTTL is unset; it matches the default login
	// state TTL.
	defaultLoginCookieTTL = 10 * time.Minute
	// loginCookieStateChars is how much of the state names its binding
	// cookie: enough to keep concurrent logins apart.
	loginCookieStateChars = 16
	// reasonReplaced labels sessions ended because the browser logged in
	// again (tokenrelay_sessions_ended_total{reason}).
	reasonReplaced = "replaced"
	// maxProviderErrorLen bounds the provider's error text echoed back to
	// the browser after a failed login.
	maxProviderErrorLen = 256
)

// authOptions configures tokenrelay's own endpoints under Prefix.
type authOptions struct {
	Sessions Sessions
	Provider Provider
	// Cookie reads, sets and clears the session cookie.
	Cookie session.CookieOptions
	// Prefix is the path prefix of the endpoints; default defaultAuthPrefix
	// ("/.auth", handler.go).
	Prefix string
	// PublicURL is where browsers reach tokenrelay; its origin is trusted
	// by the CSRF guard and it gives the default post-logout redirect.
	PublicURL *url.URL
	// PostLogoutRedirectURI is sent to the provider's end_session_endpoint
	// and is where a logout ends when the provider has none. Default
	// PublicURL + "/". It never comes from the request.
	PostLogoutRedirectURI string
	// RevokeOnLogout revokes the refresh token (RFC 7009) at logout.
	RevokeOnLogout bool
	// CSRF guards POST {prefix}/logout. Required.
	CSRF *csrfGuard
	// SessionMaxAge is the cookie lifetime given to Cookie.Set: the
	// session's absolute lifetime.
	SessionMaxAge time.Duration
	// LoginStateTTL is the lifetime of the cookie that binds a login to the
	// browser that started it; default 10 minutes. Set it to the session
	// manager's login state TTL.
	LoginStateTTL time.Duration
	// Logger nil discards logs.
	Logger *slog.Logger
	// Registerer nil registers no metrics.
	Registerer prometheus.Registerer
	// Now nil means time.Now.
	Now func() time.Time
}

// authHandler serves tokenrelay's own endpoints:
//
//	GET  {prefix}/login               start a login (return_to)
//	GET  {prefix}/callback            authorization-code callback
//	GET  {prefix}/session             who is logged in (JSON, never a token)
//	POST {prefix}/logout              logout, CSRF-protected
//	POST {prefix}/backchannel-logout  OIDC Back-Channel Logout 1.0
//
// Every answer, redirects and errors included, carries Cache-Control:
// no-store. An authHandler is safe for concurrent use.
type authHandler struct {
	sessions       Sessions
	provider       Provider
	cookie         session.CookieOptions
	prefix         string
	postLogoutURI  string
	revokeOnLogout bool
	csrf           *csrfGuard
	maxAge         time.Duration
	loginTTL       time.Duration
	log            *slog.Logger
	now            func() time.Time

	revocations *prometheus.CounterVec // result: success | failed
}

// newAuthHandler checks o, fills in defaults and registers the handler's
// metrics (tokenrelay_revocations_total) with o.Registerer.
func newAuthHandler(o authOptions) (*authHandler, error) {
	if o.Sessions == nil {
		return nil, errors.New("proxy: auth: Sessions is required")
	}
	if o.Provider == nil {
		return nil, errors.New("proxy: auth: Provider is required")
	}
	if o.CSRF == nil {
		return nil, errors.New("proxy: auth: CSRF guard is required")
	}
	a := &authHandler{
		sessions:       o.Sessions,
		provider:       o.Provider,
		cookie:         o.Cookie,
		prefix:         strings.TrimSuffix(o.Prefix, "/"),
		postLogoutURI:  o.PostLogoutRedirectURI,
		revokeOnLogout: o.RevokeOnLogout,
		csrf:           o.CSRF,
		maxAge:         o.SessionMaxAge,
		loginTTL:       o.LoginStateTTL,
		log:            o.Logger,
		now:            o.Now,
	}
	if o.Prefix == "" {
		a.prefix = defaultAuthPrefix
	}
	if !strings.HasPrefix(a.prefix, "/") {
		return nil, fmt.Errorf("proxy: auth: prefix %q must start with /", o.Prefix)
	}
	if a.postLogoutURI == "" {
		a.postLogoutURI = "/"
		if o.PublicURL != nil {
			a.postLogoutURI = strings.TrimSuffix(o.PublicURL.String(), "/") + "/"
		}
	}
	if a.loginTTL <= 0 {
		a.loginTTL = defaultLoginCookieTTL
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.revocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokenrelay_revocations_total",
		Help: "Refresh-token revocations at logout, by result (success, failed).",
	}, []string{"result"})
	// Both series exist from the start, so a rate() over them works before
	// the first failure.
	a.revocations.WithLabelValues("success")
	a.revocations.WithLabelValues("failed")
	if o.Registerer != nil {
		if err := o.Registerer.Register(a.revocations); err != nil {
			return nil, fmt.Errorf("proxy: auth: register metrics: %w", err)
		}
	}
	return a, nil
}

// ServeHTTP serves every path under the prefix: unknown paths get 404 and
// wrong methods 405 with Allow, both as JSON.
func (a *authHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	var allow []string
	var serve http.HandlerFunc
	switch strings.TrimPrefix(r.URL.Path, a.prefix) {
	case "/login":
		allow, serve = []string{http.MethodGet}, a.login
	case "/callback":
		allow, serve = []string{http.MethodGet}, a.callback
	case "/session":
		allow, serve = []string{http.MethodGet, http.MethodHead}, a.session
	case "/logout":
		allow, serve = []string{http.MethodPost}, a.logout
	case "/backchannel-logout":
		allow, serve = []string{http.MethodPost}, a.backchannelLogout
	default:
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+a.prefix+" serves login, callback, session, logout and backchannel-logout")
		return
	}
	for _, m := range allow {
		if r.Method == m {
			serve(w, r)
			return
		}
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method "+r.Method+" is not allowed here")
}

// login starts a login: it saves a one-time state (state, nonce, PKCE
// verifier, return_to), binds it to this browser with a short-lived cookie
// and redirects to the authorization endpoint. Each call has its own state
// and its own binding cookie, so several tabs may log in at once.
func (a *authHandler) login(w http.ResponseWriter, r *http.Request) {
	st := session.LoginState{
		State:     idp.NewState(),
		Nonce:     idp.NewNonce(),
		Verifier:  idp.NewVerifier(),
		ReturnTo:  safeReturnTo(r.URL.Query().Get("return_to")),
		CreatedAt: a.now(),
	}
	if err := a.sessions.SaveLoginState(r.Context(), st); err != nil {
		a.fail(w, r, "save login state", err)
		return
	}
	a.setLoginCookie(w, st.State)
	http.Redirect(w, r, a.provider.AuthCodeURL(st.State, st.Nonce, st.Verifier), http.StatusFound)
}

// callback finishes a login: it checks that the login started in this
// browser, takes the state once, exchanges the code, verifies the identity,
// replaces any session the browser had with a new one under a fresh ticket,
// and redirects to the saved return_to.
//
// The binding check is the login CSRF defence (RFC 6749 §10.12): without
// it, an attacker could start a login in their own browser and send the
// victim the callback URL with the attacker's code and state, logging the
// victim in as the attacker.
func (a *authHandler) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	if s := q.Get("state"); s != "" {
		a.clearLoginCookie(w, s)
	}
	if e := q.Get("error"); e != "" {
		// Burn the state too, so it cannot be replayed with a code later.
		if s := q.Get("state"); s != "" {
			_, _ = a.sessions.TakeLoginState(ctx, s)
		}
		msg := sanitizeProviderError(e)
		if d := sanitizeProviderError(q.Get("error_description")); d != "" {
			msg += ": " + d
		}
		a.logger(r).Info("auth: login refused by the identity provider", "provider_error", msg)
		writeError(w, http.StatusUnauthorized, "login_failed", "the identity provider refused the login: "+msg)
		return
	}
	code, state := q.Get("code"), q.Get("state")
	if code == "" || state == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "the callback needs both code and state")
		return
	}
	if !a.loginBound(r, state) {
		writeError(w, http.StatusBadRequest, "invalid_state", "this login did not start in this browser, or took too long: start again")
		return
	}
	st, err := a.sessions.TakeLoginState(ctx, state)
	if errors.Is(err, session.ErrUnknownState) {
		writeError(w, http.StatusBadRequest, "invalid_state", "this login is unknown, expired or already used: start again")
		return
	}
	if err != nil {
		a.fail(w, r, "take login state", err)
		return
	}
	tok, err := a.provider.Exchange(ctx, code, st.Verifier)
	if err != nil {
		a.logger(r).Warn("auth: code exchange failed", "err", err)
		writeError(w, http.StatusBadGateway, "token_exchange_failed", "the identity provider did not exchange the authorization code")
		return
	}
	id, err := a.provider.Identify(ctx, tok, st.Nonce)
	if err != nil {
		a.logger(r).Warn("auth: identity verification failed", "err", err)
		writeError(w, http.StatusUnauthorized, "invalid_id_token", "the identity provider's answer could not be verified")
		return
	}
	rec := session.Record{
		AccessToken:   tok.AccessToken,
		RefreshToken:  tok.RefreshToken,
		IDToken:       tok.IDToken,
		AccessExpiry:  tok.Expiry,
		RefreshExpiry: tok.RefreshExpiry,
		Issuer:        id.Issuer,
		Subject:       id.Subject,
		SID:           id.SID,
		Claims:        id.Claims,
		CreatedAt:     a.now(),
	}
	// A login never reuses the browser's previous session (no fixation):
	// the old one ends and the new one gets a fresh ticket.
	if old, ok := a.readTicket(r); ok {
		if _, err := a.sessions.End(ctx, old, reasonReplaced); err != nil && !errors.Is(err, session.ErrNoSession) {
			a.logger(r).Warn("auth: could not end the previous session at login", "err", err)
		}
	}
	t, err := a.sessions.Create(ctx, rec, "login")
	if err != nil {
		a.fail(w, r, "create session", err)
		return
	}
	a.setCookie(w, t)
	a.logger(r).Info("auth: login", "subject", id.Subject)
	http.Redirect(w, r, safeReturnTo(st.ReturnTo), http.StatusFound)
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
}

// session answers GET {prefix}/session. A logged-in browser gets
//
//	200 {"authenticated": true, "subject": "...", "claims": {...},
//	     "expires_at": "<RFC 3339>", "access_token_expires_at": "<RFC 3339>"}
//
// and a browser without a live session gets 200 {"authenticated": false}
// rather than a 401, so a single-page app can ask "who is logged in?"
// without treating the answer as an error; a stale cookie is cleared. A
// store that cannot be reached gives 503 store_unavailable. The answer
// never contains a token.
func (a *authHandler) session(w http.ResponseWriter, r *http.Request) {
	t, ok := a.readTicket(r)
	if !ok {
		a.writeJSON(w, http.StatusOK, sessionInfo{})
		return
	}
	s, err := a.sessions.Load(r.Context(), t)
	if errors.Is(err, session.ErrNoSession) || errors.Is(err, session.ErrSessionExpired) {
		a.clearCookie(w)
		a.writeJSON(w, http.StatusOK, sessionInfo{})
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
	a.writeJSON(w, http.StatusOK, sessionInfo{
		Authenticated:        true,
		Subject:              s.Subject,
		Claims:               claims,
		ExpiresAt:            &expires,
		AccessTokenExpiresAt: &accessExpires,
	})
}

// logoutAnswer is the JSON answer of POST {prefix}/logout to fetch/XHR.
type logoutAnswer struct {
	// LogoutURL is where the browser goes next: the provider's
	// end_session_endpoint (RP-initiated logout) or the post-logout URI.
	LogoutURL string `json:"logout_url"`
}

// logout answers POST {prefix}/logout. It passes the CSRF guard (origin and
// header), ends the session, revokes the refresh token when configured
// (a failed revocation is logged and counted but does not block the
// logout), clears the cookie, and sends the browser on to the provider's
// end-session URL: as JSON {"logout_url": ...} to fetch/XHR callers, as a
// 303 redirect to form posts. Without a session it still clears the cookie
// and answers the same way with the post-logout URI (local logout). When
// the store cannot be reached it answers 503 and keeps the cookie, so a
// retry can still end the session and revoke its token.
func (a *authHandler) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := a.csrf.Check(r, true); err != nil {
		a.fail(w, r, "logout", err)
		return
	}
	var rec *session.Record
	if t, ok := a.readTicket(r); ok {
		var err error
		rec, err = a.sessions.End(ctx, t, session.ReasonLogout)
		switch {
		case errors.Is(err, session.ErrNoSession), errors.Is(err, session.ErrSessionExpired):
			rec = nil
		case err != nil:
			a.fail(w, r, "end session", err)
			return
		}
	}
	if rec != nil && a.revokeOnLogout && !rec.RefreshToken.IsZero() {
		a.revoke(ctx, r, rec)
	}
	a.clearCookie(w)

	next := a.postLogoutURI
	if rec != nil {
		if u := a.provider.EndSessionURL(rec.IDToken, a.postLogoutURI, idp.NewState()); u != "" {
			next = u
		}
		a.logger(r).Info("auth: logout", "subject", rec.Subject)
	}
	if wantsJSON(r) {
		a.writeJSON(w, http.StatusOK, logoutAnswer{LogoutURL: next})
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// revoke revokes rec's refresh token. The call survives the client going
// away (the session is already gone, the token should be too) but is
// bounded by revokeTimeout.
func (a *authHandler) revoke(ctx context.Context, r *http.Request, rec *session.Record) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	err := a.provider.Revoke(ctx, rec.RefreshToken)
	switch {
	case errors.Is(err, idp.ErrNotSupported):
	case err != nil:
		a.revocations.WithLabelValues("failed").Inc()
		a.logger(r).Warn("auth: refresh token revocation failed; logout continues", "subject", rec.Subject, "err", err)
	default:
		a.revocations.WithLabelValues("success").Inc()
	}
}

// backchannelLogout answers POST {prefix}/backchannel-logout (OIDC
// Back-Channel Logout 1.0 §2.8): the provider posts a signed logout token,
// and every session of its sid (or, without sid, its sub) ends. It is a
// server-to-server call, so no CSRF check applies: the token's signature is
// the authentication. Answers: 200 when done, 400 invalid_request for a
// missing or invalid token, 503 when the store is unreachable (the provider
// may retry).
func (a *authHandler) backchannelLogout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutTokenBody)
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "the body must be a form of at most 64 KiB with logout_token")
		return
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "logout_token is missing")
		return
	}
	lt, err := a.provider.VerifyLogoutToken(ctx, raw)
	if err != nil {
		a.logger(r).Warn("auth: back-channel logout token refused", "err", err)
		writeError(w, http.StatusBadRequest, "invalid_request", "the logout token is not valid")
		return
	}
	var n int
	switch {
	case lt.SID != "":
		n, err = a.sessions.EndBySID(ctx, lt.SID)
	case lt.Subject != "":
		n, err = a.sessions.EndBySubject(ctx, lt.Subject)
	default:
		writeError(w, http.StatusBadRequest, "invalid_request", "the logout token names neither sid nor sub")
		return
	}
	if err != nil {
		a.fail(w, r, "back-channel logout", err)
		return
	}
	a.logger(r).Info("auth: back-channel logout", "subject", lt.Subject, "sessions_ended", n)
	w.WriteHeader(http.StatusOK)
}

// fail answers an error from the session manager or the CSRF guard through
// classify, and logs it once. Errors classify does not know are internal
// here (there is no upstream on these endpoints), so they are 500 rather
// than classify's 502.
func (a *authHandler) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	f := classify(r.Context(), err)
	if f.Code == "bad_gateway" {
		f = failure{Status: http.StatusInternalServerError, Code: "internal_error", Message: "tokenrelay could not complete the request"}
	}
	switch {
	case f.Quiet:
	case f.Status == http.StatusForbidden:
		a.logger(r).Info("auth: "+op+" refused", "err", err)
	default:
		a.logger(r).Error("auth: "+op+" failed", "err", err)
	}
	if f.ClearCookie {
		a.clearCookie(w)
	}
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(f.RetryAfter))
	}
	writeError(w, f.Status, f.Code, f.Message)
}

// writeJSON answers v as JSON (HEAD gets the headers only).
func (a *authHandler) writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// logger returns the logger with the request id of r.
func (a *authHandler) logger(r *http.Request) *slog.Logger {
	return a.log.With("request_id", requestID(r.Context()))
}

// readTicket returns the ticket of the request's session cookie, if any.
func (a *authHandler) readTicket(r *http.Request) (session.Ticket, bool) {
	t, err := a.cookie.Ticket(r)
	return t, err == nil
}

// setCookie sets the session cookie to t.
func (a *authHandler) setCookie(w http.ResponseWriter, t session.Ticket) {
	a.cookie.Set(w, t, a.maxAge)
}

// clearCookie expires the session cookie.
func (a *authHandler) clearCookie(w http.ResponseWriter) {
	a.cookie.Clear(w)
}

// loginCookie is the cookie that binds the login of state to the browser:
// it goes only to the callback path, and its name carries the start of the
// state so that concurrent logins in several tabs do not overwrite each
// other. With Secure it gets the __Secure- prefix, so a plain-http page
// cannot set it.
func (a *authHandler) loginCookie(state string, maxAge int) *http.Cookie {
	name := "tokenrelay-login-" + state[:min(len(state), loginCookieStateChars)]
	if a.cookie.Secure {
		name = "__Secure-" + name
	}
	return &http.Cookie{
		Name:     name,
		Value:    state,
		Path:     a.prefix + "/callback",
		MaxAge:   maxAge,
		Secure:   a.cookie.Secure,
		HttpOnly: true,
		// The provider's redirect back is a top-level cross-site GET, which
		// Lax lets through and Strict would not.
		SameSite: http.SameSiteLaxMode,
	}
}

// setLoginCookie binds the login of state to this browser.
func (a *authHandler) setLoginCookie(w http.ResponseWriter, state string) {
	http.SetCookie(w, a.loginCookie(state, int((a.loginTTL+time.Second-1)/time.Second)))
}

// clearLoginCookie removes the binding of state, if the value names one
// that could exist.
func (a *authHandler) clearLoginCookie(w http.ResponseWriter, state string) {
	c := a.loginCookie(state, -1)
	if c.Valid() != nil {
		return
	}
	c.Value, c.Expires = "", time.Unix(0, 0)
	http.SetCookie(w, c)
}

// loginBound reports whether r carries the binding cookie of state.
func (a *authHandler) loginBound(r *http.Request, state string) bool {
	c, err := r.Cookie(a.loginCookie(state, 0).Name)
	return err == nil && subtle.ConstantTimeCompare([]byte(c.Value), []byte(state)) == 1
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

// sanitizeProviderError keeps the characters RFC 6749 allows in error and
// error_description (printable ASCII except " and \) and at most
// maxProviderErrorLen of them, so a crafted callback URL cannot put
// arbitrary text or markup into the answer.
func sanitizeProviderError(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < maxProviderErrorLen; i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' && c != '<' && c != '>' {
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}
