// Package proxy is tokenrelay's HTTP layer: routing, the reverse proxy that
// injects access tokens, tokenrelay's own endpoints (login, callback,
// session, logout, back-channel logout), CSRF defence, token capture, the
// one mapping of errors to statuses, metrics and access logs.
//
// Decisions of the request path worth knowing:
//
//   - Routing is by longest path prefix, segment-aware, on the decoded path,
//     and the path is forwarded as the client escaped it. A path whose
//     escapes cross the matched prefix ("/api%2Fpublic/x" against a route
//     "/api/public/") is refused (400): the upstream would see another
//     path than the one routed. So is a path with "." or ".." segments
//     (also "..;"), so "/public/../api/x" cannot reach the API's route
//     under the public route's rules. Only configured upstreams are
//     reachable.
//   - The outbound request is built in ReverseProxy.Rewrite, which runs after
//     hop-by-hop headers are removed: a client's "Connection: Authorization"
//     cannot delete the injected token. On session routes, and on routes
//     that send a token, a client's own Authorization (and DPoP) is always
//     replaced; on auth-none routes without a token it passes untouched.
//     Each route sends its own token (token.go): one route's token never
//     reaches another route's upstream. tokenrelay's cookie is removed on every route. The
//     forwarding headers (X-Forwarded-*, Forwarded, X-Real-IP and their
//     kin) are tokenrelay's, never the client's.
//   - Only WebSocket upgrades are tunnelled; any other Upgrade offer is
//     dropped and the request forwarded as plain HTTP.
//   - A request body must arrive within BodyReadTimeout (408 after), a
//     read deadline that ends with the body, so downloads and WebSockets
//     are not limited by it.
//   - An upstream cannot set tokenrelay's cookies: such Set-Cookie lines
//     are dropped. Answers made with a user's token are Cache-Control:
//     private unless the upstream says otherwise.
//   - No session on a required route: a top-level navigation is redirected
//     to login, anything else gets 401 JSON; an ended session also clears
//     the cookie. On optional routes a missing, tampered or ended session
//     means "proxy without a token"; an unreachable store is still a 503.
//   - CSRF: unsafe methods on session routes pass the origin check and,
//     per route, the CSRF header. Capture routes (login forms of custom
//     backends) need only the origin check, which still stops a cross-site
//     login. WebSocket handshakes on session routes get the origin check
//     too, since browsers send them cross-site as GET.
//   - Retry on 401 re-sends once with the token the session manager hands
//     out when told the old one was rejected; bodies up to MaxRetryBody are
//     buffered to make that possible, larger ones stream and are not
//     retried. A dead session found then answers 401 session_expired; a
//     transient refresh failure hands on the upstream's 401.
//   - Token capture inspects every answer of a capture route, whatever its
//     status or Content-Type, and refuses (502 token_capture_failed) one
//     with tokens it cannot turn into a session, rather than pass tokens
//     to the browser.
//   - A route's policy (the default one extended or replaced by the
//     route's, on required routes only) is checked once the session is
//     read with its claims and before the access token is fetched: a
//     refused request (403 forbidden, 401 step_up_required, 403
//     step_up_failed) never reaches the upstream, and a browser's
//     navigation gets an HTML page rather than JSON. Routes without a
//     policy or identity never decode the session's claims.
//   - Identity headers (every name any route maps, the defaults and the
//     assertion header) are removed from every request on every route;
//     a route with an identity key then gets the user's, set in Rewrite
//     like the token.
//   - A client that goes away is recorded as 499 and not logged as an error.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/errorpage"
	"github.com/tokenrelay/tokenrelay/identity"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/problem"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
	"github.com/tokenrelay/tokenrelay/tracing"
)

// sessionOpener reads a session with its identity claims, for a route
// whose policy or identity needs them.
type sessionOpener interface {
	// Open returns the session of t, claims included, without sliding
	// its idle timeout (AccessToken, given the result, does):
	// session.ErrNoSession, session.ErrSessionExpired,
	// session.ErrStoreUnavailable.
	Open(ctx context.Context, t session.Ticket) (*session.Opened, error)
}

// defaultAuthPrefix is Options.AuthPrefix's default.
const defaultAuthPrefix = "/.auth"

