package proxy

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// TransportOptions tunes the transport to upstreams. Zero values take the
// defaults documented on each field.
type TransportOptions struct {
	// MaxIdleConnsPerHost defaults to 256.
	MaxIdleConnsPerHost int
	// IdleConnTimeout defaults to 90s.
	IdleConnTimeout time.Duration
	// DialTimeout defaults to 5s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout defaults to 60s.
	ResponseHeaderTimeout time.Duration
	// TLSClientConfig is used for https upstreams (private CAs, client
	// certificates); nil means the system roots.
	TLSClientConfig *tls.Config
}

// NewTransport returns an http.Transport tuned for a reverse proxy that
// sends many small requests to a handful of upstreams.
func NewTransport(o TransportOptions) *http.Transport {
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = 256
	}
	if o.IdleConnTimeout <= 0 {
		o.IdleConnTimeout = 90 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = 60 * time.Second
	}
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
