package proxy

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/problem"
)

// TransportOptions tune the transport to upstreams (in key `upstream`).
type TransportOptions struct {
	// Idle keep-alive connections kept per upstream (Go's default is 2).
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host"`
	// How long an idle upstream connection is kept.
	IdleConnTimeout time.Duration `yaml:"idle_conn_timeout"`
	// Upstream dial timeout.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// How long to wait for an upstream's response headers (504 after).
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// TLSClientConfig is used for https upstreams (private CAs, client
	// certificates); nil means the system roots.
	TLSClientConfig *tls.Config `yaml:"-"`
}

// WithDefaults returns o with every zero value replaced by its default.
func (o TransportOptions) WithDefaults() TransportOptions {
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 256
	}
	if o.IdleConnTimeout == 0 {
		o.IdleConnTimeout = 90 * time.Second
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.ResponseHeaderTimeout == 0 {
		o.ResponseHeaderTimeout = 60 * time.Second
	}
	return o
}

// Validate reports every problem in o, after defaults, with paths relative
// to the section that holds it.
func (o TransportOptions) Validate() []problem.Problem {
	o = o.WithDefaults()
	var ps problem.List
	if o.MaxIdleConnsPerHost < 0 {
		ps.Add("max_idle_conns_per_host", "must not be negative")
	}
	for _, d := range []struct {
		key   string
		value time.Duration
	}{{"idle_conn_timeout", o.IdleConnTimeout}, {"dial_timeout", o.DialTimeout}, {"response_header_timeout", o.ResponseHeaderTimeout}} {
		if d.value <= 0 {
			ps.Add(d.key, "must be a positive duration")
		}
	}
	return ps
}

// NewTransport returns an http.Transport tuned for a reverse proxy that
// sends many small requests to a handful of upstreams. Zero options take
// their defaults; o is not validated (see Validate).
func NewTransport(o TransportOptions) *http.Transport {
	o = o.WithDefaults()
	dialer := &net.Dialer{
		// An upstream that does not accept within this time is down or
		// overloaded; failing fast turns into a 502 instead of a hung
		// browser request.
		Timeout: o.DialTimeout,
		// TCP keep-alive probes find half-open connections (a restarted
		// pod, a NAT that dropped state) before a request is lost on one.
		KeepAlive: 30 * time.Second,
	}
	return &http.Transport{
		// Never honour HTTP_PROXY for upstreams: they are the allow-listed
		// hosts of the configuration, usually on the pod's loopback.
		Proxy:       nil,
		DialContext: dialer.DialContext,
		// All upstreams together: enough to keep every busy host warm
		// without letting idle sockets grow without bound.
		MaxIdleConns: 1024,
		// Go's default of 2 makes a proxy under concurrent load close and
		// reopen connections constantly (TIME_WAIT storms, a handshake per
		// request). A sidecar talks to one or two hosts, so keep many.
		MaxIdleConnsPerHost: o.MaxIdleConnsPerHost,
		// Idle connections are closed before typical upstream or load
		// balancer idle timeouts would close them under us.
		IdleConnTimeout: o.IdleConnTimeout,
		// A TLS handshake that stalls this long will not finish usefully.
		TLSHandshakeTimeout: 10 * time.Second,
		// Bounds the wait for response headers once the request is sent,
		// so a stuck upstream becomes a 504; streamed bodies (SSE) are not
		// limited by it.
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		// Clients that send "Expect: 100-continue" get their body sent
		// after at most this wait, as most servers never answer 100.
		ExpectContinueTimeout: 1 * time.Second,
		// Use HTTP/2 with https upstreams that offer it, even though
		// DialContext and TLSClientConfig are customised.
		ForceAttemptHTTP2: true,
		TLSClientConfig:   o.TLSClientConfig,
		// Response headers larger than this are an upstream bug, not
		// something to buffer.
		MaxResponseHeaderBytes: 1 << 20,
	}
}

// bufferPool lends ReverseProxy its 32 KiB copy buffers, which it would
// otherwise allocate (and the GC clear) for every response. Safe for
// concurrent use.
type bufferPool struct{ pool sync.Pool }

const copyBufferSize = 32 << 10

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, copyBufferSize)
}

func (p *bufferPool) Put(b []byte) {
	if cap(b) != copyBufferSize {
		return
	}
	b = b[:copyBufferSize]
	p.pool.Put(&b)
}
