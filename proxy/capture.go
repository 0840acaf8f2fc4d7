package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/tokenrelay/tokenrelay/session"
)

// maxCaptureBody is the largest login answer read to capture tokens. A
// larger 2xx JSON answer is refused (it may hold tokens tokenrelay did not
// read), never handed to the browser as it is.
const maxCaptureBody = 1 << 20

// CaptureRoute is a login or signup endpoint of a custom backend whose 2xx
// JSON answer carries tokens: tokenrelay keeps them in a new session and
// hands the browser the answer without them.
type CaptureRoute struct {
	// Method defaults to POST.
	Method string
	// Path is matched exactly.
	Path string
}

type captureKey struct{ method, path string }

func captureSet(routes []CaptureRoute) (map[captureKey]struct{}, error) {
	set := make(map[captureKey]struct{}, len(routes))
	for _, c := range routes {
		if c.Method == "" {
			c.Method = http.MethodPost
		}
		if !strings.HasPrefix(c.Path, "/") {
			return nil, fmt.Errorf("proxy: capture route %q: path must start with /", c.Path)
		}
		set[captureKey{strings.ToUpper(c.Method), c.Path}] = struct{}{}
	}
	return set, nil
}

// modifyResponse is the ReverseProxy's ModifyResponse: it captures tokens
// from the answers of capture routes and leaves every other answer alone,
// except that the upstream's X-Request-Id (often an echo of ours) is
// dropped so the client sees exactly one.
func (h *Handler) modifyResponse(res *http.Response) error {
	res.Header.Del(requestIDHeader)
	st := stateFrom(res.Request.Context())
	if st == nil || !st.capture {
		return nil
	}
	return h.captureTokens(res, st)
}

// captureTokens turns a successful login answer into a session. Answers
// that are not 2xx JSON, or that carry no access token, pass untouched. An
// answer that may carry tokens tokenrelay cannot keep (over 1 MiB, a
// compressed body, a mapping error, a failed session write) is refused with
// an error rather than handed to the browser with the tokens in it.
func (h *Handler) captureTokens(res *http.Response, st *requestState) error {
	if res.StatusCode < 200 || res.StatusCode > 299 || !isJSON(res.Header.Get("Content-Type")) {
		return nil
	}
	if res.ContentLength > maxCaptureBody {
		return fmt.Errorf("proxy: capture: answer of %d bytes, over %d: %w", res.ContentLength, maxCaptureBody, errCaptureFailed)
	}
	if ce := res.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fmt.Errorf("proxy: capture: answer encoded as %q despite Accept-Encoding identity: %w", ce, errCaptureFailed)
	}
	body, err := readUpTo(make([]byte, 0, 4096), res.Body, maxCaptureBody+1)
	if err != nil {
		return fmt.Errorf("proxy: capture: read answer: %w", err)
	}
	if len(body) > maxCaptureBody {
		_ = res.Body.Close()
		return fmt.Errorf("proxy: capture: answer over %d bytes: %w", maxCaptureBody, errCaptureFailed)
	}
	_ = res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(body))

	tok, id, stripped, ok, err := h.provider.Capture(body)
	if err != nil {
		return fmt.Errorf("proxy: capture: %w: %w", errCaptureFailed, err)
	}
	if !ok {
		return nil
	}
	if tok == nil || tok.AccessToken.IsZero() {
		return fmt.Errorf("proxy: capture: provider reported tokens but gave none: %w", errCaptureFailed)
	}
	rec := session.Record{
		AccessToken:   tok.AccessToken,
		RefreshToken:  tok.RefreshToken,
		IDToken:       tok.IDToken,
		AccessExpiry:  tok.Expiry,
		RefreshExpiry: tok.RefreshExpiry,
		CreatedAt:     h.now(),
	}
	if id != nil {
		rec.Issuer, rec.Subject, rec.SID, rec.Claims = id.Issuer, id.Subject, id.SID, id.Claims
	}

	ctx := res.Request.Context()
	if st.hasTicket {
		// A fresh ticket for every login: the old session ends, so a
		// ticket planted before login is worth nothing after it.
		if _, err := h.sessions.End(ctx, st.ticket, "replaced"); err != nil && !errors.Is(err, session.ErrNoSession) {
			return fmt.Errorf("proxy: capture: end previous session: %w", err)
		}
	}
	t, err := h.sessions.Create(ctx, rec, "capture")
	if err != nil {
		return fmt.Errorf("proxy: capture: create session: %w", err)
	}
	h.cookie.Set(headerWriter(res.Header), t, h.sessionMaxAge)

	res.Body = io.NopCloser(bytes.NewReader(stripped))
	res.ContentLength = int64(len(stripped))
	res.Header.Set("Content-Length", strconv.Itoa(len(stripped)))
	// The validators described the body with the tokens in it.
	res.Header.Del("Etag")
	res.Header.Del("Content-Md5")
	res.Header.Set("Cache-Control", "no-store")
	h.log.LogAttrs(ctx, slog.LevelInfo, "proxy: session created from captured login",
		slog.String("route", st.metrics.label),
		slog.String("request_id", st.id))
	return nil
}

// isJSON reports whether a Content-Type is JSON (application/json or
// any +json type).
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// headerWriter lets session.CookieOptions.Set write its Set-Cookie into an
// upstream answer's header, which ReverseProxy then copies to the client.
type headerWriter http.Header

func (w headerWriter) Header() http.Header         { return http.Header(w) }
func (w headerWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w headerWriter) WriteHeader(int)             {}
