// Package proxy is tokenrelay's HTTP layer: routing, the reverse proxy that
// injects access tokens, tokenrelay's own endpoints (login, callback,
// session, logout, back-channel logout), CSRF defence, token capture, the
// one mapping of errors to statuses, metrics and access logs.
//
// Decisions of the request path worth knowing:
//
//   - Routing is by longest path prefix, segment-aware, on the decoded path.
//     A path with "." or ".." segments is refused (400) rather than routed,
//     so "/public/../api/x" cannot reach the API's route under the public
//     route's rules. Only configured upstreams are reachable.
//   - The outbound request is built in ReverseProxy.Rewrite, which runs after
//     hop-by-hop headers are removed: a client's "Connection: Authorization"
//     cannot delete the injected token. On session routes a client's own
//     Authorization is always replaced; on auth-none routes it passes
//     untouched. tokenrelay's cookie is removed on every route.
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
//   - Token capture refuses (502 token_capture_failed) an answer it cannot
//     clean of tokens, rather than pass tokens to the browser.
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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

// Defaults of Options.
const (
	defaultAuthPrefix   = "/.auth"
	defaultMaxRetryBody = 64 << 10
)

// Options configures a Handler.
type Options struct {
	// Sessions and Provider are required.
	Sessions Sessions
	Provider Provider
	// Cookie names and shapes the session cookie.
	Cookie session.CookieOptions
	// AuthPrefix is where tokenrelay's own endpoints live; default "/.auth".
	AuthPrefix string
	// PublicURL is where browsers reach tokenrelay; its origin is trusted
	// by the CSRF defence.
	PublicURL *url.URL
	// Routes are the allow-listed upstreams; a path no route serves is
	// answered 404.
	Routes []Route
	// RetryOn401 re-sends a request once, with a refreshed token, when the
	// upstream answers 401 to it and its body can be replayed.
	RetryOn401 bool
	// MaxRetryBody is the largest request body buffered so that it can be
	// replayed after a 401; 0 means 64 KiB, negative means only requests
	// without a body are retried. Larger bodies stream without a retry.
	MaxRetryBody int64
	// MaxRequestBody refuses larger request bodies with 413; 0 means no
	// limit.
	MaxRequestBody int64
	// CSRFHeader is the header unsafe requests must carry; default X-CSRF.
	CSRFHeader string
	// TrustedOrigins may send unsafe requests besides PublicURL's origin.
	TrustedOrigins []string
	// PostLogoutRedirectURI and RevokeOnLogout configure logout.
	PostLogoutRedirectURI string
	RevokeOnLogout        bool
	// SessionMaxAge is the Max-Age of the session cookie.
	SessionMaxAge time.Duration
	// LoginStateTTL is how long a login may take at the provider; it
	// bounds the login-binding cookie. Default 10m.
	LoginStateTTL time.Duration
	// CaptureRoutes are login routes of custom backends whose answers
	// carry tokens (token capture).
	CaptureRoutes []CaptureRoute
	// Transport reaches the upstreams; nil means NewTransport with
	// defaults.
	Transport http.RoundTripper
	// FlushInterval is how often streamed response bodies are flushed to
	// the client; 0 flushes only when the buffer fills, but event streams
	// (text/event-stream) and bodies of unknown length always flush at
	// once.
	FlushInterval time.Duration
	// Logger receives the access log and error logs; nil discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil does not register them.
	Registerer prometheus.Registerer
	// Now is the clock of session records; nil means time.Now.
	Now func() time.Time
}

