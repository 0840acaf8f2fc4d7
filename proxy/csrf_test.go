package proxy

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestCSRFGuardCheck(t *testing.T) {
	public, err := url.Parse("https://app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	g, err := newCSRFGuard(public, []string{"https://admin.example.com/"}, "")
	if err != nil {
		t.Fatalf("newCSRFGuard: %v", err)
	}
	tests := []struct {
		name          string
		method        string
		host          string
		headers       map[string]string
		requireHeader bool
		wantErr       bool
	}{
		{"cross-site form post", "POST", "app.example.com", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.com"}, true, true},
		{"cross-site post with header", "POST", "app.example.com", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.com", "X-CSRF": "1"}, true, true},
		{"cross-site post without header requirement", "POST", "app.example.com", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.com"}, false, true},
		{"same-site sibling refused", "POST", "app.example.com", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://blog.example.com", "X-CSRF": "1"}, true, true},
		{"same-origin fetch with header", "POST", "app.example.com", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "https://app.example.com", "X-CSRF": "1"}, true, false},
		{"same-origin fetch without header", "POST", "app.example.com", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "https://app.example.com"}, true, true},
		{"same-origin blank header", "POST", "app.example.com", map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "  "}, true, true},
		{"same-origin without header, not required", "POST", "app.example.com", map[string]string{"Sec-Fetch-Site": "same-origin"}, false, false},
		{"trusted origin cross-site", "POST", "app.example.com", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://admin.example.com", "X-CSRF": "1"}, true, false},
		{"trusted origin same-site", "DELETE", "app.example.com", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://admin.example.com", "X-CSRF": "1"}, true, false},
		{"public origin behind rewriting proxy", "POST", "10.0.0.7:8080", map[string]string{"Origin": "https://app.example.com", "X-CSRF": "1"}, true, false},
		{"old browser origin matches host", "POST", "app.example.com", map[string]string{"Origin": "https://app.example.com", "X-CSRF": "1"}, true, false},
		{"old browser foreign origin", "PUT", "app.example.com", map[string]string{"Origin": "https://evil.com", "X-CSRF": "1"}, true, true},
		{"no browser headers with header", "PATCH", "app.example.com", map[string]string{"X-CSRF": "1"}, true, false},
		{"no browser headers without header", "PATCH", "app.example.com", nil, true, true},
		{"user-initiated navigation", "POST", "app.example.com", map[string]string{"Sec-Fetch-Site": "none", "X-CSRF": "1"}, true, false},
		{"GET cross-site never checked", "GET", "app.example.com", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.com"}, true, false},
		{"HEAD cross-site never checked", "HEAD", "app.example.com", map[string]string{"Sec-Fetch-Site": "cross-site"}, true, false},
		{"OPTIONS cross-site never checked", "OPTIONS", "app.example.com", map[string]string{"Sec-Fetch-Site": "cross-site"}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "https://"+tt.host+"/api/x", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			err := g.Check(r, tt.requireHeader)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("Check() = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errCSRF) {
				t.Errorf("Check() = %v, want it to wrap errCSRF", err)
			}
		})
	}
}

func TestCSRFGuardCustomHeader(t *testing.T) {
	g, err := newCSRFGuard(nil, nil, "x-requested-by")
	if err != nil {
		t.Fatalf("newCSRFGuard: %v", err)
	}
	r := httptest.NewRequest("POST", "/api", nil)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("X-CSRF", "1")
	if err := g.Check(r, true); !errors.Is(err, errCSRF) {
		t.Errorf("Check(X-CSRF only) = %v, want errCSRF", err)
	}
	r.Header.Set("X-Requested-By", "app")
	if err := g.Check(r, true); err != nil {
		t.Errorf("Check(X-Requested-By) = %v, want nil", err)
	}
}

func TestCSRFRejectionIs403(t *testing.T) {
	g, err := newCSRFGuard(nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/api", nil)
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	f := classify(r.Context(), g.Check(r, true))
	if f.Status != http.StatusForbidden || f.Code != "csrf" {
		t.Errorf("classify(Check(cross-site)) = %d %q, want 403 \"csrf\"", f.Status, f.Code)
	}
}

func TestNewCSRFGuardBadOrigin(t *testing.T) {
	for _, o := range []string{"app.example.com", "https://app.example.com/path", "https://"} {
		if _, err := newCSRFGuard(nil, []string{o}, ""); err == nil {
			t.Errorf("newCSRFGuard(trusted %q) = nil error, want error", o)
		}
	}
}