// Handler is tokenrelay's HTTP handler: it gives every request an id,
// records metrics and one access log line, serves tokenrelay's own
// endpoints under the auth prefix, and proxies everything else by route.
// It is safe for concurrent use.
type Handler struct {
	routes     *routeTable
	auth       *authHandler
	authPrefix string

	tokens   tokenSource
	clients  clientTokenSource
	gate     sessionLoader
	opener   sessionOpener  // routes whose policy or identity reads claims
	starter  sessionStarter // token capture
	capturer capturer
	cookie   session.CookieOptions
	csrf     *csrfGuard
	capture  map[captureKey]struct{}

	retryOn401     bool
	maxRetryBody   int64
	maxRequestBody int64
	sessionMaxAge  time.Duration
	bodyTimeout    time.Duration
	fwd            forwarding
	// publicOrigin is public_url's scheme://host: the htu of a verify
	// answer's DPoP proof.
	publicOrigin string
	ownCookies   ownCookies
	// stripper removes client-sent identity headers on every route.
	stripper *identity.Stripper
	// pages answer a navigation's errors with HTML.
	pages *errorpage.Pages

	tracer    tracing.Tracer
	metrics   *metrics
	authM     *routeMetrics
	unmatched *routeMetrics
	log       *slog.Logger
	now       func() time.Time
}

// New checks o (the problems its sections' Validate report) and builds
// the Handler.
func New(o Options) (*Handler, error) {
	if o.Sessions == nil || o.Provider == nil {
		return nil, errors.New("proxy: Sessions and Provider are required")
	}
	o = o.withDefaults()
	o.AuthPrefix = strings.TrimSuffix(o.AuthPrefix, "/")
	if !strings.HasPrefix(o.AuthPrefix, "/") || o.AuthPrefix == "" || hasDotSegment(o.AuthPrefix) {
		return nil, fmt.Errorf("proxy: auth prefix %q must be an absolute path other than /", o.AuthPrefix)
	}
	if err := problem.List(o.validate()).Err(); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	h, err := newHandler(o)
	if err != nil {
		return nil, err
	}
	if h.routes, err = h.newRoutes(o); err != nil {
		return nil, err
	}
	h.auth.routes = h.routes
	return h, nil
}

// newHandler builds the Handler from valid options, defaults applied, but
// for its routes.
func newHandler(o Options) (*Handler, error) {
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	csrf, err := newCSRFGuard(o.PublicURL, o.CSRF.TrustedOrigins, o.CSRF.Header)
	if err != nil {
		return nil, err
	}
	auth, err := newAuthFor(o, csrf)
	if err != nil {
		return nil, err
	}
	capture, err := captureSet(o.CaptureRoutes)
	if err != nil {
		return nil, err
	}
	return &Handler{
		auth:           auth,
		opener:         o.Sessions,
		stripper:       newStripper(o),
		pages:          auth.pages,
		authPrefix:     o.AuthPrefix,
		tokens:         o.Sessions,
		clients:        o.Sessions,
		gate:           o.Sessions,
		starter:        o.Sessions,
		capturer:       o.Provider,
		cookie:         o.Cookie,
		csrf:           csrf,
		capture:        capture,
		retryOn401:     *o.Retry.RetryOn401,
		maxRetryBody:   o.Retry.MaxRetryBody,
		maxRequestBody: o.Upstream.MaxRequestBody,
		sessionMaxAge:  o.Session.MaxLifetime,
		bodyTimeout:    o.Upstream.BodyReadTimeout,
		fwd:            newForwarding(o.PublicURL),
		publicOrigin:   origin(o.PublicURL),
		ownCookies:     newOwnCookies(o.Cookie),
		tracer:         tracing.NewTracer(o.TracerProvider),
		metrics:        m,
		authM:          m.route(labelAuth),
		unmatched:      m.route(labelUnmatched),
		log:            o.Logger,
		now:            o.Now,
	}, nil
}

// newAuthFor builds tokenrelay's own endpoints from o, with its error pages
// and the assertion keys.
func newAuthFor(o Options, csrf *csrfGuard) (*authHandler, error) {
	pages, err := errorpage.New(o.ErrorPages)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	var keys http.Handler // a nil *KeyRing must stay a nil interface
	if o.Keys != nil {
		keys = o.Keys
	}
	return newAuthHandler(authOptions{
		Pages:                 pages,
		Keys:                  keys,
		Sessions:              o.Sessions,
		Provider:              o.Provider,
		Cookie:                o.Cookie,
		Prefix:                o.AuthPrefix,
		PublicURL:             o.PublicURL,
		PostLogoutRedirectURI: o.Logout.PostLogoutRedirectURI,
		RevokeOnLogout:        *o.Logout.Revoke,
		CSRF:                  csrf,
		SessionMaxAge:         o.Session.MaxLifetime,
		LoginStateTTL:         o.Session.LoginStateTTL,
		Logger:                o.Logger,
		Registerer:            o.Registerer,
		Now:                   o.Now,
	})
}

