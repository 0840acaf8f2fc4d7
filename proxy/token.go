package proxy

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

// The pipeline's token stage: the token a route sends upstream, by its
// token type (routes.go): the session's token of the route's target (its
// resource and scopes), a token exchanged for it, tokenrelay's own
// client-credentials token, or none. One route's token is never another
// route's: each asks for its own target. A token bound to a DPoP key goes
// upstream as "Authorization: DPoP" with a fresh proof of the key for
// that very request.

// tokenSource hands out the access token of a session: the request path
// asks for the current one, the retry transport for a new one after the
// upstream rejected the token it sent.
type tokenSource interface {
	// AccessToken returns a usable access token of req.Target (or, with
	// req.Exchange, one exchanged for it) for req.Ticket, refreshing when
	// it is stale or expired, or when req.Rejected equals the stored
	// token (the upstream answered 401 to it); it goes on from
	// req.Opened, the session's read, when set. Errors:
	// session.ErrNoSession, session.ErrSessionExpired (refresh token dead:
	// clear the cookie), *session.UnavailableError (transient: 503 with
	// Retry-After; wrapping session.ErrClientRejected when the provider
	// refuses the client), session.ErrTokenRefused (403),
	// session.ErrStoreUnavailable.
	AccessToken(ctx context.Context, req session.TokenRequest) (session.AccessToken, error)
}

// clientTokenSource hands out tokenrelay's own token of a target.
type clientTokenSource interface {
	// ClientToken returns the client-credentials token of target,
	// renewed when due or when it is rejected (the token the upstream
	// answered 401 to). Errors as AccessToken's, but never a session's.
	ClientToken(ctx context.Context, target idp.Target, rejected secret.String) (session.AccessToken, error)
}

// tokenKind says where a request's token came from.
type tokenKind uint8

const (
	kindNone    tokenKind = iota
	kindSession           // the session's own, or exchanged for it
	kindClient            // tokenrelay's own
)

// token is the token stage. On a route that reads the session it gets the
// route's user token from the first session cookie whose session is live
// (from the session stage's read when a policy or identity made one), or,
// on a route that sends no user token, only makes sure the session is
// live; without a live session, a required route is answered (401, a
// login redirect, or the page for a navigation) and an optional one goes
// on without a token, clearing the cookie of an ended session. Then a
// client route, or a user_or_client route without a session, gets
// tokenrelay's own token. A capture route sends none.
func (h *Handler) token(w *responseRecorder, r *http.Request, st *requestState) bool {
	rt := st.route
	if st.capture {
		return true
	}
	if rt.Auth != AuthNone && !h.sessionToken(w, r, st) {
		return false
	}
	if rt.Token == TokenClient || (rt.Token == TokenUserOrClient && st.token.IsZero()) {
		return h.clientToken(w, r, st)
	}
	return true
}

// sessionToken gets the route's user token, or, for a route that sends
// none, checks that the session is live (a session gates the route,
// another token or none goes upstream).
func (h *Handler) sessionToken(w *responseRecorder, r *http.Request, st *requestState) bool {
	rt := st.route
	if st.opened == nil && rt.withClaims {
		return true // an optional route without a session (see session)
	}
	if !rt.Token.usesSession() {
		if st.opened != nil {
			return true
		}
		t, _, err := openFirst(st.cookies, func(t session.Ticket) (*session.Session, error) {
			return h.gate.Load(r.Context(), t)
		})
		if err != nil {
			return h.noSession(w, r, st, err)
		}
		st.ticket = t
		return true
	}
	req := session.TokenRequest{Target: rt.token, Exchange: rt.Token == TokenExchange}
	var t session.Ticket
	var tok session.AccessToken
	var err error
	if st.opened != nil {
		// The session stage read the session: go on from that read.
		t, req.Ticket, req.Opened = st.ticket, st.ticket, st.opened
		tok, err = h.tokens.AccessToken(r.Context(), req)
	} else {
		t, tok, err = openFirst(st.cookies, func(t session.Ticket) (session.AccessToken, error) {
			req.Ticket = t
			return h.tokens.AccessToken(r.Context(), req)
		})
	}
	if err != nil {
		return h.noSession(w, r, st, err)
	}
	st.ticket = t
	st.useToken(tok, kindSession)
	return true
}

