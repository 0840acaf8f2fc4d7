package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/session"
)

// capturer reads the answer of a capture route (custom providers):
// *idp.Provider.Capture.
type capturer interface {
	// Capture returns nil and no error only when body provably holds no
	// token, and an error when it may hold tokens it cannot use (the
	// answer must then not reach the browser).
	Capture(body []byte) (*idp.Captured, error)
}

// sessionStarter starts the session of a login (callback or token
// capture).
type sessionStarter interface {
	// Replace ends the sessions of old (the tickets the browser sent) and
	// stores rec under a fresh ticket, which it returns.
	Replace(ctx context.Context, old []session.Ticket, rec session.Record, via session.Via) (session.Ticket, error)
}

// maxCaptureBody is the largest answer of a capture route that is read to
// find tokens. A larger answer, whatever its status and type, is refused (it
// may hold tokens tokenrelay did not read), never handed to the browser as
// it is.
const maxCaptureBody = 1 << 20

// CaptureRoute is a login or signup endpoint of a custom backend whose
// successful answer carries tokens; the provider's options hold them
// (provider.custom.capture).
type CaptureRoute = idp.CaptureRoute

type captureKey struct{ method, path string }

// newCaptureKey is the key of a request (or configured route) in the set
// of capture routes. It allocates only for a path with upper-case letters.
func newCaptureKey(method, path string) captureKey {
	if len(path) > 1 {
		path = strings.TrimRight(path, "/")
	}
	return captureKey{method, strings.ToLower(path)}
}

func captureSet(routes []CaptureRoute) (map[captureKey]struct{}, error) {
	set := make(map[captureKey]struct{}, len(routes))
	for _, c := range routes {
		if c.Method == "" {
			c.Method = http.MethodPost
		}
		if !strings.HasPrefix(c.Path, "/") {
			return nil, fmt.Errorf("proxy: capture route %q: path must start with /", c.Path)
		}
		set[newCaptureKey(strings.ToUpper(c.Method), c.Path)] = struct{}{}
	}
	return set, nil
}

// captureTokens inspects every answer of a capture route, whatever its
// status and Content-Type (browsers' JSON parsers do not look at either):
// the body is read whole, up to maxCaptureBody, and given to the provider.
// A 2xx answer holding the mapped tokens becomes a session and reaches the
// browser without the token fields; any other answer that holds, or may
// hold, tokens is refused (502 token_capture_failed) rather than relayed:
// a non-2xx one with tokens, one the provider cannot read cleanly, one over
// the limit, and one encoded (gzip, br...) despite the request's
// Accept-Encoding: identity. Answers without tokens are relayed as they
// came.
func (h *Handler) captureTokens(res *http.Response, st *requestState) error {
	if !hasBody(res) {
		return nil
	}
	body, err := readCaptureBody(res)
	if err != nil {
		return err
	}
	c, err := h.capturer.Capture(body)
	switch {
	case err != nil:
		return fmt.Errorf("proxy: capture: %w: %w", errCaptureFailed, err)
	case c == nil:
		return nil
	case res.StatusCode < 200 || res.StatusCode > 299:
		return fmt.Errorf("proxy: capture: a %d answer carries tokens: %w", res.StatusCode, errCaptureFailed)
	case c.Token == nil || c.Token.AccessToken.IsZero():
		return fmt.Errorf("proxy: capture: provider reported tokens but gave none: %w", errCaptureFailed)
	}
	return h.startCapturedSession(res, st, c)
}

// hasBody reports whether an answer can carry a body at all.
func hasBody(res *http.Response) bool {
	switch {
	case res.Request.Method == http.MethodHead,
		res.StatusCode < 200,
		res.StatusCode == http.StatusNoContent,
		res.StatusCode == http.StatusNotModified:
		return false
	}
	return true
}

