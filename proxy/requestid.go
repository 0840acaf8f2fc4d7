package proxy

import (
	"context"
	"crypto/rand"
	"net/http"
)

// requestIDHeader carries the request id to the client and to the upstream.
const requestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds an incoming request id we are willing to keep.
const maxRequestIDLen = 128

// requestID returns the id of the request that ctx belongs to, or "" outside
// a request served by Handler.
func requestID(ctx context.Context) string {
	if st := stateFrom(ctx); st != nil {
		return st.id
	}
	return ""
}

// incomingRequestID keeps a caller's id when it is well formed (1 to 128
// characters of [A-Za-z0-9._-]), so one id can follow a request through
// several proxies; anything else is replaced by a fresh random id, so a
// client cannot smuggle log-breaking text through the header.
func incomingRequestID(h http.Header) string {
	if id := h.Get(requestIDHeader); validRequestID(id) {
		return id
	}
	// 26 characters of base32: 128 random bits.
	return rand.Text()
}

// validRequestID reports whether id is 1 to 128 characters of
// [A-Za-z0-9._-].
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
