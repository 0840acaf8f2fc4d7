package proxy

import (
	"context"
	"net/http"

	"github.com/tokenrelay/tokenrelay/idp"
)

// maxLogoutTokenBody bounds a back-channel logout request body. A logout
// token is a signed JWT of a few hundred bytes; 64 KiB is generous.
const maxLogoutTokenBody = 64 << 10

// logoutTokenVerifier validates back-channel logout tokens.
type logoutTokenVerifier interface {
	// VerifyLogoutToken validates a back-channel logout token.
	VerifyLogoutToken(ctx context.Context, raw string) (*idp.LogoutToken, error)
}

// logoutIndex ends the sessions a back-channel logout names.
type logoutIndex interface {
	// EndBySID and EndBySubject end every session carrying that provider
	// sid / sub and report how many.
	EndBySID(ctx context.Context, sid string) (int, error)
	EndBySubject(ctx context.Context, sub string) (int, error)
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
		WriteError(w, http.StatusBadRequest, "invalid_request", "the body must be a form of at most 64 KiB with logout_token")
		return
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		WriteError(w, http.StatusBadRequest, "invalid_request", "logout_token is missing")
		return
	}
	lt, err := a.verify.VerifyLogoutToken(ctx, raw)
	if err != nil {
		// Anyone can post here: at most one warning per interval, with
		// the count of the refusals it stands for.
		if ok, suppressed := a.refusedLogouts.allow(); ok {
			a.logger(r).Warn("auth: back-channel logout token refused", "err", err, "refused_since_last_warning", suppressed)
		}
		WriteError(w, http.StatusBadRequest, "invalid_request", "the logout token is not valid")
		return
	}
	var n int
	switch {
	case lt.SID != "":
		n, err = a.byID.EndBySID(ctx, lt.SID)
	case lt.Subject != "":
		n, err = a.byID.EndBySubject(ctx, lt.Subject)
	default:
		WriteError(w, http.StatusBadRequest, "invalid_request", "the logout token names neither sid nor sub")
		return
	}
	if err != nil {
		a.fail(w, r, "back-channel logout", err)
		return
	}
	a.logger(r).Info("auth: back-channel logout", "subject", lt.Subject, "sessions_ended", n)
	w.WriteHeader(http.StatusOK)
}