// newRoutes builds the route table: one ReverseProxy per route, sharing the
// retrying transport and a buffer pool, and each route's policy and
// identity.
func (h *Handler) newRoutes(o Options) (*routeTable, error) {
	transport := &retryTransport{next: o.Transport, h: h}
	errorLog := slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn)
	buffers := &bufferPool{}
	var signer *identity.Signer
	if o.Keys != nil {
		signer = identity.NewSigner(o.Keys, publicIssuer(o.PublicURL), o.Assertion)
	}
	routes := make([]*route, 0, len(o.Routes))
	for _, r := range o.Routes {
		rt := newRoute(r, h.metrics.route(r.Name))
		if err := rt.judge(o.Policy, signer, rt.assertionAudience(o.PublicURL), o.Now); err != nil {
			return nil, err
		}
		rt.proxy = &httputil.ReverseProxy{
			Rewrite:        h.rewrite(rt),
			Transport:      transport,
			FlushInterval:  o.Upstream.FlushInterval,
			BufferPool:     buffers,
			ErrorLog:       errorLog,
			ErrorHandler:   h.proxyError,
			ModifyResponse: h.modifyResponse,
		}
		routes = append(routes, rt)
	}
	return newRouteTable(routes), nil
}

// ServeHTTP implements http.Handler: the public listener.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.handle(w, r, false)
}

// handle gives a request its id and state, serves it (the forward-auth
// listener's requests with serveVerify), and records it.
func (h *Handler) handle(w http.ResponseWriter, r *http.Request, forwardAuth bool) {
	start := time.Now()
	st := &requestState{id: incomingRequestID(r.Header), metrics: h.unmatched}
	w.Header().Set(requestIDHeader, st.id)
	rw := &responseRecorder{ResponseWriter: w}
	if h.tracer.On() {
		var span trace.Span
		r, span = h.startSpan(r)
		defer func() { endSpan(span, rw, st) }()
	}
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))

	completed := false
	defer func() {
		if !completed {
			// A panic is on its way up: ReverseProxy aborts with
			// http.ErrAbortHandler when the client or the upstream goes
			// away mid-body. Record the request, then let it continue.
			st.aborted = true
		}
		h.finish(rw, r, st, time.Since(start))
	}()
	if forwardAuth {
		h.serveVerify(rw, r, st)
	} else {
		h.serve(rw, r, st)
	}
	st.body.handlerDone()
	completed = true
}

// serve sends one request on its way: tokenrelay's own endpoints under
// the auth prefix, everything else down the request pipeline.
func (h *Handler) serve(w *responseRecorder, r *http.Request, st *requestState) {
	st.body = limitBodyRead(w, r, h.bodyTimeout)
	if pathMatches(h.authPrefix, r.URL.Path) {
		st.metrics = h.authM
		h.auth.ServeHTTP(w, r)
		return
	}
	for _, step := range pipeline() {
		if !step(h, w, r, st) {
			return
		}
	}
}

// step is one stage of the request pipeline. It hands the request on to
// the next stage (true), or has answered it itself (false). What a stage
// learns goes into st for the stages after it.
type step func(h *Handler, w *responseRecorder, r *http.Request, st *requestState) bool

// pipeline is the request path of a proxied request, in order (DESIGN.md,
// "The request pipeline"). The policy and identity stages act on the
// request's state only (identity leaves the upstream's headers in
// st.identity, which forward's rewrite sets), so a forward-auth endpoint
// can run the same stages and end with its own last stage instead of
// forward. The stages are method expressions in an array: a request
// allocates nothing for them.
func pipeline() [7]step {
	return [...]step{
		(*Handler).route,
		(*Handler).admit,
		(*Handler).session,
		(*Handler).policy,
		(*Handler).token,
		(*Handler).identity,
		(*Handler).forward,
	}
}

