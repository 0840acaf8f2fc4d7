package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/tokenrelay/tokenrelay/tracing"
)

// tracerShutdownTimeout bounds the export of the spans still buffered at
// exit.
const tracerShutdownTimeout = 5 * time.Second

// newTracerProvider builds the OpenTelemetry SDK's tracer provider with an
// OTLP exporter (batching), from the tracing key and the standard OTEL_*
// variables of environ (the exporter and the SDK read the rest of them
// from the process environment). It returns nil when tracing is off:
// tracing.enabled false, OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none. The exporter connects lazily: a collector
// that is down costs dropped spans, never a failed start.
func newTracerProvider(ctx context.Context, o tracing.Options, environ []string) (*sdktrace.TracerProvider, error) {
	env := func(k string) string { return lookupEnv(environ, k) }
	if !o.Enabled || strings.EqualFold(env("OTEL_SDK_DISABLED"), "true") || env("OTEL_TRACES_EXPORTER") == "none" {
		return nil, nil
	}
	exp, err := newExporter(ctx, o, env)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	name := "tokenrelay"
	if o.ServiceName != "" {
		name = o.ServiceName
	}
	// Later resources win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// over the default name, the tracing key over both.
	res, err := resource.Merge(resource.NewSchemaless(semconv.ServiceName(name), semconv.ServiceVersion(version)), resource.Environment())
	if err == nil && o.ServiceName != "" {
		res, err = resource.Merge(res, resource.NewSchemaless(semconv.ServiceName(o.ServiceName)))
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// No sampler option: the SDK reads OTEL_TRACES_SAMPLER (default
	// parentbased_always_on, which follows the client's sampled flag).
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// newExporter builds the OTLP exporter of the protocol the tracing key or
// OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL names.
func newExporter(ctx context.Context, o tracing.Options, env func(string) string) (sdktrace.SpanExporter, error) {
	protocol := o.Protocol
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if protocol == "" {
			protocol = env(k)
		}
	}
	switch protocol {
	case "", tracing.ProtocolHTTP:
		var opts []otlptracehttp.Option
		if o.Endpoint != "" {
			u, err := url.Parse(o.Endpoint)
			if err != nil {
				return nil, err
			}
			path := u.Path
			if path == "" || path == "/" {
				path = "/v1/traces"
			}
			opts = append(opts, otlptracehttp.WithEndpoint(u.Host), otlptracehttp.WithURLPath(path))
			if u.Scheme == "http" {
				opts = append(opts, otlptracehttp.WithInsecure())
			}
		}
		return otlptracehttp.New(ctx, opts...)
	case tracing.ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if o.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(o.Endpoint))
		}
		return otlptracegrpc.New(ctx, opts...)
	}
	return nil, fmt.Errorf("unknown OTLP protocol %q (want %s or %s)", protocol, tracing.ProtocolHTTP, tracing.ProtocolGRPC)
}

// lookupEnv returns the value of k in environ (os.Environ form).
func lookupEnv(environ []string, k string) string {
	for i := len(environ) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(environ[i], k+"="); ok {
			return v
		}
	}
	return ""
}