// useToken makes tok, from kind, the token st sends upstream, with its
// Bearer header value when the session built it ahead.
func (st *requestState) useToken(tok session.AccessToken, kind tokenKind) {
	st.token, st.dpop, st.kind, st.refreshed = tok.Value, tok.DPoP, kind, tok.Refreshed
	st.authorization = ""
	if tok.DPoP == nil {
		st.authorization = tok.Header()
	}
}

// clientToken gives the request tokenrelay's own token of the route's
// target.
func (h *Handler) clientToken(w *responseRecorder, r *http.Request, st *requestState) bool {
	tok, err := h.clients.ClientToken(r.Context(), st.route.token, "")
	if err != nil {
		h.fail(w, r, err)
		return false
	}
	st.useToken(tok, kindClient)
	return true
}

// fetchToken asks again for the token of st's route after the upstream
// rejected st.token, from the source that gave it.
func (h *Handler) fetchToken(ctx context.Context, st *requestState) (session.AccessToken, error) {
	rt := st.route
	if st.kind == kindClient {
		return h.clients.ClientToken(ctx, rt.token, st.token)
	}
	return h.tokens.AccessToken(ctx, session.TokenRequest{Ticket: st.ticket, Rejected: st.token, Target: rt.token, Exchange: rt.Token == TokenExchange})
}

// setToken puts st's token on the outbound request out (see authorize):
// a Bearer token with the header value the session built ahead when it
// did, a DPoP-bound one with a fresh proof for this request (RFC 9449
// §7.1: method, URI without query, the token's hash, the upstream's last
// nonce).
func (h *Handler) setToken(out *http.Request, st *requestState, nonce string) {
	if st.dpop == nil && !st.authorization.IsZero() {
		out.Header["Authorization"] = []string{st.authorization.Reveal()}
		return
	}
	var htu string
	if st.dpop != nil {
		host := out.Host
		if host == "" {
			host = out.URL.Host
		}
		htu = out.URL.Scheme + "://" + host + out.URL.EscapedPath()
	}
	h.authorize(out.Header, st.token, st.dpop, out.Method, htu, nonce)
}

// authorize sets the headers that present tok on a request of method to
// htu (its URI without query): Authorization: Bearer, or, for a token
// bound to key, Authorization: DPoP and a fresh proof (a jti of its own)
// with nonce when there is one. The forward-auth verify endpoint answers
// with the same headers for the ingress to copy. A proof that cannot be
// signed (crypto/rand failing) leaves the DPoP header out, and the
// upstream refuses the request.
func (h *Handler) authorize(hdr http.Header, tok secret.String, key *idp.DPoPKey, method, htu, nonce string) {
	if key == nil {
		hdr.Set("Authorization", "Bearer "+tok.Reveal())
		return
	}
	hdr.Set("Authorization", idp.AuthorizationScheme(true)+" "+tok.Reveal())
	proof, err := key.Proof(method, htu, tok, nonce, h.now())
	if err != nil {
		hdr.Del("DPoP")
		return
	}
	hdr.Set("DPoP", proof)
}

// dpopNonces keeps a route's upstream's last DPoP nonce (RFC 9449 §9: a
// resource server may ask for one, and hand out the next in any answer).
// Its zero value is empty; it is safe for concurrent use.
type dpopNonces struct{ v atomic.Pointer[string] }

func (n *dpopNonces) get() string {
	if p := n.v.Load(); p != nil {
		return *p
	}
	return ""
}

// learn keeps the nonce an answer carries and reports whether it differs
// from the one kept.
func (n *dpopNonces) learn(res *http.Response) bool {
	v := strings.TrimSpace(res.Header.Get("DPoP-Nonce"))
	if v == "" || v == n.get() {
		return false
	}
	n.v.Store(&v)
	return true
}

// nonceChallenge reports whether res is an upstream's 401 asking for a DPoP
// proof with its nonce.
func nonceChallenge(res *http.Response) bool {
	if res.StatusCode != http.StatusUnauthorized || res.Header.Get("DPoP-Nonce") == "" {
		return false
	}
	for _, v := range res.Header.Values("WWW-Authenticate") {
		if strings.Contains(v, "use_dpop_nonce") {
			return true
		}
	}
	return false
}
