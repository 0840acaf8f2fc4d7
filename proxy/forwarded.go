package proxy

import (
	"net"
	"net/http/httputil"
	"net/url"
	"strings"
)

// clientForwardingHeaders are request headers through which proxies in
// front of an application tell it the browser's address, scheme, host or
// original path, and which applications and frameworks trust when
// configured to sit behind a proxy. tokenrelay is that proxy for its
// upstreams, so none of them passes from the client: the ones tokenrelay
// vouches for (X-Forwarded-For, -Host, -Proto, -Prefix) are set afresh,
// the others are removed. Keys are in canonical form.
var clientForwardingHeaders = []string{
	"Forwarded",
	"X-Forwarded-For",
	"X-Forwarded-Host",
	"X-Forwarded-Proto",
	"X-Forwarded-Port",
	"X-Forwarded-Prefix",
	"X-Forwarded-Server",
	"X-Forwarded-Ssl",
	"X-Forwarded-Scheme",
	"X-Forwarded-Uri",
	"X-Forwarded-Method",
	"X-Real-Ip",
	"X-Client-Ip",
	"True-Client-Ip",
	"X-Cluster-Client-Ip",
	"X-Original-Forwarded-For",
	"X-Original-Url",
	"X-Original-Uri",
	"X-Rewrite-Url",
	"X-Original-Host",
	"X-Host",
	"Front-End-Https",
	"X-Url-Scheme",
}

// isClientForwardingHeader is clientForwardingHeaders as a set.
var isClientForwardingHeader = func() map[string]bool {
	m := make(map[string]bool, len(clientForwardingHeaders))
	for _, k := range clientForwardingHeaders {
		m[k] = true
	}
	return m
}()

// dropClientForwarding removes clientForwardingHeaders from h in one pass
// over h: cheaper than a delete per name, since a request carries fewer
// headers than there are names, and most of its headers cannot be one
// (every name starts with X, F or T).
func dropClientForwarding(h map[string][]string) {
	for k := range h {
		if k != "" && (k[0] == 'X' || k[0] == 'F' || k[0] == 'T') && isClientForwardingHeader[k] {
			delete(h, k)
		}
	}
}

// forwarding is what tokenrelay tells upstreams about the browser's view
// of a request. Its slices are shared by every request and never written
// to: header maps hold them as values, and http.Header only replaces
// values, never writes into them, so sharing saves an allocation per
// header per request.
type forwarding struct {
	// host is X-Forwarded-Host: public_url's host (with its port), nil
	// without a public URL.
	host []string
	// proto is X-Forwarded-Proto from public_url; nil means the scheme
	// the request arrived with.
	proto []string
}

var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
)

func newForwarding(public *url.URL) forwarding {
	if public == nil || public.Host == "" {
		return forwarding{}
	}
	return forwarding{host: []string{public.Host}, proto: []string{public.Scheme}}
}

// set writes the forwarding headers of pr.Out. X-Forwarded-For is the
// address of the peer that connected to tokenrelay (an ingress, or the
// browser): a chain the client sent cannot be told from a forged one, so
// it is not kept. prefix is the route prefix removed from the path ("" when
// none is).
func (f forwarding) set(pr *httputil.ProxyRequest, prefix []string) {
	out := pr.Out.Header
	dropClientForwarding(out)
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		out["X-Forwarded-For"] = []string{ip}
	}
	if f.host != nil {
		out["X-Forwarded-Host"] = f.host
	}
	switch {
	case f.proto != nil:
		// Behind a TLS-terminating ingress the request arrives as plain
		// http, which is not what the upstream must use to build links.
		out["X-Forwarded-Proto"] = f.proto
	case pr.In.TLS != nil:
		out["X-Forwarded-Proto"] = protoHTTPS
	default:
		out["X-Forwarded-Proto"] = protoHTTP
	}
	if prefix != nil {
		out["X-Forwarded-Prefix"] = prefix
	}
}

// forwardedPrefix is the X-Forwarded-Prefix value of a route that strips
// its prefix, nil for one that does not.
func forwardedPrefix(r Route) []string {
	p := strings.TrimSuffix(r.Path, "/")
	if !r.StripPrefix || p == "" {
		return nil
	}
	return []string{p}
}
