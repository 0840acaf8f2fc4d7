package proxy

import (
	"context"
	"log/slog"
	"net/http"
)

// cacheControlPrivate is the Cache-Control value given to answers made
// with a user's token; shared (never written to) like forwarding's values.
var cacheControlPrivate = []string{"private"}

// maxLoggedCookieName bounds the cookie name a warning quotes.
const maxLoggedCookieName = 64

// modifyResponse is the ReverseProxy's ModifyResponse. On every route it
// drops the upstream's X-Request-Id (often an echo of ours; the client sees
// exactly one) and any Set-Cookie for one of tokenrelay's cookies; it marks
// answers made with the user's token private unless the upstream said how
// to cache them; on capture routes it captures tokens.
func (h *Handler) modifyResponse(res *http.Response) error {
	res.Header.Del(requestIDHeader)
	st := stateFrom(res.Request.Context())
	if lines := res.Header["Set-Cookie"]; len(lines) > 0 {
		h.dropOwnCookies(res.Request.Context(), res.Header, lines, st)
	}
	if st == nil {
		return nil
	}
	if !st.token.IsZero() && res.Header["Cache-Control"] == nil && res.StatusCode >= 200 {
		// A shared cache must never hand one user's answer to another.
		res.Header["Cache-Control"] = cacheControlPrivate
	}
	if st.capture {
		return h.captureTokens(res, st)
	}
	return nil
}

// dropOwnCookies removes the Set-Cookie lines an upstream sent for
// tokenrelay's own cookies. The first time a route's upstream does it, a
// warning says so (with the cookie's name, never its value); later drops
// are logged at debug level, so a misbehaving upstream cannot flood the log.
func (h *Handler) dropOwnCookies(ctx context.Context, hdr http.Header, lines []string, st *requestState) {
	kept, dropped := h.ownCookies.filter(lines)
	if dropped == "" {
		return
	}
	if len(kept) == 0 {
		delete(hdr, "Set-Cookie")
	} else {
		hdr["Set-Cookie"] = kept
	}
	level, route, id := slog.LevelDebug, labelUnmatched, ""
	if st != nil {
		id = st.id
		if st.route != nil {
			route = st.route.Name
			if st.route.cookieWarned.CompareAndSwap(false, true) {
				level = slog.LevelWarn
			}
		}
	}
	if len(dropped) > maxLoggedCookieName {
		dropped = dropped[:maxLoggedCookieName]
	}
	h.log.LogAttrs(ctx, level, "proxy: dropped an upstream Set-Cookie for a tokenrelay cookie",
		slog.String("route", route),
		slog.String("cookie", dropped),
		slog.String("request_id", id))
}
