package main

import (
	"context"
	"strings"
	"testing"

	"github.com/tokenrelay/tokenrelay/tracing"
)

// TestNewTracerProvider pins when tracing runs: only with tracing.enabled,
// and never with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none; the
// protocol comes from the key, else OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL,
// and an unknown one is an error.
func TestNewTracerProvider(t *testing.T) {
	on := tracing.Options{Enabled: true, Endpoint: "http://127.0.0.1:4318"}
	tests := []struct {
		name    string
		o       tracing.Options
		environ []string
		want    bool
		err     string
	}{
		{"off by default", tracing.Options{}, nil, false, ""},
		{"on", on, nil, true, ""},
		{"grpc", tracing.Options{Enabled: true, Protocol: tracing.ProtocolGRPC, Endpoint: "http://127.0.0.1:4317"}, nil, true, ""},
		{"grpc from the environment", on, []string{"OTEL_EXPORTER_OTLP_PROTOCOL=grpc"}, true, ""},
		{"SDK disabled", on, []string{"OTEL_SDK_DISABLED=true"}, false, ""},
		{"exporter none", on, []string{"OTEL_TRACES_EXPORTER=none"}, false, ""},
		{"unknown protocol", on, []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json"}, false, `unknown OTLP protocol "http/json"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, err := newTracerProvider(context.Background(), tt.o, tt.environ)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tp != nil; got != tt.want {
				t.Fatalf("tracing on = %v, want %v", got, tt.want)
			}
			if tp != nil {
				if err := tp.Shutdown(context.Background()); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			}
		})
	}
}
