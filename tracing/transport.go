package tracing

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Transport returns next wrapped so that each request made inside a traced
// request gets a client span named "<peer> <METHOD>" (peer: "upstream",
// "provider") and carries its traceparent. A request outside any trace
// (the provider's key refresh, say) passes through untouched, so
// background work makes no root spans. With tp nil, next is returned as
// is.
//
// The span's attributes name the method, the server address, the path
// (never the query string, which may hold secrets) and the status.
func Transport(next http.RoundTripper, tp trace.TracerProvider, peer string) http.RoundTripper {
	if tp == nil {
		return next
	}
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{next: next, tracer: NewTracer(tp), peer: peer}
}

type transport struct {
	next   http.RoundTripper
	tracer Tracer
	peer   string
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return t.next.RoundTrip(req)
	}
	ctx, span := t.tracer.Start(ctx, t.peer+" "+req.Method, trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("http.request.method", req.Method),
			attribute.String("server.address", req.URL.Host),
			attribute.String("url.path", truncate(req.URL.Path, 256)),
			attribute.String("peer.service", t.peer),
		)
	}
	// RoundTrip must not change the caller's request: headers on a copy.
	out := req.Clone(ctx)
	Propagator.Inject(ctx, propagation.HeaderCarrier(out.Header))
	resp, err := t.next.RoundTrip(out)
	if err != nil {
		span.SetStatus(codes.Error, "no answer")
		return resp, err
	}
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	}
	if resp.StatusCode >= 500 {
		span.SetStatus(codes.Error, "")
	}
	return resp, nil
}

// truncate bounds an attribute value.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
