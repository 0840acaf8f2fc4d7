package proxy

import (
	"bufio"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// maxLoggedPath bounds the path written to the access log.
const maxLoggedPath = 1024

// responseRecorder remembers the status and size of an answer. It keeps
// the optional abilities ReverseProxy needs (flushing for streams,
// hijacking for WebSocket) and lets http.ResponseController reach the rest
// through Unwrap.
type responseRecorder struct {
	http.ResponseWriter
	status   int
	bytes    int64
	hijacked bool
}

func (w *responseRecorder) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		// Informational answers (100, 103) are not the final status.
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// FlushError flushes buffered data to the client.
func (w *responseRecorder) FlushError() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush implements http.Flusher.
func (w *responseRecorder) Flush() { _ = w.FlushError() }

// Hijack implements http.Hijacker for protocol upgrades.
func (w *responseRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
		if w.status == 0 {
			w.status = http.StatusSwitchingProtocols
		}
	}
	return c, brw, err
}

// Unwrap lets http.ResponseController find the underlying writer.
func (w *responseRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish records the metrics and the access log line of one request.
func (h *Handler) finish(w *responseRecorder, r *http.Request, st *requestState, d time.Duration) {
	status := w.status
	switch {
	case st.failed == StatusClientClosedRequest:
		status = StatusClientClosedRequest
	case st.aborted && r.Context().Err() != nil:
		// The client went away while the body was streaming.
		status = StatusClientClosedRequest
	case status == 0 && st.aborted:
		status = http.StatusInternalServerError
	case status == 0:
		// Nothing written: net/http sends 200 with an empty body.
		status = http.StatusOK
	}
	st.metrics.observe(status, d)

	ctx := r.Context()
	lh := h.log.Handler()
	if !lh.Enabled(ctx, slog.LevelInfo) {
		return
	}
	logged := r
	if st.original != nil {
		// An ingress's question: the request it asked about.
		logged = st.original
	}
	path := logged.URL.Path
	if len(path) > maxLoggedPath {
		path = path[:maxLoggedPath]
	}
	// The record is built here rather than by Logger.LogAttrs, which
	// looks up its caller on every call for a source the handler does
	// not print. Never the query string, cookies, Authorization or
	// tokens.
	attrs := [...]slog.Attr{
		slog.String("method", logged.Method),
		slog.String("path", path),
		slog.String("route", st.metrics.label),
		slog.Int("status", status),
		slog.Duration("duration", d),
		slog.String("upstream", st.upstream),
		slog.Bool("refreshed", st.refreshed),
		slog.Bool("retried", st.retried),
		slog.Int64("bytes", w.bytes),
		slog.String("request_id", st.id),
		// Last: only the verify endpoint's lines have it.
		slog.Bool("forward_auth", true),
	}
	n := len(attrs) - 1
	if st.forwardAuth {
		n++
	}
	rec := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
	rec.AddAttrs(attrs[:n]...)
	_ = lh.Handle(ctx, rec)
}
