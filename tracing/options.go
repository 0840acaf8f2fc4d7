package tracing

import (
	"net/url"

	"github.com/tokenrelay/tokenrelay/internal/problem"
)

// Protocols of the OTLP exporter.
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

// Options is the tracing key. The standard OTEL_* environment variables
// configure what these keys leave out (OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER and its argument,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*); a key that is set wins.
type Options struct {
	// Export traces over OTLP. Off by default: no exporter runs and
	// requests are not traced at all.
	//
	// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn tracing off
	// whatever this says.
	Enabled bool `yaml:"enabled"`
	// OTLP transport: `http/protobuf` or `grpc`.
	//
	// +default=OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL, else `http/protobuf`
	Protocol string `yaml:"protocol"`
	// Collector URL, such as `http://otel-collector:4318` (http/protobuf)
	// or `http://otel-collector:4317` (grpc); `http://` sends in plain
	// text.
	//
	// +default=OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, else the exporter's localhost default
	Endpoint string `yaml:"endpoint"`
	// The service.name resource attribute.
	//
	// +default=OTEL_SERVICE_NAME, else `tokenrelay`
	ServiceName string `yaml:"service_name"`
}

// Validate reports an unknown protocol or an endpoint that is not an http
// or https URL.
func (o Options) Validate() []problem.Problem {
	var ps problem.List
	switch o.Protocol {
	case "", ProtocolHTTP, ProtocolGRPC:
	default:
		ps.Add("protocol", "must be %s or %s", ProtocolHTTP, ProtocolGRPC)
	}
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			ps.Add("endpoint", "must be an http or https URL")
		}
	}
	return ps
}
