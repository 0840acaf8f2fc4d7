package tracing

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func newRecorder() (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)), rec
}

// TestTracerOffAllocatesNothing pins that an off Tracer costs a request
// nothing: starting, checking and ending a span allocates no memory and
// leaves the context as it was.
func TestTracerOffAllocatesNothing(t *testing.T) {
	var tr Tracer
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		c, span := tr.Start(ctx, "x")
		if span.IsRecording() || c != ctx {
			t.Fatal("an off tracer recorded a span or changed the context")
		}
		span.End()
	})
	if allocs != 0 {
		t.Errorf("off Tracer: %v allocations per span, want 0", allocs)
	}
	if NewTracer(nil).On() {
		t.Error("NewTracer(nil) is on")
	}
}

// TestTransport pins the client span of an outgoing call: a child of the
// caller's span, its traceparent sent to the server, method, host, path
// and status recorded, the query string never; and a call outside any
// trace passes through without a span or a traceparent.
func TestTransport(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Traceparent"))
		w.WriteHeader(http.StatusTeapot)
	}))
	defer srv.Close()
	tp, rec := newRecorder()
	client := &http.Client{Transport: Transport(http.DefaultTransport, tp, "provider")}

	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/token?code=secret-code", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parent.End()
	if req.Header.Get("Traceparent") != "" {
		t.Error("the caller's request was changed")
	}

	req, _ = http.NewRequest("GET", srv.URL+"/jwks", nil)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2 (the call and its parent)", len(spans))
	}
	call := spans[0]
	if call.Name() != "provider POST" || call.SpanKind() != trace.SpanKindClient {
		t.Errorf("span %q kind %v, want \"provider POST\" client", call.Name(), call.SpanKind())
	}
	if call.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("the call's parent is %s, want the request span %s", call.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	want := "00-" + call.SpanContext().TraceID().String() + "-" + call.SpanContext().SpanID().String() + "-01"
	if len(got) != 2 || got[0] != want || got[1] != "" {
		t.Errorf("traceparents the server saw = %q, want [%q \"\"]", got, want)
	}
	attrs := map[string]string{}
	for _, a := range call.Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
		if strings.Contains(a.Value.Emit(), "secret-code") {
			t.Errorf("attribute %s holds the query string", a.Key)
		}
	}
	for k, v := range map[string]string{"http.request.method": "POST", "url.path": "/token", "http.response.status_code": "418", "peer.service": "provider"} {
		if attrs[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
	if Transport(http.DefaultTransport, nil, "x") != http.DefaultTransport {
		t.Error("Transport with no provider wraps its transport")
	}
}

// TestLogHandler pins that a line logged with a traced context carries its
// trace and span ids, and a line without one carries none.
func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewTextHandler(&buf, nil))).With("request_id", "r1")
	tp, _ := newRecorder()
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	log.InfoContext(ctx, "traced")
	log.Info("untraced")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	wantTraced := "request_id=r1 trace_id=" + span.SpanContext().TraceID().String() + " span_id=" + span.SpanContext().SpanID().String()
	if len(lines) != 2 || !strings.HasSuffix(lines[0], wantTraced) || strings.Contains(lines[1], "trace_id") {
		t.Errorf("log lines %q, want the first ending %q and the second without a trace id", lines, wantTraced)
	}
	if TraceID(ctx) != span.SpanContext().TraceID().String() || TraceID(context.Background()) != "" {
		t.Error("TraceID does not give the context's trace id")
	}
}
