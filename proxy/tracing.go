package proxy

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/tracing"
)

// startSpan starts the server span of r, continuing the client's W3C
// traceparent when it sent one, and returns r with the span's context.
// Only a traced Handler calls it.
func (h *Handler) startSpan(r *http.Request) (*http.Request, trace.Span) {
	ctx := tracing.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := h.tracer.Start(ctx, "tokenrelay "+r.Method, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		path := r.URL.Path
		if len(path) > maxLoggedPath {
			path = path[:maxLoggedPath]
		}
		span.SetAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("url.path", path),
		)
	}
	return r.WithContext(ctx), span
}

// endSpan ends the server span with what the request learnt: its route,
// status and request id (never the query string, a token or a cookie).
func endSpan(span trace.Span, w *responseRecorder, st *requestState) {
	if span.IsRecording() {
		status := w.status
		if st.failed != 0 && status == 0 {
			status = st.failed
		}
		span.SetName("tokenrelay " + st.metrics.label)
		span.SetAttributes(
			attribute.String("http.route", st.metrics.label),
			attribute.Int("http.response.status_code", status),
			attribute.String("tokenrelay.request_id", st.id),
			attribute.Bool("tokenrelay.refreshed", st.refreshed),
			attribute.Bool("tokenrelay.retried", st.retried),
		)
		if status >= 500 {
			span.SetStatus(codes.Error, "")
		}
	}
	span.End()
}
