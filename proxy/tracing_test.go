package proxy

import (
	"net/http"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestRequestSpan pins the server span of a traced Handler: it continues
// the client's traceparent (same trace, the client's span as parent), is
// named after the route, records method, path (without the query), route,
// status and request id; an auth endpoint's log lines carry the trace id;
// a request without a traceparent starts a trace of its own.
func TestRequestSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	up := newPxUpstream(t, "up", nil)
	e := newPxEnv(t, Options{TracerProvider: tp, Routes: []Route{{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone}}})

	const traceID, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := e.req(t, http.MethodGet, "/page?code=secret-code", nil)
	r.Header.Set("Traceparent", "00-"+traceID+"-"+clientSpan+"-01")
	res, _ := e.do(t, r)
	r = e.req(t, http.MethodGet, "/.auth/callback?error=access_denied&state=x", nil)
	r.Header.Set("Traceparent", "00-"+traceID+"-"+clientSpan+"-01")
	e.do(t, r)
	e.do(t, e.req(t, http.MethodGet, "/other", nil))

	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	page := spans[0]
	if page.Name() != "tokenrelay pub" || page.SpanKind() != trace.SpanKindServer {
		t.Errorf("span %q kind %v, want \"tokenrelay pub\" server", page.Name(), page.SpanKind())
	}
	if page.SpanContext().TraceID().String() != traceID || page.Parent().SpanID().String() != clientSpan {
		t.Errorf("span in trace %s with parent %s, want trace %s, parent %s", page.SpanContext().TraceID(), page.Parent().SpanID(), traceID, clientSpan)
	}
	attrs := map[string]string{}
	for _, a := range page.Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	for k, v := range map[string]string{"http.request.method": "GET", "url.path": "/page", "http.route": "pub", "http.response.status_code": "200", "tokenrelay.request_id": res.Header.Get(requestIDHeader)} {
		if attrs[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
	if spans[1].Name() != "tokenrelay auth" {
		t.Errorf("auth endpoint span %q, want \"tokenrelay auth\"", spans[1].Name())
	}
	if spans[2].SpanContext().TraceID().String() == traceID || spans[2].Parent().IsValid() {
		t.Error("a request without a traceparent joined another trace")
	}
	if !strings.Contains(e.logs.String(), `"trace_id":"`+traceID+`"`) {
		t.Errorf("no log line of the login request carries its trace id:\n%s", e.logs)
	}
}
