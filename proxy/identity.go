package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/tokenrelay/tokenrelay/identity"
	"github.com/tokenrelay/tokenrelay/internal/claims"
	"github.com/tokenrelay/tokenrelay/policy"
)

// errAssertion marks an identity assertion that could not be signed; the
// request does not go on without it.
var errAssertion = errors.New("proxy: identity assertion")

// identity is the stage that tells the upstream who the user is, on a
// route with an identity key and a session: the mapped claim headers, the
// ID token and the signed assertion, left in st.identity for the last
// stage (forward sets them on the outbound request after removing every
// client-sent identity header; a forward-auth answer would carry them). A
// header left out for its size is logged, once per route at warning level;
// an assertion that cannot be signed fails the request.
func (h *Handler) identity(w *responseRecorder, r *http.Request, st *requestState) bool {
	rt := st.route
	if rt.identity == nil || st.opened == nil {
		return true
	}
	rec := st.opened.Record()
	hdr := make(http.Header, 4)
	err := rt.identity.Apply(r.Context(), hdr, identity.User{Subject: rec.Subject, Claims: rec.Claims}, rec.IDToken, st.opened.CacheKey())
	var tooLarge *identity.ValueTooLargeError
	switch {
	case errors.As(err, &tooLarge):
		h.warnTooLarge(r, st, tooLarge)
	case err != nil:
		h.fail(w, r, fmt.Errorf("%w: %w", errAssertion, err))
		return false
	}
	st.identity = hdr
	return true
}

// warnTooLarge logs an identity header left out for its size: at warning
// level the first time on a route, at debug level after, so one user in
// hundreds of groups cannot flood the log.
func (h *Handler) warnTooLarge(r *http.Request, st *requestState, e *identity.ValueTooLargeError) {
	level := slog.LevelDebug
	if st.route.tooLargeWarned.CompareAndSwap(false, true) {
		level = slog.LevelWarn
	}
	h.log.LogAttrs(r.Context(), level, "proxy: an identity header was left out: its value is too large",
		slog.String("route", st.route.Name),
		slog.String("header", e.Header),
		slog.Int("bytes", e.Len),
		slog.Int("limit", identity.MaxHeaderValue),
		slog.String("request_id", st.id))
}

// newStripper builds the remover of client-sent identity headers: every
// name any route maps, the defaults and the assertion header.
func newStripper(o Options) *identity.Stripper {
	var routes []identity.Options
	for _, r := range o.Routes {
		if r.Identity != nil {
			routes = append(routes, *r.Identity)
		}
	}
	return identity.NewStripper(routes, o.Assertion)
}

// publicIssuer is the assertion's iss: the public URL, without a trailing
// slash.
func publicIssuer(u *url.URL) string {
	if u == nil {
		return ""
	}
	return strings.TrimSuffix(u.String(), "/")
}

// ClaimNames lists the claims the routes' policies and identity read, so
// the session keeps them from the ID token: those def and each required
// route's policy name (policy.Policy.ClaimNames), and the claims each
// route with an identity key maps to headers (the top-level claim of a
// dotted name). cmd adds them to provider.claims. The options must have
// passed validation.
func ClaimNames(def policy.Options, routes []Route) ([]string, error) {
	var names []string
	add := func(n string) {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, r := range routes {
		r = r.WithDefaults()
		if r.Auth == AuthRequired {
			p, err := policy.New(def, r.Policy, nil)
			if err != nil {
				return nil, fmt.Errorf("proxy: route %s: %w", r.Name, err)
			}
			for _, n := range p.ClaimNames() {
				add(n)
			}
		}
		if r.Identity != nil {
			for _, c := range r.Identity.Claims() {
				add(claims.Root(c))
			}
		}
	}
	return names, nil
}
