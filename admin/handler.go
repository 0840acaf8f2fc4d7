// Package admin is the session admin API, served on the admin listener
// when a bearer token is configured: list a subject's sessions, end one or
// all of them (revoking their refresh tokens at the provider when their
// keys are escrowed), and end every session (the kill switch). Every call that ends sessions is
// written to the audit log: who (the caller's address and the actor it
// names), what, and how many.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

// Sessions is what the API asks of the session manager
// (*session.Manager implements it).
type Sessions interface {
	SubjectSessions(ctx context.Context, sub string) ([]session.SessionInfo, error)
	EndSubjectSessions(ctx context.Context, sub, id string) ([]session.EndedSession, error)
	EndAll(ctx context.Context) (time.Time, error)
}

// Revoker revokes a refresh token at the provider (RFC 7009;
// *idp.Provider implements it).
type Revoker interface {
	Revoke(ctx context.Context, refreshToken secret.String) error
}

// revokeTimeout bounds the revocations of one call.
const revokeTimeout = 30 * time.Second

// maxActor bounds the X-Admin-Actor header copied into the audit log.
const maxActor = 64

// Handler serves the admin API under /admin/. It is safe for concurrent
// use.
type Handler struct {
	tokenHash [sha256.Size]byte
	sessions  Sessions
	revoker   Revoker
	log       *slog.Logger
	mux       *http.ServeMux
}

// New builds the API for the bearer token of o (o.Enabled must hold).
// logger nil discards the audit log.
func New(o Options, sessions Sessions, revoker Revoker, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		tokenHash: sha256.Sum256([]byte(o.Token.Reveal())),
		sessions:  sessions,
		revoker:   revoker,
		log:       logger,
		mux:       http.NewServeMux(),
	}
	h.mux.HandleFunc("GET /admin/sessions", h.list)
	h.mux.HandleFunc("DELETE /admin/sessions", h.endSubject)
	h.mux.HandleFunc("DELETE /admin/sessions/{id}", h.endOne)
	h.mux.HandleFunc("POST /admin/sessions/end-all", h.endAll)
	return h
}

// ServeHTTP checks the bearer token, then serves the call. Every answer is
// JSON and not cacheable.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tokenrelay-admin"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "the admin API needs its bearer token")
		return
	}
	h.mux.ServeHTTP(w, r)
}

// authorized compares the request's bearer token with the configured one
// in constant time (of SHA-256 digests, so not even the length leaks).
func (h *Handler) authorized(r *http.Request) bool {
	const prefix = "Bearer "
	v := r.Header.Get("Authorization")
	if len(v) <= len(prefix) || v[:len(prefix)] != prefix {
		return false
	}
	got := sha256.Sum256([]byte(v[len(prefix):]))
	return subtle.ConstantTimeCompare(got[:], h.tokenHash[:]) == 1
}

// sessionJSON is one session in a list: never a token.
type sessionJSON struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	LastUsed  time.Time `json:"last_used"`
	ExpiresAt time.Time `json:"expires_at"`
	UserAgent string    `json:"user_agent,omitempty"`
}

// list answers GET /admin/sessions?sub=…
func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	sub, ok := subject(w, r)
	if !ok {
		return
	}
	infos, err := h.sessions.SubjectSessions(r.Context(), sub)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := struct {
		Subject  string        `json:"subject"`
		Sessions []sessionJSON `json:"sessions"`
	}{Subject: sub, Sessions: make([]sessionJSON, len(infos))}
	for i, s := range infos {
		out.Sessions[i] = sessionJSON{ID: s.ID, CreatedAt: s.CreatedAt.UTC(), LastUsed: s.LastUsed.UTC(), ExpiresAt: s.ExpiresAt.UTC(), UserAgent: s.UserAgent}
	}
	writeJSON(w, http.StatusOK, out)
}

// endSubject answers DELETE /admin/sessions?sub=…: every session of sub.
func (h *Handler) endSubject(w http.ResponseWriter, r *http.Request) {
	if sub, ok := subject(w, r); ok {
		h.end(w, r, sub, "")
	}
}

// endOne answers DELETE /admin/sessions/{id}?sub=…
func (h *Handler) endOne(w http.ResponseWriter, r *http.Request) {
	if sub, ok := subject(w, r); ok {
		h.end(w, r, sub, r.PathValue("id"))
	}
}

