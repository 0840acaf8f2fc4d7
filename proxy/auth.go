package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/errorpage"
	"github.com/tokenrelay/tokenrelay/session"
	"github.com/tokenrelay/tokenrelay/tracing"
)

// authOptions configures tokenrelay's own endpoints under Prefix.
type authOptions struct {
	// Pages answer a navigation's errors (the callback's); nil: the
	// built-in pages.
	Pages *errorpage.Pages
	// Keys serve {prefix}/jwks.json; nil: no assertion, no JWKS.
	Keys     http.Handler
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
	// LoginStateTTL is the Max-Age of the cookie that binds a login to the
	// browser that started it; default session.DefaultLoginStateTTL. Set it
	// to the session manager's login state TTL, which bounds the sealed
	// state's own age.
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
//	GET  {prefix}/jwks.json           the identity assertion's public keys
//
// Every answer, redirects and errors included, carries Cache-Control:
// no-store and Referrer-Policy: no-referrer (a callback URL holds a code and
// a state; no page these endpoints lead to should learn them from the
// Referer), and may not be framed (X-Frame-Options: DENY, CSP
// frame-ancestors 'none'): silent login is a top-level redirect, since
// neither tokenrelay's SameSite=Lax cookies nor, in current browsers, the
// provider's own session cookie work inside a cross-site frame. An
// authHandler is safe for concurrent use.
type authHandler struct {
	// What each endpoint calls (see Sessions and Provider).
	states    loginStates         // login, callback
	authorize authorizer          // login
	claims    loginClaims         // callback
	exchange  codeExchanger       // callback
	starter   sessionStarter      // callback
	loader    sessionLoader       // session
	ender     sessionEnder        // logout
	logouts   logoutProvider      // logout
	byID      logoutIndex         // back-channel logout
	verify    logoutTokenVerifier // back-channel logout

	// pages answer the callback's errors for a navigation.
	pages *errorpage.Pages
	// keys serve the JWKS; nil without assertions.
	keys http.Handler
	// routes are the proxied routes, whose policies the session endpoint
	// previews; set by New once they are built.
	routes *routeTable

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
	// refusedLogouts limits the warnings about refused back-channel
	// logout posts, which anyone can send.
	refusedLogouts *logLimiter
}

// checked returns o with the built-in error pages when it has none, or
// why it cannot be used.
func (o authOptions) checked() (authOptions, error) {
	switch {
	case o.Sessions == nil:
		return o, errors.New("proxy: auth: Sessions is required")
	case o.Provider == nil:
		return o, errors.New("proxy: auth: Provider is required")
	case o.CSRF == nil:
		return o, errors.New("proxy: auth: CSRF guard is required")
	}
	if o.Pages == nil {
		pages, err := errorpage.New(errorpage.Options{})
		if err != nil {
			return o, fmt.Errorf("proxy: auth: %w", err)
		}
		o.Pages = pages
	}
	return o, nil
}

// newAuthHandler checks o, fills in defaults and registers the handler's
// metrics (tokenrelay_revocations_total) with o.Registerer.
func newAuthHandler(o authOptions) (*authHandler, error) {
	o, err := o.checked()
	if err != nil {
		return nil, err
	}
	a := &authHandler{
		pages:          o.Pages,
		keys:           o.Keys,
		states:         o.Sessions,
		authorize:      o.Provider,
		claims:         o.Sessions,
		exchange:       o.Provider,
		starter:        o.Sessions,
		loader:         o.Sessions,
		ender:          o.Sessions,
		logouts:        o.Provider,
		byID:           o.Sessions,
		verify:         o.Provider,
		cookie:         o.Cookie,
		prefix:         strings.TrimSuffix(o.Prefix, "/"),
		postLogoutURI:  o.PostLogoutRedirectURI,
		revokeOnLogout: o.RevokeOnLogout,
		csrf:           o.CSRF,
		maxAge:         o.SessionMaxAge,
		loginTTL:       loginTTLOrDefault(o.LoginStateTTL),
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
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.refusedLogouts = newLogLimiter(refusedLogoutLogEvery, a.now)
	if a.revocations, err = newRevocations(o.Registerer); err != nil {
		return nil, err
	}
	return a, nil
}

// ServeHTTP serves every path under the prefix: unknown paths get 404 and
// wrong methods 405 with Allow, both as JSON.
func (a *authHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "frame-ancestors 'none'")
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
	case "/jwks.json":
		if a.keys != nil {
			// The keys are public and change seldom: they set their
			// own Cache-Control.
			allow, serve = []string{http.MethodGet, http.MethodHead}, a.keys.ServeHTTP
			break
		}
		WriteError(w, http.StatusNotFound, "not_found", "no route sends an identity assertion, so there are no keys to publish")
		return
	default:
		WriteError(w, http.StatusNotFound, "not_found", "no such endpoint: "+a.prefix+" serves login, callback, session, logout, backchannel-logout and jwks.json")
		return
	}
	for _, m := range allow {
		if r.Method == m {
			serve(w, r)
			return
		}
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method "+r.Method+" is not allowed here")
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
	WriteError(w, f.Status, f.Code, f.Message)
}

// logger returns the logger with the request id of r, and its trace id
// when the request is traced.
func (a *authHandler) logger(r *http.Request) *slog.Logger {
	if id := tracing.TraceID(r.Context()); id != "" {
		return a.log.With("request_id", requestID(r.Context()), "trace_id", id)
	}
	return a.log.With("request_id", requestID(r.Context()))
}

// setCookie sets the session cookie to t.
func (a *authHandler) setCookie(w http.ResponseWriter, t session.Ticket) {
	a.cookie.Set(w, t, a.maxAge)
}

// clearCookie expires the session cookie.
func (a *authHandler) clearCookie(w http.ResponseWriter) {
	a.cookie.Clear(w)
}