// route finds the request's route (longest prefix, on the path form that
// is forwarded) and whether it is a capture route. A path no route serves
// is 404 in proxy mode, and refused (403) when an ingress asks: it is not
// one tokenrelay was told to protect. A route without an upstream serves
// only the ingress's questions; a capture route never does (tokenrelay must
// see the login's answer to take the tokens out of it).
func (h *Handler) route(w *responseRecorder, r *http.Request, st *requestState) bool {
	rt, err := h.routeOf(r.URL)
	switch {
	case err == nil && rt.target == nil && !st.forwardAuth:
		err = errForwardAuthOnly
	case errors.Is(err, errNoRoute) && st.forwardAuth:
		err = errUnprotected
	}
	if err != nil {
		h.fail(w, r, err)
		return false
	}
	st.route, st.metrics = rt, rt.metrics
	restrictUpgrade(r.Header)
	if len(h.capture) > 0 {
		_, st.capture = h.capture[newCaptureKey(r.Method, r.URL.Path)]
	}
	if st.capture && st.forwardAuth {
		// The ingress would send the login to the backend itself, and its
		// answer, tokens included, to the browser.
		h.fail(w, r, errCaptureForwarded)
		return false
	}
	return true
}

// admit applies the limits and checks every request of the route must
// pass before a session is looked at: the request body's size, and the
// CSRF defence on routes that may carry the session.
func (h *Handler) admit(w *responseRecorder, r *http.Request, st *requestState) bool {
	if h.maxRequestBody > 0 && r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength > h.maxRequestBody {
			h.fail(w, r, fmt.Errorf("proxy: content length %d: %w", r.ContentLength, errBodyTooLarge))
			return false
		}
		r.Body = http.MaxBytesReader(w.ResponseWriter, r.Body, h.maxRequestBody)
	}
	if st.route.Auth == AuthNone && !st.capture {
		return true
	}
	if err := h.checkCSRF(r, st.route, st.capture); err != nil {
		h.fail(w, r, err)
		return false
	}
	return true
}

// session reads the session cookies of a route that uses a session, or of
// a capture route, whose login replaces them (see capture.go). On a route
// whose policy or identity needs the user's claims, it opens the session
// with them (the token stage then goes on from that read); on any other
// route, which cookie opens a live session is learnt with the route's
// token, in the same store read, and the claims are never decoded.
func (h *Handler) session(w *responseRecorder, r *http.Request, st *requestState) bool {
	rt := st.route
	if rt.Auth == AuthNone && !st.capture {
		return true
	}
	st.cookies = readSessionCookies(h.cookie, r)
	if !rt.withClaims || st.capture {
		return true
	}
	t, o, err := openFirst(st.cookies, func(t session.Ticket) (*session.Opened, error) {
		return h.opener.Open(r.Context(), t)
	})
	if err != nil {
		return h.noSession(w, r, st, err)
	}
	st.ticket, st.opened = t, o
	return true
}

// noSession handles a request whose cookies open no live session (err is
// openFirst's, or the token's): a required route answers it (401, a login
// redirect, or the page for a navigation), an optional one goes on without
// a session, clearing the cookie of an ended one. Any other error (the
// store is down) is answered. It reports whether the request goes on.
func (h *Handler) noSession(w *responseRecorder, r *http.Request, st *requestState, err error) bool {
	rt := st.route
	switch {
	case rt.Auth == AuthOptional && errors.Is(err, session.ErrNoSession):
		return true
	case rt.Auth == AuthOptional && errors.Is(err, session.ErrSessionExpired):
		h.cookie.Clear(w)
		return true
	case errors.Is(err, session.ErrNoSession), errors.Is(err, session.ErrSessionExpired):
		h.unauthenticated(w, r, rt, err)
	default:
		h.fail(w, r, err)
	}
	return false
}

// routeOf finds the route serving u: errDotSegment or errEscapedPrefix
// when the path's decoded and escaped forms would not be served alike,
// errNoRoute when no route serves it.
func (h *Handler) routeOf(u *url.URL) (*route, error) {
	if hasDotSegment(u.Path) {
		return nil, errDotSegment
	}
	rt := h.routes.match(u.Path)
	if rt == nil {
		return nil, errNoRoute
	}
	if !rt.matchesEscaped(u) {
		return nil, errEscapedPrefix
	}
	return rt, nil
}

// checkCSRF applies the CSRF defence to requests that may carry the
// session: unsafe methods need the origin check (and the route's CSRF
// header, except on capture routes, where a login form has no session to
// protect yet but a cross-site login must still be refused); WebSocket
// handshakes, which browsers send cross-site as GET, get the origin check.
func (h *Handler) checkCSRF(r *http.Request, rt *route, capture bool) error {
	if isWebSocketHandshake(r) {
		probe := *r
		probe.Method = http.MethodPost
		return h.csrf.Check(&probe, false)
	}
	return h.csrf.Check(r, rt.csrfHeader && !capture)
}

