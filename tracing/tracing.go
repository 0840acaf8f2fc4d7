// Package tracing holds what tokenrelay's packages share for OpenTelemetry
// tracing: the tracing key's options, the span helper every traced package
// uses (Tracer), the client transport that traces outgoing calls and
// propagates W3C traceparent (Transport), and the log handler that puts the
// trace id on every log line of a traced request (LogHandler). It uses the
// OpenTelemetry API only: cmd/tokenrelay builds the SDK's tracer provider
// and exporter, and passes a trace.TracerProvider to each package (nil
// when tracing is off, which costs nothing: no span, no allocation).
package tracing

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// instrumentation is the instrumentation scope name of tokenrelay's spans.
const instrumentation = "github.com/tokenrelay/tokenrelay"

// Propagator is the propagation format tokenrelay reads from clients and
// writes to upstreams and the provider: W3C Trace Context.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Tracer starts spans when tracing is on. Its zero value is off: Start
// returns ctx unchanged and a span that records nothing, without
// allocating. It is safe for concurrent use.
type Tracer struct {
	t trace.Tracer
}

// NewTracer returns the tracer of tp; nil tp means off.
func NewTracer(tp trace.TracerProvider) Tracer {
	if tp == nil {
		return Tracer{}
	}
	return Tracer{t: tp.Tracer(instrumentation)}
}

// On reports whether spans are recorded at all.
func (tr Tracer) On() bool { return tr.t != nil }

// off is the span an off Tracer hands out: it records nothing.
var off = trace.SpanFromContext(context.Background())

// Start starts a span named name as a child of ctx's span. Callers set
// attributes only when span.IsRecording(), so a request that is not traced
// builds none.
func (tr Tracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if tr.t == nil {
		return ctx, off
	}
	return tr.t.Start(ctx, name, opts...)
}