// Handler is tokenrelay's HTTP handler: it gives every request an id,
// records metrics and one access log line, serves tokenrelay's own
// endpoints under the auth prefix, and proxies everything else by route.
// It is safe for concurrent use.
type Handler struct {
	// publicScheme is PublicURL's scheme ("" without one), sent as
	// X-Forwarded-Proto.
	publicScheme string

	routes     *routeTable
	auth       http.Handler
	authPrefix string

	sessions Sessions
	provider Provider
	cookie   session.CookieOptions
	csrf     *csrfGuard
	capture  map[captureKey]struct{}

	retryOn401     bool
	maxRetryBody   int64
	maxRequestBody int64
	sessionMaxAge  time.Duration

	metrics   *metrics
	authM     *routeMetrics
	unmatched *routeMetrics
	log       *slog.Logger
	now       func() time.Time
}

// New checks o and builds the Handler.
func New(o Options) (*Handler, error) {
	if o.Sessions == nil || o.Provider == nil {
		return nil, errors.New("proxy: Sessions and Provider are required")
	}
	if o.AuthPrefix == "" {
		o.AuthPrefix = defaultAuthPrefix
	}
	o.AuthPrefix = strings.TrimSuffix(o.AuthPrefix, "/")
	if !strings.HasPrefix(o.AuthPrefix, "/") || o.AuthPrefix == "" || hasDotSegment(o.AuthPrefix) {
		return nil, fmt.Errorf("proxy: auth prefix %q must be an absolute path other than /", o.AuthPrefix)
	}
	if o.MaxRetryBody == 0 {
		o.MaxRetryBody = defaultMaxRetryBody
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Transport == nil {
		o.Transport = NewTransport(TransportOptions{})
	}

	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	csrf, err := newCSRFGuard(o.PublicURL, o.TrustedOrigins, o.CSRFHeader)
	if err != nil {
		return nil, err
	}
	auth, err := newAuthHandler(authOptions{
		Sessions:              o.Sessions,
		Provider:              o.Provider,
		Cookie:                o.Cookie,
		Prefix:                o.AuthPrefix,
		PublicURL:             o.PublicURL,
		PostLogoutRedirectURI: o.PostLogoutRedirectURI,
		RevokeOnLogout:        o.RevokeOnLogout,
		CSRF:                  csrf,
		SessionMaxAge:         o.SessionMaxAge,
		LoginStateTTL:         o.LoginStateTTL,
		Logger:                o.Logger,
		Registerer:            o.Registerer,
		Now:                   o.Now,
	})
	if err != nil {
		return nil, err
	}
	capture, err := captureSet(o.CaptureRoutes)
	if err != nil {
		return nil, err
	}

	h := &Handler{
		auth:           auth,
		publicScheme:   publicScheme(o.PublicURL),
		authPrefix:     o.AuthPrefix,
		sessions:       o.Sessions,
		provider:       o.Provider,
		cookie:         o.Cookie,
		csrf:           csrf,
		capture:        capture,
		retryOn401:     o.RetryOn401,
		maxRetryBody:   o.MaxRetryBody,
		maxRequestBody: o.MaxRequestBody,
		sessionMaxAge:  o.SessionMaxAge,
		metrics:        m,
		authM:          m.route(labelAuth),
		unmatched:      m.route(labelUnmatched),
		log:            o.Logger,
		now:            o.Now,
	}

	transport := &retryTransport{next: o.Transport, sessions: o.Sessions}
	errorLog := slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn)
	buffers := &bufferPool{}
	names := make(map[string]bool, len(o.Routes))
	paths := make(map[string]bool, len(o.Routes))
	routes := make([]*route, 0, len(o.Routes))
	for _, r := range o.Routes {
		if err := validateRoute(r, o.AuthPrefix); err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		if names[r.Name] || paths[r.Path] {
			return nil, fmt.Errorf("proxy: route %q: name or path %q used twice", r.Name, r.Path)
		}
		names[r.Name], paths[r.Path] = true, true
		rt := &route{Route: r, metrics: m.route(r.Name)}
		rt.proxy = &httputil.ReverseProxy{
			Rewrite:        h.rewrite(rt),
			Transport:      transport,
			FlushInterval:  o.FlushInterval,
			BufferPool:     buffers,
			ErrorLog:       errorLog,
			ErrorHandler:   h.proxyError,
			ModifyResponse: h.modifyResponse,
		}
		routes = append(routes, rt)
	}
	h.routes = newRouteTable(routes)
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := &requestState{id: incomingRequestID(r.Header), metrics: h.unmatched}
	w.Header().Set(requestIDHeader, st.id)
	r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	rw := &responseRecorder{ResponseWriter: w}

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
	h.serve(rw, r, st)
	completed = true
}