// forward is the last stage in proxy mode: the request goes to the
// route's upstream, its body made replayable first when a 401 may be
// retried with a new token or a DPoP nonce.
func (h *Handler) forward(w *responseRecorder, r *http.Request, st *requestState) bool {
	if !st.token.IsZero() && (h.retryOn401 || st.dpop != nil) {
		if err := h.prepareReplay(r, st); err != nil {
			h.fail(w, r, err)
			return false
		}
	}
	st.route.proxy.ServeHTTP(w, r)
	return true
}

// unauthenticated answers a request that needs a session and has none:
// a redirect to login for top-level navigations, 401 JSON otherwise (the
// session-expired page for a navigation on a route that answers with a
// status; an ingress's question gets askLogin's answer). err is
// session.ErrNoSession or session.ErrSessionExpired (which also clears the
// cookie).
func (h *Handler) unauthenticated(w *responseRecorder, r *http.Request, rt *route, err error) {
	if st := stateFrom(r.Context()); st != nil && st.forwardAuth {
		h.askLogin(w, classify(r.Context(), err), h.returnLoginURL(r, idp.LoginRequest{}), wantsRedirect(rt.OnUnauthenticated, r), st.statusOnly)
		return
	}
	loginURL := h.loginURL(r.URL.RequestURI(), idp.LoginRequest{})
	if !wantsRedirect(rt.OnUnauthenticated, r) {
		if !errorpage.IsNavigation(r) {
			h.fail(w, r, err)
			return
		}
		f := classify(r.Context(), err)
		if f.ClearCookie {
			h.cookie.Clear(w)
		}
		h.page(w, r, errorpage.SessionExpired, f.Status, f.Code, f.Message, loginURL)
		return
	}
	if classify(r.Context(), err).ClearCookie {
		h.cookie.Clear(w)
	}
	redirect(w, loginURL)
}

// redirect answers 302 Found to location, never cached.
func redirect(w http.ResponseWriter, location string) {
	hdr := w.Header()
	hdr.Set("Location", location)
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

// loginURL is the login endpoint's URL that returns to returnTo and asks
// the provider for req.
func (h *Handler) loginURL(returnTo string, req idp.LoginRequest) string {
	return loginURL(h.authPrefix, returnTo, req)
}

// loginURL is the login endpoint under prefix, returning to returnTo, and
// asking the provider for req.
func loginURL(prefix, returnTo string, req idp.LoginRequest) string {
	q := url.Values{}
	if returnTo != "" {
		q.Set("return_to", returnTo)
	}
	req.Set(q)
	if len(q) == 0 {
		return prefix + "/login"
	}
	return prefix + "/login?" + q.Encode()
}

// wantsRedirect decides between a login redirect and a 401.
func wantsRedirect(mode UnauthMode, r *http.Request) bool {
	switch mode {
	case UnauthRedirect:
		return true
	case UnauthStatus:
		return false
	}
	return errorpage.IsNavigation(r)
}

// isWebSocketHandshake reports whether r asks to switch to WebSocket: its
// Upgrade header says so, or, from a browser, Sec-Fetch-Mode does. The
// latter is what an ingress's verify request still carries when the
// ingress drops hop-by-hop headers such as Upgrade (Traefik does).
func isWebSocketHandshake(r *http.Request) bool {
	if up := r.Header.Get("Upgrade"); up != "" && strings.EqualFold(up, "websocket") {
		return true
	}
	return r.Header.Get("Sec-Fetch-Mode") == "websocket"
}

// rewrite builds the outbound request of rt. It runs after ReverseProxy
// removed hop-by-hop headers, so headers set here cannot be deleted by a
// client's Connection header.
func (h *Handler) rewrite(rt *route) func(*httputil.ProxyRequest) {
	return func(pr *httputil.ProxyRequest) {
		st := stateFrom(pr.In.Context())
		if rt.StripPrefix {
			stripPrefix(pr.Out.URL, rt.Path, rt.escapedPath)
		}
		pr.SetURL(rt.target)
		if rt.PassHost {
			pr.Out.Host = pr.In.Host
		}
		h.fwd.set(pr, rt.forwardedPrefix)
		out := pr.Out.Header
		h.cookie.StripCookie(out)
		// Identity headers come from tokenrelay alone, on every route.
		h.stripper.Strip(out)
		if rt.Auth != AuthNone || rt.Token != TokenNone {
			out.Del("Authorization")
			out.Del("DPoP")
			if st != nil && !st.token.IsZero() {
				h.setToken(pr.Out, st, rt.nonces.get())
			}
		}
		if st != nil {
			for k, v := range st.identity {
				out[k] = v
			}
			out.Set(requestIDHeader, st.id)
			st.upstream = rt.target.Host
			if st.capture {
				// The answer is read to find tokens: ask for it plain.
				out.Set("Accept-Encoding", "identity")
			}
		}
	}
}

// proxyError is the ReverseProxy's ErrorHandler.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	h.fail(w, r, err)
}

