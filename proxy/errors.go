package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/tokenrelay/tokenrelay/session"
)

// StatusClientClosedRequest is nginx's non-standard status for a client that
// went away before the answer was ready. It is logged, never sent.
const StatusClientClosedRequest = 499

// errCSRF marks a request refused by the cross-site request forgery defence.
var errCSRF = errors.New("proxy: cross-site request refused")

// errBodyTooLarge marks a request body over the configured limit.
var errBodyTooLarge = errors.New("proxy: request body too large")

// errBadRequestBody marks a request body that could not be read.
var errBadRequestBody = errors.New("proxy: request body unreadable")

// Paths the request path refuses before any session is looked at.
var (
	errDotSegment    = errors.New("proxy: path with . or .. segments")
	errEscapedPrefix = errors.New("proxy: path spells its route's prefix with escapes")
	errNoRoute       = errors.New("proxy: no route serves this path")
	// errForwardAuthOnly: the route has no upstream; only an ingress's
	// verify requests use it.
	errForwardAuthOnly = errors.New("proxy: route served by forward-auth only")
)

// errCaptureFailed marks a login answer that claims tokens tokenrelay could
// not take out of it; it is refused rather than passed on with tokens.
var errCaptureFailed = errors.New("proxy: token capture failed")

// apiError is the JSON body of every error tokenrelay answers itself.
type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// writeError answers with {"error": code, "message": message}.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, apiError{Error: code, Message: message})
}

// writeJSON is how every JSON answer of tokenrelay's own is written: v as
// JSON, never cached, never sniffed as another type (HEAD gets the headers
// only).
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// failure is how one error is answered.
type failure struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when positive, is sent as a Retry-After header.
	RetryAfter time.Duration
	// ClearCookie ends the browser's session cookie.
	ClearCookie bool
	// Quiet errors are not logged at error level (client went away).
	Quiet bool
	// CloseConnection ends the client's connection after the answer (its
	// request was not read to the end).
	CloseConnection bool
}

// classify maps every error the request path can meet to its answer. It is
// the only place that decides statuses, so the same error always looks the
// same to clients.
func classify(ctx context.Context, err error) failure {
	var unavailable *session.UnavailableError
	var netErr net.Error
	var tooLarge *http.MaxBytesError
	var original *originalError
	switch {
	case errors.Is(err, errDotSegment):
		return failure{Status: http.StatusBadRequest, Code: "bad_request", Message: "the path must not contain . or .. segments"}
	case errors.Is(err, errEscapedPrefix):
		return failure{Status: http.StatusBadRequest, Code: "bad_request", Message: "the path must not spell its route's prefix with escapes (such as %2F)"}
	case errors.Is(err, errNoRoute):
		return failure{Status: http.StatusNotFound, Code: "not_found", Message: "no route serves this path"}
	case errors.Is(err, errNotVerify):
		return failure{Status: http.StatusNotFound, Code: "not_found", Message: "the forward-auth listener serves only the verify endpoint"}
	case errors.Is(err, errForwardAuthOnly):
		return failure{Status: http.StatusNotFound, Code: "not_found", Message: "no upstream serves this path here: the ingress serves it (forward-auth)"}
	case errors.Is(err, errCaptureForwarded):
		return failure{Status: http.StatusForbidden, Code: "forbidden", Message: "a login route with token capture must be routed to tokenrelay, not through forward-auth: its answer carries tokens"}
	case errors.Is(err, errUnprotected):
		return failure{Status: http.StatusForbidden, Code: "forbidden", Message: "no route protects this path, so tokenrelay refuses it"}
	case errors.As(err, &original):
		return failure{Status: http.StatusBadRequest, Code: "bad_request", Message: original.msg}
	case errors.Is(err, session.ErrNoSession):
		return failure{Status: http.StatusUnauthorized, Code: "login_required", Message: "no session: log in first"}
	case errors.Is(err, session.ErrSessionExpired):
		return failure{Status: http.StatusUnauthorized, Code: "session_expired", Message: "the session has ended: log in again", ClearCookie: true}
	case errors.Is(err, session.ErrClientRejected):
		retry := time.Second
		if errors.As(err, &unavailable) {
			retry = max(unavailable.RetryAfter, retry)
		}
		return failure{Status: http.StatusServiceUnavailable, Code: "provider_rejected_client", Message: "the identity provider refuses tokenrelay's client (a configuration error); the session is kept", RetryAfter: retry}
	case errors.Is(err, session.ErrTokenRefused):
		return failure{Status: http.StatusForbidden, Code: "token_refused", Message: "the identity provider refused a token for this route"}
	case errors.As(err, &unavailable):
		return failure{Status: http.StatusServiceUnavailable, Code: "refresh_unavailable", Message: "the identity provider cannot refresh the access token right now", RetryAfter: max(unavailable.RetryAfter, time.Second)}
	case errors.Is(err, session.ErrStoreUnavailable):
		return failure{Status: http.StatusServiceUnavailable, Code: "store_unavailable", Message: "the session store is unreachable", RetryAfter: time.Second}
	case errors.Is(err, errCSRF):
		return failure{Status: http.StatusForbidden, Code: "csrf", Message: "cross-site request refused: send it from the app's own origin with the CSRF header"}
	case errors.Is(err, errBodyTooLarge), errors.As(err, &tooLarge):
		return failure{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: "request body too large"}
	case errors.Is(err, errBodyTimeout):
		return failure{Status: http.StatusRequestTimeout, Code: "request_timeout", Message: "the request body did not arrive in time", CloseConnection: true}
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, errBadRequestBody)):
		return failure{Status: StatusClientClosedRequest, Code: "client_closed_request", Message: "client went away", Quiet: true}
	case errors.Is(err, errBadRequestBody):
		return failure{Status: http.StatusBadRequest, Code: "bad_request", Message: "the request body could not be read"}
	case errors.Is(err, errAssertion):
		return failure{Status: http.StatusInternalServerError, Code: "internal_error", Message: "tokenrelay could not sign the identity assertion"}
	case errors.Is(err, errCaptureFailed):
		return failure{Status: http.StatusBadGateway, Code: "token_capture_failed", Message: "the login answer could not be turned into a session"}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return failure{Status: http.StatusGatewayTimeout, Code: "upstream_timeout", Message: "the upstream did not answer in time"}
	default:
		return failure{Status: http.StatusBadGateway, Code: "bad_gateway", Message: "the upstream could not be reached"}
	}
}

// retryAfterSeconds renders d as whole seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}
