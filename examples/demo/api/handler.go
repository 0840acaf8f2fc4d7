package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
)

//go:embed static/index.html
var indexHTML []byte

// tokenVerifier is what the handler needs from *verifier.
type tokenVerifier interface {
	Verify(ctx context.Context, raw string) (*accessClaims, error)
}

// whoami is the answer of GET /api/whoami. It describes the token without
// ever containing it.
type whoami struct {
	Sub   string `json:"sub"`
	Exp   int64  `json:"exp"`
	Iat   int64  `json:"iat"`
	JTI   string `json:"jti"`
	Scope string `json:"scope"`
	// TokensSeen counts the distinct access tokens (by jti) this process
	// has accepted, so the demo shows tokens being replaced.
	TokensSeen int `json:"tokens_seen"`
}

// seenSet counts distinct token ids; it forgets everything past maxSeen so a
// long demo cannot grow it without bound.
type seenSet struct {
	mu    sync.Mutex
	ids   map[string]struct{} // guarded by mu
	total int                 // guarded by mu
}

const maxSeen = 100_000

func (s *seenSet) add(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil || len(s.ids) >= maxSeen {
		s.ids = make(map[string]struct{})
	}
	if _, ok := s.ids[id]; !ok {
		s.ids[id] = struct{}{}
		s.total++
	}
	return s.total
}

// newHandler serves the API, the health check, the page and the refresh
// counters it shows (metrics; nil answers 404). A nil logger discards
// logs.
func newHandler(v tokenVerifier, logger *slog.Logger, metrics http.Handler) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	seen := &seenSet{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /api/whoami", func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearer(r)
		if !ok {
			unauthorized(w, "", "no Bearer access token")
			logger.Info("whoami", "status", http.StatusUnauthorized, "reason", "no token")
			return
		}
		c, err := v.Verify(r.Context(), raw)
		if err != nil {
			unauthorized(w, "invalid_token", "the access token is invalid or expired")
			logger.Info("whoami", "status", http.StatusUnauthorized, "reason", err.Error())
			return
		}
		out := whoami{Sub: c.Subject, JTI: c.ID, Scope: c.Scope, TokensSeen: seen.add(c.ID)}
		if c.ExpiresAt != nil {
			out.Exp = c.ExpiresAt.Unix()
		}
		if c.IssuedAt != nil {
			out.Iat = c.IssuedAt.Unix()
		}
		if r.Header.Get("Cookie") != "" {
			// tokenrelay strips its own cookie; an API should never need the
			// browser's session cookie. Say so loudly in the demo.
			logger.Warn("whoami: request carried a Cookie header")
		}
		logger.Info("whoami", "status", http.StatusOK, "sub", out.Sub, "jti", out.JTI, "exp", out.Exp)
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "message": "no such API endpoint"})
	})
	if metrics == nil {
		metrics = &refreshMetrics{}
	}
	mux.Handle("GET /demo/metrics", metrics)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
		_, _ = w.Write(indexHTML)
	})
	return mux
}

func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return tok, true
}

// unauthorized answers 401 with an RFC 6750 WWW-Authenticate header and a
// JSON body.
func unauthorized(w http.ResponseWriter, code, msg string) {
	if code == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="demo-api"`)
		code = "unauthorized"
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="demo-api", error="`+code+`"`)
	}
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