// endAnswer says what an end call did.
type endAnswer struct {
	Ended   int `json:"ended"`
	Revoked int `json:"revoked"`
	// RevokeFailed counts refresh tokens the provider did not revoke
	// (it failed, or has no revocation endpoint); their sessions ended
	// all the same.
	RevokeFailed int `json:"revoke_failed"`
	// NotRevocable counts sessions ended without their refresh tokens
	// being read (created while admin.escrow was off): those tokens stay
	// valid at the provider until they expire there.
	NotRevocable int `json:"not_revocable"`
}

// end ends the session id of sub (every one when id is ""), revokes their
// refresh tokens and writes the audit line.
func (h *Handler) end(w http.ResponseWriter, r *http.Request, sub, id string) {
	ended, err := h.sessions.EndSubjectSessions(r.Context(), sub, id)
	if err != nil && len(ended) == 0 {
		h.fail(w, r, err)
		return
	}
	ans := h.revoke(r.Context(), ended)
	action := "end_subject_sessions"
	if id != "" {
		action = "end_session"
	}
	h.audit(r, action, slog.String("subject", sub), slog.String("session", id),
		slog.Int("ended", ans.Ended), slog.Int("revoked", ans.Revoked), slog.Int("revoke_failed", ans.RevokeFailed),
		slog.Int("not_revocable", ans.NotRevocable))
	if err != nil {
		// Some ended before the store failed: say so, then the failure.
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// revoke revokes the refresh tokens of the ended sessions that have one
// at hand, and counts.
func (h *Handler) revoke(ctx context.Context, ended []session.EndedSession) endAnswer {
	ans := endAnswer{Ended: len(ended)}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	for _, e := range ended {
		switch {
		case !e.Escrowed:
			ans.NotRevocable++
			continue
		case e.RefreshToken.IsZero():
			continue
		}
		if err := h.revoker.Revoke(ctx, e.RefreshToken); err != nil {
			ans.RevokeFailed++
			h.log.LogAttrs(ctx, slog.LevelWarn, "admin: refresh token not revoked", slog.String("error", err.Error()))
			continue
		}
		ans.Revoked++
	}
	return ans
}

// endAll answers POST /admin/sessions/end-all: the kill switch.
func (h *Handler) endAll(w http.ResponseWriter, r *http.Request) {
	at, err := h.sessions.EndAll(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.audit(r, "end_all_sessions", slog.Time("created_before", at))
	writeJSON(w, http.StatusOK, struct {
		EndedBefore time.Time `json:"ended_sessions_created_before"`
	}{at.UTC()})
}

// audit writes one audit line: who called (address, the actor it names in
// X-Admin-Actor), what, and the outcome attributes.
func (h *Handler) audit(r *http.Request, action string, attrs ...slog.Attr) {
	attrs = append([]slog.Attr{
		slog.Bool("audit", true),
		slog.String("action", action),
		slog.String("remote_addr", r.RemoteAddr),
		slog.String("actor", actor(r)),
	}, attrs...)
	h.log.LogAttrs(r.Context(), slog.LevelInfo, "admin: "+action, attrs...)
}

// actor is the caller's own name for itself (X-Admin-Actor), printable
// ASCII only and bounded; the shared token itself names nobody.
func actor(r *http.Request) string {
	v := r.Header.Get("X-Admin-Actor")
	out := make([]byte, 0, min(len(v), maxActor))
	for i := 0; i < len(v) && len(out) < maxActor; i++ {
		if v[i] >= 0x20 && v[i] < 0x7f {
			out = append(out, v[i])
		}
	}
	return string(out)
}

// subject reads the required sub query parameter, answering 400 without
// it.
func subject(w http.ResponseWriter, r *http.Request) (string, bool) {
	sub := r.URL.Query().Get("sub")
	if sub == "" || len(sub) > 1024 {
		writeError(w, http.StatusBadRequest, "invalid_request", "the sub query parameter names the subject")
		return "", false
	}
	return sub, true
}

// fail maps the session manager's errors to answers.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, session.ErrNoSession):
		writeError(w, http.StatusNotFound, "not_found", "no live session of that subject has that id")
	case errors.Is(err, session.ErrStoreUnavailable):
		h.log.LogAttrs(r.Context(), slog.LevelError, "admin: store unavailable", slog.String("error", err.Error()))
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "the session store cannot be reached")
	default:
		h.log.LogAttrs(r.Context(), slog.LevelError, "admin: call failed", slog.String("error", err.Error()))
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "tokenrelay cannot serve the admin API now")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, msg})
}
