package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/session"
	"github.com/tokenrelay/tokenrelay/tracing"
)

// benchSessions is a Sessions whose AccessToken answers at once, so the
// benchmarks measure the request path, not a store.
type benchSessions struct{ fakeSessions }

func (*benchSessions) AccessToken(ctx context.Context, req session.TokenRequest) (session.AccessToken, error) {
	return session.AccessToken{Value: "bench-token"}, nil
}

const benchBody = `{"id":1,"name":"bench"}`

// BenchmarkProxy compares, in one run and over real loopback connections:
// the upstream called directly, a bare httputil.ReverseProxy in front of
// it, and the Handler with a session (token injection, cookie stripping,
// request id, metrics, access log to a discarding JSON handler).
func BenchmarkProxy(b *testing.B) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, benchBody)
	}))
	defer upstream.Close()
	target, _ := url.Parse(upstream.URL)

	bare := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: NewTransport(TransportOptions{}),
	})
	defer bare.Close()

	h, tk := benchHandler(b, target, NewTransport(TransportOptions{}))
	relay := httptest.NewServer(h)
	defer relay.Close()

	client := &http.Client{Transport: NewTransport(TransportOptions{})}
	cookie := "theme=dark; " + session.DefaultCookieName + "=" + tk.Encode()
	for _, c := range []struct {
		name string
		url  string
	}{
		{"direct", upstream.URL + "/api/items"},
		{"bare_reverseproxy", bare.URL + "/api/items"},
		{"tokenrelay", relay.URL + "/api/items"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, c.url, nil)
					req.Header.Set("Cookie", cookie)
					res, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusOK {
						b.Errorf("status %d", res.StatusCode)
						return
					}
				}
			})
		})
	}
}

// BenchmarkOverhead isolates what the Handler adds to a bare ReverseProxy:
// both call ServeHTTP directly with a transport that answers from memory,
// so no sockets are involved.
func BenchmarkOverhead(b *testing.B) {
	target, _ := url.Parse("http://upstream.invalid")
	transport := memoryTransport{}
	bare := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: transport,
	}
	h, tk := benchHandler(b, target, transport)
	// Traced: every request sampled and exported (to a no-op exporter), a
	// server span and a client span each.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer tp.Shutdown(context.Background())
	traced, _ := benchHandlerWith(b, target, tracing.Transport(transport, tp, "upstream"), tp)
	cookie := "theme=dark; " + session.DefaultCookieName + "=" + tk.Encode()
	for _, c := range []struct {
		name string
		h    http.Handler
	}{
		{"bare_reverseproxy", bare},
		{"tokenrelay", h},
		{"tokenrelay_traced", traced},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "/api/items", nil)
				req.Header.Set("Cookie", cookie)
				w := httptest.NewRecorder()
				c.h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

func benchHandler(b *testing.B, target *url.URL, transport http.RoundTripper) (*Handler, session.Ticket) {
	b.Helper()
	return benchHandlerWith(b, target, transport, nil)
}

// benchHandlerWith is benchHandler traced by tp (nil: not traced).
func benchHandlerWith(b *testing.B, target *url.URL, transport http.RoundTripper, tp trace.TracerProvider) (*Handler, session.Ticket) {
	b.Helper()
	tk, err := session.NewTicket()
	if err != nil {
		b.Fatal(err)
	}
	h, err := New(Options{
		Sessions:   &benchSessions{},
		Provider:   &fakeProvider{},
		Cookie:     pxCookie,
		Routes:     []Route{{Name: "api", Path: "/api/", Upstream: target.String()}},
		Retry:      RetryOptions{RetryOn401: new(true)},
		Transport:  transport,
		Registerer: prometheus.NewRegistry(),
		Logger:     slog.New(slog.NewJSONHandler(io.Discard, nil)),
		// The session manager's spans are not in this handler: its
		// Sessions are a stub.
		TracerProvider: tp,
	})
	if err != nil {
		b.Fatal(err)
	}
	return h, tk
}

// memoryTransport answers every request with a small JSON body.
type memoryTransport struct{}

func (memoryTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(benchBody)),
		ContentLength: int64(len(benchBody)),
		Request:       r,
	}, nil
}
