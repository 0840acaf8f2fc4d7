package proxy

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/errorpage"
	"github.com/tokenrelay/tokenrelay/identity"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/policy"
	"github.com/tokenrelay/tokenrelay/session"
)

// judge compiles what the route checks and tells about its user: its
// policy (the default one combined with its own, on required routes only:
// on an optional route a refused user would go on without the cookie) and
// its identity for the upstream, whose assertion s signs for audience. A
// policy with nothing to check is dropped, so a plain route never reads
// claims.
func (rt *route) judge(def policy.Options, s *identity.Signer, audience string, now func() time.Time) error {
	if rt.Auth == AuthRequired {
		p, err := policy.New(def, rt.Policy, now)
		if err != nil {
			return fmt.Errorf("proxy: route %s: %w", rt.Name, err)
		}
		if !p.AllowsAll() {
			rt.policy = p
		}
	}
	if rt.Identity != nil {
		id, err := identity.NewRoute(*rt.Identity, audience, s)
		if err != nil {
			return fmt.Errorf("proxy: route %s: %w", rt.Name, err)
		}
		rt.identity = id
	}
	rt.withClaims = rt.policy != nil || rt.identity != nil
	return nil
}

// assertionAudience is the aud of the route's identity assertion: its
// upstream; for a route without one (forward-auth: the ingress proxies
// it), the public URL of its path, where the app behind the ingress is
// reached.
func (rt *route) assertionAudience(public *url.URL) string {
	if rt.Upstream != "" || public == nil {
		return rt.Upstream
	}
	return strings.TrimSuffix(public.String(), "/") + rt.Path
}

// policy is the stage that applies the route's policy to the session's
// user: a refused request gets 403 forbidden, one that needs a stronger or
// more recent login 401 step_up_required (or a redirect to that login), and
// neither reaches the upstream. The log says which rule decided; the
// client is not told.
func (h *Handler) policy(w *responseRecorder, r *http.Request, st *requestState) bool {
	p := st.route.policy
	if p == nil || st.opened == nil {
		return true
	}
	rec := st.opened.Record()
	d := p.Evaluate(policy.User{Subject: rec.Subject, Claims: rec.Claims},
		policy.Request{Method: r.Method, Path: r.URL.Path, Header: r.Header})
	switch d.Effect {
	case policy.Allow:
		return true
	case policy.StepUp:
		h.stepUp(w, r, st, d)
	default:
		h.logDecision(r, st, "proxy: the route's policy refused the request", d)
		h.page(w, r, errorpage.Forbidden, http.StatusForbidden, "forbidden", "you may not use this resource",
			h.loginURL(r.URL.RequestURI(), idp.LoginRequest{Prompt: []string{"login"}}))
	}
	return false
}

// logDecision logs a refusal or a step-up at info level, with the rule
// that decided and the subject; an expression's evaluation error goes to
// the debug level.
func (h *Handler) logDecision(r *http.Request, st *requestState, msg string, d policy.Decision) {
	ctx := r.Context()
	h.log.LogAttrs(ctx, slog.LevelInfo, msg,
		slog.String("route", st.route.Name),
		slog.String("rule", d.Rule),
		slog.String("subject", st.opened.Record().Subject),
		slog.String("request_id", st.id))
	if d.Err != nil {
		h.log.LogAttrs(ctx, slog.LevelDebug, "proxy: the policy's expression did not evaluate",
			slog.String("route", st.route.Name), slog.String("rule", d.Rule),
			slog.String("error", d.Err.Error()), slog.String("request_id", st.id))
	}
}

// stepUpError is the JSON answer of a request that needs a step-up login.
type stepUpError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	// LoginURL is the login that asks the provider for what is missing,
	// returning to the request's path.
	LoginURL string `json:"login_url"`
}