// readCaptureBody reads res's body whole (declared or chunked) and puts it
// back on res with its exact length. It fails with errCaptureFailed when
// the body is over maxCaptureBody or encoded: either may hide tokens.
func readCaptureBody(res *http.Response) ([]byte, error) {
	defer res.Body.Close()
	if res.ContentLength > maxCaptureBody {
		return nil, fmt.Errorf("proxy: capture: answer of %d bytes, over %d: %w", res.ContentLength, maxCaptureBody, errCaptureFailed)
	}
	size := int64(4096)
	if res.ContentLength >= 0 {
		size = res.ContentLength + 1
	}
	body, err := readUpTo(make([]byte, 0, size), res.Body, maxCaptureBody+1)
	if err != nil {
		return nil, fmt.Errorf("proxy: capture: read answer: %w", err)
	}
	if len(body) > maxCaptureBody {
		return nil, fmt.Errorf("proxy: capture: answer over %d bytes: %w", maxCaptureBody, errCaptureFailed)
	}
	if len(body) > 0 && encoded(res.Header) {
		return nil, fmt.Errorf("proxy: capture: answer encoded as %q despite Accept-Encoding identity: %w", res.Header.Values("Content-Encoding"), errCaptureFailed)
	}
	setBody(res, body)
	return body, nil
}

// encoded reports whether a Content-Encoding other than identity applies.
func encoded(h http.Header) bool {
	for _, line := range h["Content-Encoding"] {
		for ce := range strings.SplitSeq(line, ",") {
			if ce = strings.Trim(ce, " \t"); ce != "" && !strings.EqualFold(ce, "identity") {
				return true
			}
		}
	}
	return false
}

// setBody replaces res's body with b, declared by its exact length.
func setBody(res *http.Response, b []byte) {
	res.Body = io.NopCloser(bytes.NewReader(b))
	res.ContentLength = int64(len(b))
	res.TransferEncoding = nil
	res.Header.Set("Content-Length", strconv.Itoa(len(b)))
}

// loginRecord is the record of a new session: the tokens of a login, and
// the identity they prove when there is one.
func loginRecord(tok *idp.Token, id *idp.Identity, now time.Time) session.Record {
	rec := session.Record{
		AccessToken:   tok.AccessToken,
		RefreshToken:  tok.RefreshToken,
		IDToken:       tok.IDToken,
		AccessExpiry:  tok.Expiry,
		RefreshExpiry: tok.RefreshExpiry,
		CreatedAt:     now,
	}
	if id != nil {
		rec.Issuer, rec.Subject, rec.SID, rec.Claims = id.Issuer, id.Subject, id.SID, id.Claims
	}
	if tok.DPoPKey != nil {
		rec.DPoPKey = tok.DPoPKey.Bytes()
	}
	return rec
}

// startCapturedSession turns a successful login answer into a session: the
// browser's previous sessions end, a new one holds tok, its cookie
// joins the answer, and the body loses its token fields.
func (h *Handler) startCapturedSession(res *http.Response, st *requestState, c *idp.Captured) error {
	rec := loginRecord(c.Token, c.Identity, h.now())
	rec.UserAgent = userAgentSummary(res.Request.UserAgent())

	ctx := res.Request.Context()
	// A fresh ticket for every login: the sessions of every ticket the
	// browser sent end, so a ticket planted before login is worth nothing
	// after it.
	t, err := h.starter.Replace(ctx, st.cookies.tickets, rec, session.ViaCapture)
	if err != nil {
		return fmt.Errorf("proxy: capture: create session: %w", err)
	}
	h.cookie.Set(headerWriter(res.Header), t, h.sessionMaxAge)

	setBody(res, c.Body)
	// The validators described the body with the tokens in it.
	res.Header.Del("Etag")
	res.Header.Del("Content-Md5")
	res.Header.Set("Cache-Control", "no-store")
	h.log.LogAttrs(ctx, slog.LevelInfo, "proxy: session created from captured login",
		slog.String("route", st.metrics.label),
		slog.String("request_id", st.id))
	return nil
}

// headerWriter lets session.CookieOptions.Set write its Set-Cookie into an
// upstream answer's header, which ReverseProxy then copies to the client.
type headerWriter http.Header

func (w headerWriter) Header() http.Header         { return http.Header(w) }
func (w headerWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w headerWriter) WriteHeader(int)             {}