// fail answers err through classify, logging it once when it is ours or
// the upstream's fault.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	st := stateFrom(ctx)
	if st != nil && st.body.expired() && !errors.Is(err, errBodyTimeout) {
		// The client's connection timed out on the body; whoever noticed
		// first may have reported it as a cancellation.
		err = fmt.Errorf("%w: %w", errBodyTimeout, err)
	}
	f := classify(ctx, err)
	if st != nil {
		st.failed = f.Status
	}
	if !f.Quiet && f.Status >= 500 {
		route := labelUnmatched
		if st != nil {
			route = st.metrics.label
		}
		h.log.LogAttrs(ctx, slog.LevelError, "proxy: request failed",
			slog.String("route", route),
			slog.Int("status", f.Status),
			slog.String("error", loggableError(err)),
			slog.String("request_id", requestID(ctx)))
	}
	if f.Status == StatusClientClosedRequest {
		return
	}
	if rec, ok := w.(*responseRecorder); ok && (rec.hijacked || rec.status != 0) {
		// Too late for an answer of our own.
		return
	}
	if f.ClearCookie {
		h.cookie.Clear(w)
	}
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(f.RetryAfter))
	}
	if f.CloseConnection {
		w.Header().Set("Connection", "close")
	}
	if st != nil && st.forwardAuth {
		// An ingress that cannot relay the body (nginx) tells the browser
		// what went wrong from this header.
		w.Header().Set(headerError, f.Code)
	}
	WriteError(w, f.Status, f.Code, f.Message)
}

// loggableError renders err without the request URL that *url.Error
// carries: a query string may hold secrets.
func loggableError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}

// requestState is what one request learns on its way through the Handler;
// the access log and the metrics read it at the end. It lives in the
// request's context and is only touched by the goroutine serving the
// request (ReverseProxy calls Rewrite, the transport, ModifyResponse and
// ErrorHandler synchronously).
type requestState struct {
	id      string
	metrics *routeMetrics
	route   *route // nil for the auth endpoints and unmatched paths

	// cookies are the request's session cookies, read on routes that use
	// a session and on capture routes (a login replaces their sessions).
	cookies sessionCookies
	// ticket is the one whose session gave token.
	ticket session.Ticket
	// opened is the session read with its claims, on a route whose policy
	// or identity needs them; nil otherwise, or without a session.
	opened *session.Opened
	// identity holds the identity headers for the upstream (the identity
	// stage); nil when there are none.
	identity http.Header
	// token is the access token sent upstream, zero when none;
	// authorization is its Bearer header value, built ahead by the
	// session for its own token (zero otherwise: setToken builds it).
	token, authorization secret.String
	// kind says where token came from, for a new one after a 401.
	kind tokenKind
	// dpop is the key token is bound to; nil for a Bearer token.
	dpop *idp.DPoPKey
	// replayable: the body can be sent again after a 401.
	replayable bool
	capture    bool
	// body bounds the time the request body may take; nil without one.
	body *deadlineBody

	upstream  string
	refreshed bool
	retried   bool
	// failed is the status classify chose, when the request failed; it
	// records 499 for clients that went away, which is never written.
	failed int
	// aborted: the handler panicked (http.ErrAbortHandler mid-body).
	aborted bool

	// forwardAuth: an ingress asks about the request (the verify
	// endpoint); the stages see the original request it describes.
	forwardAuth bool
	// statusOnly: the ingress relays only 401 and 403 (nginx), so a login
	// redirect is a 401 with Location.
	statusOnly bool
	// original is the request the ingress asked about, for the access log.
	original *http.Request
}

type stateKey struct{}

// stateFrom returns the request's state, or nil outside Handler.
func stateFrom(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey{}).(*requestState)
	return st
}