// serve routes one request.
func (h *Handler) serve(w *responseRecorder, r *http.Request, st *requestState) {
	p := r.URL.Path
	if pathMatches(h.authPrefix, p) {
		st.metrics = h.authM
		h.auth.ServeHTTP(w, r)
		return
	}
	if hasDotSegment(p) {
		writeError(w, http.StatusBadRequest, "bad_request", "the path must not contain . or .. segments")
		return
	}
	rt := h.routes.match(p)
	if rt == nil {
		writeError(w, http.StatusNotFound, "not_found", "no route serves this path")
		return
	}
	st.route, st.metrics = rt, rt.metrics

	if h.maxRequestBody > 0 && r.Body != nil && r.Body != http.NoBody {
		if r.ContentLength > h.maxRequestBody {
			h.fail(w, r, fmt.Errorf("proxy: content length %d: %w", r.ContentLength, errBodyTooLarge))
			return
		}
		r.Body = http.MaxBytesReader(w.ResponseWriter, r.Body, h.maxRequestBody)
	}

	_, st.capture = h.capture[captureKey{r.Method, p}]
	if rt.Auth != AuthNone || st.capture {
		if err := h.checkCSRF(r, rt, st.capture); err != nil {
			h.fail(w, r, err)
			return
		}
	}

	switch {
	case st.capture:
		// A login in progress needs no session; an existing one is
		// replaced when the login succeeds (see capture.go).
		if t, err := h.cookie.Ticket(r); err == nil {
			st.ticket, st.hasTicket = t, true
		}
	case rt.Auth != AuthNone:
		if !h.authenticate(w, r, rt, st) {
			return
		}
		if !st.token.IsZero() && h.retryOn401 {
			if err := h.prepareReplay(r, st); err != nil {
				h.fail(w, r, err)
				return
			}
		}
	}
	rt.proxy.ServeHTTP(w, r)
}

// checkCSRF applies the CSRF defence to requests that may carry the
// session: unsafe methods need the origin check (and the route's CSRF
// header, except on capture routes, where a login form has no session to
// protect yet but a cross-site login must still be refused); WebSocket
// handshakes, which browsers send cross-site as GET, get the origin check.
func (h *Handler) checkCSRF(r *http.Request, rt *route, capture bool) error {
	if isWebSocketUpgrade(r) {
		probe := *r
		probe.Method = http.MethodPost
		return h.csrf.Check(&probe, false)
	}
	return h.csrf.Check(r, rt.CSRFHeader && !capture)
}

// authenticate finds the access token for a session route. It reports
// false when it has answered the request itself.
func (h *Handler) authenticate(w *responseRecorder, r *http.Request, rt *route, st *requestState) bool {
	t, err := h.cookie.Ticket(r)
	if err != nil {
		if rt.Auth == AuthOptional {
			return true
		}
		h.unauthenticated(w, r, rt, session.ErrNoSession)
		return false
	}
	tok, err := h.sessions.AccessToken(r.Context(), t, "")
	switch {
	case err == nil:
		st.ticket, st.hasTicket = t, true
		st.token = tok.Value
		st.refreshed = tok.Refreshed
		return true
	case rt.Auth == AuthOptional && errors.Is(err, session.ErrNoSession):
		return true
	case rt.Auth == AuthOptional && errors.Is(err, session.ErrSessionExpired):
		h.cookie.Clear(w)
		return true
	case errors.Is(err, session.ErrNoSession), errors.Is(err, session.ErrSessionExpired):
		h.unauthenticated(w, r, rt, err)
		return false
	default:
		h.fail(w, r, err)
		return false
	}
}

