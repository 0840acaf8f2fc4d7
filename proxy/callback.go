package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokenrelay/tokenrelay/errorpage"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/session"
)

// maxProviderErrorLen bounds the provider's error text echoed back to the
// browser after a failed login.
const maxProviderErrorLen = 256

// loginClaims makes a login state single-use across replicas. Both
// methods return session.ErrUnknownState when the state was already used,
// session.ErrStoreUnavailable when the store cannot say.
type loginClaims interface {
	// LoginUnused checks, without writing, that st was not used yet.
	LoginUnused(ctx context.Context, st *session.LoginState) error
	// ClaimLogin marks st used once the provider has accepted its code.
	ClaimLogin(ctx context.Context, st *session.LoginState) error
}

// codeExchanger finishes a login at the provider.
type codeExchanger interface {
	// Exchange trades an authorization code for tokens.
	Exchange(ctx context.Context, code, verifier string) (*idp.Token, error)
	// Identify turns a fresh token response into the user's identity: for
	// OIDC it verifies the ID token (signature, iss, aud, exp, nonce); for
	// plain OAuth2 it asks the userinfo endpoint when one is configured.
	Identify(ctx context.Context, tok *idp.Token, nonce string) (*idp.Identity, error)
}

// callback finishes a login: it opens the state from this browser's binding
// cookie (and expires the cookie, whatever the outcome), checks that no
// replica has used the state, exchanges the code, verifies the identity,
// claims the state so no replica accepts it again,
// replaces any session the browser had with a new one under a fresh ticket,
// and redirects to the sealed return_to. A missing, tampered, expired,
// foreign or already used state is 400 invalid_state.
func (a *authHandler) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	code, state := q.Get("code"), q.Get("state")
	a.unbindLogin(w, state)
	if e := q.Get("error"); e != "" {
		if silentLoginErrors[e] {
			if st, ok := a.boundLogin(r, state); ok {
				a.logger(r).Info("auth: silent login needs the user", "provider_error", e)
				http.Redirect(w, r, withLoginError(st.ReturnTo, e), http.StatusFound)
				return
			}
		}
		msg := sanitizeProviderError(e)
		if d := sanitizeProviderError(q.Get("error_description")); d != "" {
			msg += ": " + d
		}
		a.logger(r).Info("auth: login refused by the identity provider", "provider_error", msg)
		a.loginFailed(w, r, http.StatusUnauthorized, "login_failed", "the identity provider refused the login: "+msg)
		return
	}
	if code == "" || state == "" {
		a.loginFailed(w, r, http.StatusBadRequest, "invalid_request", "the callback needs both code and state")
		return
	}
	st, ok := a.boundLogin(r, state)
	if !ok {
		a.loginFailed(w, r, http.StatusBadRequest, "invalid_state", "this login did not start in this browser, took too long or was already used: start again")
		return
	}
	// A replayed callback stops here, before the provider sees its code a
	// second time (RFC 6749 §4.1.2 lets it revoke that code's tokens).
	if err := a.claims.LoginUnused(ctx, st); err != nil {
		a.refuseUsedLogin(w, r, "check login state", err)
		return
	}
	tok, err := a.exchange.Exchange(ctx, code, st.Verifier)
	if err != nil {
		a.logger(r).Warn("auth: code exchange failed", "err", err)
		a.loginFailed(w, r, http.StatusBadGateway, "token_exchange_failed", "the identity provider did not exchange the authorization code")
		return
	}
	id, err := a.exchange.Identify(ctx, tok, st.Nonce)
	if err != nil {
		a.logger(r).Warn("auth: identity verification failed", "err", err)
		a.loginFailed(w, r, http.StatusUnauthorized, "invalid_id_token", "the identity provider's answer could not be verified")
		return
	}
	// Of concurrent callbacks with one state, exactly one claims it.
	if err := a.claims.ClaimLogin(ctx, st); err != nil {
		a.refuseUsedLogin(w, r, "claim login state", err)
		return
	}
	a.startSession(w, r, tok, id, st)
}

// loginFailed answers a login that did not complete: the login-failed page
// for the browser's navigation, with a link that starts a new login, or
// JSON for anything else.
func (a *authHandler) loginFailed(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	writePage(a.pages, w, r, errorpage.LoginFailed, errorpage.Page{Status: status, Code: code, Message: msg, LoginURL: a.prefix + "/login"})
}

// refuseUsedLogin answers a callback whose state was already used (400
// invalid_state) or could not be checked (the store is down).
func (a *authHandler) refuseUsedLogin(w http.ResponseWriter, r *http.Request, op string, err error) {
	if !errors.Is(err, session.ErrUnknownState) {
		a.fail(w, r, op, err)
		return
	}
	a.logger(r).Warn("auth: a used login state came back", "err", err)
	a.loginFailed(w, r, http.StatusBadRequest, "invalid_state", "this login was already used: start again")
}

// startSession ends the browser's previous sessions, creates the new one
// from the login's tokens under a fresh ticket (recording what the login
// asked the provider for), sets the cookie and redirects to the login's
// return_to.
func (a *authHandler) startSession(w http.ResponseWriter, r *http.Request, tok *idp.Token, id *idp.Identity, st *session.LoginState) {
	ctx := r.Context()
	rec := loginRecord(tok, id, a.now())
	rec.UserAgent = userAgentSummary(r.UserAgent())
	rec.Login = st.Request
	// A login never reuses the browser's previous sessions (no fixation):
	// they end and the new one gets a fresh ticket.
	t, err := a.starter.Replace(ctx, readSessionCookies(a.cookie, r).tickets, rec, session.ViaLogin)
	if err != nil {
		a.fail(w, r, "create session", err)
		return
	}
	a.setCookie(w, t)
	a.logger(r).Info("auth: login", "subject", id.Subject)
	http.Redirect(w, r, safeReturnTo(st.ReturnTo), http.StatusFound)
}

// LoginErrorParam is the query parameter a silent login adds to return_to
// when the provider needs the user (docs/endpoints.md, "Silent login").
const LoginErrorParam = "tokenrelay_error"

// silentLoginErrors are the provider's answers to prompt=none (OpenID
// Connect Core 1.0 §3.1.2.6) that mean "ask the user": the callback sends
// the browser back to return_to with LoginErrorParam rather than to an
// error page, so a single-page app can fall back to an interactive login.
var silentLoginErrors = map[string]bool{
	"login_required":             true,
	"interaction_required":       true,
	"consent_required":           true,
	"account_selection_required": true,
}

// withLoginError sets LoginErrorParam=code in returnTo, a path that
// safeReturnTo accepted, before its fragment; an earlier LoginErrorParam
// (a page that passed its own URL, from a failed try, as return_to) is
// replaced, and the rest of the query is kept byte for byte.
func withLoginError(returnTo, code string) string {
	rest, fragment, hasFragment := strings.Cut(safeReturnTo(returnTo), "#")
	path, query, _ := strings.Cut(rest, "?")
	var kept []string
	for p := range strings.SplitSeq(query, "&") {
		if p != "" && p != LoginErrorParam && !strings.HasPrefix(p, LoginErrorParam+"=") {
			kept = append(kept, p)
		}
	}
	out := path + "?" + strings.Join(append(kept, LoginErrorParam+"="+url.QueryEscape(code)), "&")
	if hasFragment {
		out += "#" + fragment
	}
	return out
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
