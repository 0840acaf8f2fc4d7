package proxy

import (
	"context"
	"net/http"
	"strings"

	"github.com/tokenrelay/tokenrelay/errorpage"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/session"
)

// loginStates keeps a login's state in the browser's login-binding cookie
// rather than on the server.
type loginStates interface {
	// SealLogin returns st sealed (encrypted and authenticated under the
	// server secret) as a cookie value.
	SealLogin(st session.LoginState) (string, error)
	// OpenLogin opens a value made by SealLogin: session.ErrUnknownState
	// when it is malformed, tampered, sealed under another secret or
	// older than the login state TTL.
	OpenLogin(value string) (*session.LoginState, error)
}

// authorizer builds the provider's authorization request.
type authorizer interface {
	// AuthorizationURL is where the browser goes to log in: the
	// authorization request with state, nonce (omitted by plain OAuth2
	// providers), the S256 challenge of verifier, scopes, configured extra
	// parameters and what req asks for; or, when the request is pushed to
	// the provider first (RFC 9126), the authorization endpoint with only
	// the request_uri it answered. Pushing may fail.
	AuthorizationURL(ctx context.Context, state, nonce, verifier string, req idp.LoginRequest) (string, error)
}

// login starts a login: it seals a one-time state (state, nonce, PKCE
// verifier, return_to, what a step-up asks for, creation time) into a
// short-lived binding cookie and redirects to the authorization endpoint.
// Nothing is stored on the server. Each call has its own state and its own
// binding cookie, so several tabs may log in at once.
//
// Besides return_to, the URL may carry acr_values, max_age and prompt, as
// the login URL of a step-up answer does; they are checked and passed on
// to the provider, and nothing else of the query is.
func (a *authHandler) login(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req, err := idp.ParseLoginRequest(q)
	if err != nil {
		writePage(a.pages, w, r, errorpage.LoginFailed, errorpage.Page{Status: http.StatusBadRequest, Code: "invalid_request",
			Message: strings.TrimPrefix(err.Error(), idp.ErrBadLoginRequest.Error()+": "), LoginURL: a.prefix + "/login"})
		return
	}
	st := session.LoginState{
		State:     idp.NewState(),
		Nonce:     idp.NewNonce(),
		Verifier:  idp.NewVerifier(),
		ReturnTo:  safeReturnTo(q.Get("return_to")),
		Request:   req,
		CreatedAt: a.now(),
	}
	value, err := a.states.SealLogin(st)
	if err != nil {
		a.fail(w, r, "seal login state", err)
		return
	}
	target, err := a.authorize.AuthorizationURL(r.Context(), st.State, st.Nonce, st.Verifier, st.Request)
	if err != nil {
		a.logger(r).Warn("auth: pushed authorization request failed", "err", err)
		w.Header().Set("Retry-After", "5")
		writePage(a.pages, w, r, errorpage.LoginFailed, errorpage.Page{Status: http.StatusBadGateway, Code: "authorization_request_failed",
			Message: "the identity provider did not accept the authorization request: try again", LoginURL: a.prefix + "/login"})
		return
	}
	a.bindLogin(w, r, &st, value)
	http.Redirect(w, r, target, http.StatusFound)
}
