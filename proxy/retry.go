package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/tokenrelay/tokenrelay/session"
)

// maxDrain bounds how much of a rejected answer is read so its connection
// can be reused; a longer body costs a new connection instead.
const maxDrain = 64 << 10

// prepareReplay makes r's body replayable when it is small enough: a body
// up to maxRetryBody (declared or, for chunked bodies, read) is buffered and
// r gets a GetBody; a larger one streams as it came and the request will not
// be retried.
func (h *Handler) prepareReplay(r *http.Request, st *requestState) error {
	if h.maxRetryBody < 0 && r.ContentLength != 0 {
		return nil
	}
	switch {
	case r.Body == nil || r.Body == http.NoBody:
		st.replayable = true
		return nil
	case r.ContentLength == 0 && len(r.TransferEncoding) == 0:
		st.replayable = true
		return nil
	case r.ContentLength > h.maxRetryBody:
		return nil
	}
	// Known length within the limit, or unknown length: read at most one
	// byte more than the limit to tell.
	buf := make([]byte, 0, min(max(r.ContentLength+1, 512), h.maxRetryBody+1))
	buf, err := readUpTo(buf, r.Body, h.maxRetryBody+1)
	if err != nil {
		return fmt.Errorf("proxy: read request body: %w", bodyReadError(err))
	}
	if int64(len(buf)) > h.maxRetryBody {
		// Over the limit: send what was read, then the rest, once.
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(buf))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	r.ContentLength = int64(len(buf))
	r.TransferEncoding = nil
	st.replayable = true
	return nil
}

// readUpTo appends to buf from r until EOF or until buf holds limit bytes.
func readUpTo(buf []byte, r io.Reader, limit int64) ([]byte, error) {
	lr := io.LimitReader(r, limit-int64(len(buf)))
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// bodyReadError keeps *http.MaxBytesError recognisable (413) and marks other
// read failures as the client's (400, or 499 when it went away).
func bodyReadError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Errorf("%w: %w", errBodyTooLarge, err)
	}
	return fmt.Errorf("%w: %w", errBadRequestBody, err)
}

// retryTransport re-sends a request once with a refreshed token when the
// upstream answers 401 to the token it was sent with, and once with the
// upstream's nonce when it answers a DPoP proof with use_dpop_nonce. What
// it needs per request (the token's source, the token, whether the body is
// replayable) is in the request's state, so one retryTransport serves
// every request. Safe for concurrent use.
type retryTransport struct {
	next http.RoundTripper
	h    *Handler
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateFrom(req.Context())
	if st == nil || st.token.IsZero() || st.route == nil {
		return t.next.RoundTrip(req)
	}
	// Keep our own handle on the body: the transport may replace nothing
	// on req, but GetBody is what replays it.
	getBody := req.GetBody
	res, err := t.next.RoundTrip(req)
	if err != nil {
		return res, err
	}
	if st.dpop != nil {
		st.route.nonces.learn(res)
		if nonceChallenge(res) && st.replayable {
			if res, err = t.resend(req, getBody, res, st); err != nil || res.StatusCode != http.StatusUnauthorized {
				return res, err
			}
		}
	}
	if res.StatusCode != http.StatusUnauthorized || !st.replayable || !t.h.retryOn401 {
		return res, nil
	}
	tok, err := t.h.fetchToken(req.Context(), st)
	if errors.Is(err, session.ErrSessionExpired) || errors.Is(err, session.ErrNoSession) {
		// The session is over: say so (and clear the cookie) rather than
		// pass on the upstream's 401.
		discard(res)
		return nil, fmt.Errorf("proxy: refresh after 401: %w", err)
	}
	if err != nil || tok.Value == st.token {
		// A transient failure, or no newer token: the upstream's own
		// answer is the most honest thing to hand on.
		return res, nil
	}
	st.retried = true
	refreshed := st.refreshed
	st.useToken(tok, st.kind)
	st.refreshed = refreshed || tok.Refreshed
	st.route.metrics.retries.Inc()
	return t.resend(req, getBody, res, st)
}

// resend sends req again with st's token (and a fresh proof when the token
// is DPoP-bound), its body from getBody, in place of the answer res; res
// itself when the body cannot be had again.
func (t *retryTransport) resend(req *http.Request, getBody func() (io.ReadCloser, error), res *http.Response, st *requestState) (*http.Response, error) {
	retry, ok := replay(req, getBody)
	if !ok {
		return res, nil
	}
	discard(res)
	t.h.setToken(retry, st, st.route.nonces.get())
	return t.next.RoundTrip(retry)
}

// replay is req again, its body from getBody; false when the body cannot
// be had again.
func replay(req *http.Request, getBody func() (io.ReadCloser, error)) (*http.Request, bool) {
	var body io.ReadCloser
	if req.Body != nil && req.Body != http.NoBody {
		if getBody == nil {
			return nil, false
		}
		var err error
		if body, err = getBody(); err != nil {
			return nil, false
		}
	}
	retry := req.Clone(req.Context())
	retry.Body = body
	return retry, true
}

// discard drains a little of an answer that will not be used, so its
// connection can be reused, and closes it.
func discard(res *http.Response) {
	_, _ = io.CopyN(io.Discard, res.Body, maxDrain)
	_ = res.Body.Close()
}
