package proxy

import (
	"net/http"
	"slices"
	"testing"
)

// TestForwardingHeadersComeFromTokenrelay: the headers an upstream uses to
// learn the browser's origin and address are tokenrelay's, never the
// client's: X-Forwarded-Host and -Proto from public_url, X-Forwarded-For
// the address of the peer that connected, X-Forwarded-Prefix the stripped
// route prefix; every client-sent forwarding header that an upstream might
// trust is removed. The check is header by header, exact.
func TestForwardingHeadersComeFromTokenrelay(t *testing.T) {
	up := newPxUpstream(t, "up", nil)
	e := newPxEnv(t, Options{
		PublicURL: mustURL(t, "https://app.example:8443"),
		Routes: []Route{
			{Name: "api", Path: "/api/", Upstream: up.url().String(), Auth: AuthNone, StripPrefix: true},
			{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone, PassHost: true},
		},
	})
	spoofed := map[string]string{
		"Forwarded":                "for=6.6.6.6;host=evil.example;proto=http",
		"X-Forwarded-For":          "6.6.6.6",
		"X-Forwarded-Host":         "evil.example",
		"X-Forwarded-Proto":        "http",
		"X-Forwarded-Port":         "80",
		"X-Forwarded-Prefix":       "/evil",
		"X-Forwarded-Server":       "evil.example",
		"X-Forwarded-Ssl":          "off",
		"X-Forwarded-Scheme":       "http",
		"X-Forwarded-Uri":          "/admin",
		"X-Forwarded-Method":       "DELETE",
		"X-Real-Ip":                "6.6.6.6",
		"X-Client-Ip":              "6.6.6.6",
		"True-Client-Ip":           "6.6.6.6",
		"X-Cluster-Client-Ip":      "6.6.6.6",
		"X-Original-Forwarded-For": "6.6.6.6",
		"X-Original-Url":           "/admin",
		"X-Original-Uri":           "/admin",
		"X-Rewrite-Url":            "/admin",
		"X-Original-Host":          "evil.example",
		"X-Host":                   "evil.example",
		"Front-End-Https":          "off",
		"X-Url-Scheme":             "http",
	}
	tests := []struct {
		path string
		want map[string][]string
	}{
		{"/api/x", map[string][]string{
			"X-Forwarded-For":    {"127.0.0.1"},
			"X-Forwarded-Host":   {"app.example:8443"},
			"X-Forwarded-Proto":  {"https"},
			"X-Forwarded-Prefix": {"/api"},
		}},
		{"/x", map[string][]string{
			"X-Forwarded-For":   {"127.0.0.1"},
			"X-Forwarded-Host":  {"app.example:8443"},
			"X-Forwarded-Proto": {"https"},
		}},
	}
	for _, tt := range tests {
		r := e.req(t, http.MethodGet, tt.path, nil)
		r.Host = "evil.example"
		for k, v := range spoofed {
			r.Header.Set(k, v)
		}
		if res, body := e.do(t, r); res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d %s", tt.path, res.StatusCode, body)
		}
		seen := up.requests()
		got := seen[len(seen)-1].Header
		for k := range spoofed {
			if !slices.Equal(got[k], tt.want[k]) {
				t.Errorf("GET %s: upstream %s = %q, want %q", tt.path, k, got[k], tt.want[k])
			}
		}
		if got := got["X-Forwarded-Prefix"]; !slices.Equal(got, tt.want["X-Forwarded-Prefix"]) {
			t.Errorf("GET %s: upstream X-Forwarded-Prefix = %q, want %q", tt.path, got, tt.want["X-Forwarded-Prefix"])
		}
	}
	if got := up.requests()[1].Host; got != "evil.example" {
		t.Errorf("pass_host route: upstream Host = %q, want the client's (pass_host forwards it by configuration)", got)
	}
}

// TestForwardedHostWithoutPublicURL: without a public URL tokenrelay knows
// no host to vouch for, so the upstream gets no X-Forwarded-Host rather
// than the client's Host.
func TestForwardedHostWithoutPublicURL(t *testing.T) {
	up := newPxUpstream(t, "up", nil)
	e := newPxEnv(t, Options{Routes: []Route{{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone}}})
	r := e.req(t, http.MethodGet, "/", nil)
	r.Host = "evil.example"
	r.Header.Set("X-Forwarded-Host", "evil.example")
	e.do(t, r)
	if got := up.requests()[0].Header["X-Forwarded-Host"]; got != nil {
		t.Errorf("upstream X-Forwarded-Host = %q, want none", got)
	}
}

// dropClientForwarding looks only at names starting with X, F or T: every
// name of the list must, and each is canonical, as http.Header keys are.
func TestClientForwardingHeaderNames(t *testing.T) {
	for _, k := range clientForwardingHeaders {
		if k == "" || (k[0] != 'X' && k[0] != 'F' && k[0] != 'T') || http.CanonicalHeaderKey(k) != k {
			t.Errorf("%q: want a canonical name starting with X, F or T (see dropClientForwarding)", k)
		}
	}
}
