package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHTTPSRedirect(t *testing.T) {
	domains := []string{"app.example.com", "127.0.0.1", "::1"}
	tests := []struct {
		name       string
		publicURL  string
		httpsPort  int
		host, uri  string
		wantStatus int
		wantLoc    string
	}{
		{"listener on 443", "", 443, "app.example.com", "/a/b?c=d", 308, "https://app.example.com/a/b?c=d"},
		{"listener port kept", "", 8443, "app.example.com:8080", "/", 308, "https://app.example.com:8443/"},
		{"public_url without port", "https://app.example.com", 8443, "app.example.com", "/x", 308, "https://app.example.com/x"},
		{"public_url port", "https://app.example.com:9443", 8443, "APP.example.com", "/x", 308, "https://APP.example.com:9443/x"},
		{"ip host", "", 8443, "127.0.0.1:80", "/", 308, "https://127.0.0.1:8443/"},
		{"ipv6 host", "", 443, "[::1]", "/", 308, "https://[::1]/"},
		{"escaped path kept", "", 443, "app.example.com", "/a%2Fb", 308, "https://app.example.com/a%2Fb"},
		{"unknown host", "", 443, "evil.example", "/", 404, ""},
		{"no host", "", 443, "", "/", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := httpsRedirect(domains, tt.publicURL, tt.httpsPort)
			req := httptest.NewRequest(http.MethodGet, tt.uri, nil)
			req.Host = tt.host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus || rec.Header().Get("Location") != tt.wantLoc {
				t.Errorf("redirect = %d %q, want %d %q", rec.Code, rec.Header().Get("Location"), tt.wantStatus, tt.wantLoc)
			}
		})
	}
}
