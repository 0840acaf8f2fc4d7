package identity

import (
	"net/http"
	"strconv"
)

// jwksMaxAge is how long an upstream may cache the JWKS. It is well below
// the default PublishAhead, so a cached copy always lists the next key
// before it signs.
const jwksMaxAge = 300

// ServeHTTP serves the JWKS (mounted at <auth_prefix>/jwks.json).
func (r *KeyRing) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body := r.JWKS(req.Context())
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(jwksMaxAge))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if req.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}