// stepUp answers a request whose user passes the policy but must log in
// again, stronger or more recently: 401 step_up_required with the login
// URL for API calls (and an RFC 9470 WWW-Authenticate challenge), a
// redirect to it for navigations (or the page linking to it on a route
// that answers with a status). A session that a login asking for exactly
// this started, and that still falls short, means the provider did not
// give what was asked: 403 step_up_failed, rather than send the browser
// round the same login again.
func (h *Handler) stepUp(w *responseRecorder, r *http.Request, st *requestState, d policy.Decision) {
	want := loginRequestOf(d.Login)
	login := h.loginURL(r.URL.RequestURI(), want)
	if stepUpFailed(st.opened.Record(), want, h.now()) {
		h.logDecision(r, st, "proxy: the step-up login did not give what the route needs", d)
		h.page(w, r, errorpage.Generic, http.StatusForbidden, "step_up_failed",
			"the identity provider did not give the stronger or more recent login this resource needs", login)
		return
	}
	h.logDecision(r, st, "proxy: the route needs a step-up login", d)
	const msg = "this resource needs a stronger or more recent login"
	if st.forwardAuth {
		w.Header().Set("WWW-Authenticate", stepUpChallenge(want))
		f := failure{Status: http.StatusUnauthorized, Code: "step_up_required", Message: msg}
		h.askLogin(w, f, h.returnLoginURL(r, want), wantsRedirect(st.route.OnUnauthenticated, r), st.statusOnly)
		return
	}
	switch {
	case wantsRedirect(st.route.OnUnauthenticated, r):
		redirect(w, login)
	case errorpage.IsNavigation(r):
		h.page(w, r, errorpage.Generic, http.StatusUnauthorized, "step_up_required", msg, login)
	default:
		w.Header().Set("WWW-Authenticate", stepUpChallenge(want))
		writeJSON(w, http.StatusUnauthorized, stepUpError{Error: "step_up_required", Message: msg, LoginURL: login})
	}
}

// stepUpFailed reports whether rec's session came from a login that asked
// for everything want asks for, recently enough that a max_age asked then
// still holds: the provider then ignored (or could not meet) the request,
// and another round would end the same way.
func stepUpFailed(rec *session.Record, want idp.LoginRequest, now time.Time) bool {
	if !rec.Login.Covers(want) {
		return false
	}
	return want.MaxAge == 0 || now.Sub(rec.CreatedAt) < want.MaxAge
}

// loginRequestOf is the login a policy's step-up decision asks for.
func loginRequestOf(l policy.LoginParams) idp.LoginRequest {
	req := idp.LoginRequest{ACRValues: l.ACRValues, MaxAge: l.MaxAge}
	if l.Prompt != "" {
		req.Prompt = strings.Fields(l.Prompt)
	}
	return req
}

// stepUpChallenge is the WWW-Authenticate value of RFC 9470 (OAuth 2.0
// Step Up Authentication Challenge) for want.
func stepUpChallenge(want idp.LoginRequest) string {
	c := `Bearer error="insufficient_user_authentication", error_description="a stronger or more recent login is required"`
	if len(want.ACRValues) > 0 {
		c += `, acr_values="` + strings.Join(want.ACRValues, " ") + `"`
	}
	if want.MaxAge > 0 {
		c += ", max_age=" + strconv.FormatInt(int64(want.MaxAge/time.Second), 10)
	}
	return c
}

// page answers an error a person may be looking at: the HTML page name for
// a browser's navigation, {"error","message"} JSON for anything else.
// loginURL is where the page's "Log in again" leads ("" for no link).
func (h *Handler) page(w http.ResponseWriter, r *http.Request, name string, status int, code, msg, loginURL string) {
	if st := stateFrom(r.Context()); st != nil && st.forwardAuth {
		// For an ingress that cannot relay the body (nginx).
		w.Header().Set(headerError, code)
		if loginURL != "" {
			w.Header().Set(headerLoginURL, loginURL)
		}
	}
	writePage(h.pages, w, r, name, errorpage.Page{Status: status, Code: code, Message: msg, LoginURL: loginURL})
}

// writePage writes pg as the page name for a navigation, as JSON
// otherwise, with the request's id.
func writePage(pages *errorpage.Pages, w http.ResponseWriter, r *http.Request, name string, pg errorpage.Page) {
	if !errorpage.IsNavigation(r) {
		WriteError(w, pg.Status, pg.Code, pg.Message)
		return
	}
	pg.RequestID = requestID(r.Context())
	pages.WriteHTML(w, r, name, pg)
}