// unauthenticated answers a request that needs a session and has none:
// a redirect to login for top-level navigations, 401 JSON otherwise. err is
// session.ErrNoSession or session.ErrSessionExpired (which also clears the
// cookie).
func (h *Handler) unauthenticated(w *responseRecorder, r *http.Request, rt *route, err error) {
	if !wantsRedirect(rt.OnUnauthenticated, r) {
		h.fail(w, r, err)
		return
	}
	if classify(r.Context(), err).ClearCookie {
		h.cookie.Clear(w)
	}
	hdr := w.Header()
	hdr.Set("Location", h.authPrefix+"/login?return_to="+url.QueryEscape(r.URL.RequestURI()))
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

// wantsRedirect decides between a login redirect and a 401.
func wantsRedirect(mode UnauthMode, r *http.Request) bool {
	switch mode {
	case UnauthRedirect:
		return true
	case UnauthStatus:
		return false
	}
	return isNavigation(r)
}

// isNavigation reports whether r is a browser's top-level navigation:
// Sec-Fetch-Mode says so, or, from a client that sends no Sec-Fetch-*
// headers, a GET that accepts HTML.
func isNavigation(r *http.Request) bool {
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	if r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Sec-Fetch-Dest") != "" {
		return false
	}
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// isWebSocketUpgrade reports whether r asks to switch to WebSocket.
func isWebSocketUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// rewrite builds the outbound request of rt. It runs after ReverseProxy
// removed hop-by-hop headers, so headers set here cannot be deleted by a
// client's Connection header.
func (h *Handler) rewrite(rt *route) func(*httputil.ProxyRequest) {
	return func(pr *httputil.ProxyRequest) {
		st := stateFrom(pr.In.Context())
		if rt.StripPrefix {
			stripPrefix(pr.Out.URL, rt.Path)
		}
		pr.SetURL(rt.Upstream)
		if rt.PassHost {
			pr.Out.Host = pr.In.Host
		}
		pr.SetXForwarded()
		out := pr.Out.Header
		if h.publicScheme != "" {
			// Browsers reach us at PublicURL; behind a TLS-terminating
			// ingress the request arrives as plain http, which is not what
			// the upstream must use to build links and redirects.
			out.Set("X-Forwarded-Proto", h.publicScheme)
		}
		h.cookie.StripCookie(out)
		if rt.Auth != AuthNone {
			out.Del("Authorization")
			if st != nil && !st.token.IsZero() {
				out.Set("Authorization", bearer(st.token))
			}
		}
		if st != nil {
			out.Set(requestIDHeader, st.id)
			st.upstream = rt.Upstream.Host
			if st.capture {
				// The answer is read to find tokens: ask for it plain.
				out.Set("Accept-Encoding", "identity")
			}
		}
	}
}

func publicScheme(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Scheme
}

func bearer(t secret.String) string { return "Bearer " + t.Reveal() }

// proxyError is the ReverseProxy's ErrorHandler.
func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	h.fail(w, r, err)
}

// fail answers err through classify, logging it once when it is ours or
// the upstream's fault.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	f := classify(ctx, err)
	st := stateFrom(ctx)
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
	writeError(w, f.Status, f.Code, f.Message)
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

	ticket    session.Ticket
	hasTicket bool
	// token is the access token sent upstream; zero when none.
	token secret.String
	// replayable: the body can be sent again after a 401.
	replayable bool
	capture    bool

	upstream  string
	refreshed bool
	retried   bool
	// failed is the status classify chose, when the request failed; it
	// records 499 for clients that went away, which is never written.
	failed int
	// aborted: the handler panicked (http.ErrAbortHandler mid-body).
	aborted bool
}

type stateKey struct{}

// stateFrom returns the request's state, or nil outside Handler.
func stateFrom(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey{}).(*requestState)
	return st
}
