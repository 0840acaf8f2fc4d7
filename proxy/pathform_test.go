package proxy

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// TestRoutedOnForwardedPathForm: a request is routed on the same path the
// upstream receives. A path whose escapes cross the matched route's prefix
// ("/api%2Fpublic/x" decodes into the public route's prefix while the
// upstream gets one segment "api%2Fpublic") is refused with 400 before any
// session or upstream is involved; escapes inside the rest of the path are
// forwarded as sent.
func TestRoutedOnForwardedPathForm(t *testing.T) {
	api := newPxUpstream(t, "api", nil)
	pub := newPxUpstream(t, "pub", nil)
	web := newPxUpstream(t, "web", nil)
	cafe := newPxUpstream(t, "cafe", nil)
	e := newPxEnv(t, Options{Routes: []Route{
		{Name: "cafe", Path: "/café/", Upstream: cafe.url().String(), Auth: AuthNone},
		{Name: "api", Path: "/api/", Upstream: api.url().String(), Auth: AuthRequired},
		{Name: "public", Path: "/api/public/", Upstream: pub.url().String(), Auth: AuthNone},
		{Name: "web", Path: "/", Upstream: web.url().String(), Auth: AuthNone},
	}})
	tk := e.sessions.addToken(t, pxToken)
	tests := []struct {
		path       string
		wantStatus int
		wantBody   string // upstream name, or "" for tokenrelay's 400
		wantRaw    string // the escaped path the upstream saw
	}{
		{"/api%2Fpublic/x", http.StatusBadRequest, "", ""},
		{"/api%2fpublic/x", http.StatusBadRequest, "", ""},
		{"/api/public%2Fx", http.StatusBadRequest, "", ""},
		{"/%61pi/public/x", http.StatusBadRequest, "", ""},
		{"/api/%70ublic/x", http.StatusBadRequest, "", ""},
		{"/api/public/a%2Fb", http.StatusOK, "ok pub", "/api/public/a%2Fb"},
		{"/api/x%2Fy", http.StatusOK, "ok api", "/api/x%2Fy"},
		{"/api/caf%C3%A9", http.StatusOK, "ok api", "/api/caf%C3%A9"},
		{"/a%2Fb", http.StatusOK, "ok web", "/a%2Fb"},
		{"/caf%c3%a9/x", http.StatusOK, "ok cafe", "/caf%C3%A9/x"},
		{"/caf%C3%A9%2Fx", http.StatusBadRequest, "", ""},
		{"/api", http.StatusOK, "ok web", "/api"},
	}
	for _, tt := range tests {
		res, body := e.do(t, withTicket(e.req(t, http.MethodGet, tt.path, nil), tk))
		if res.StatusCode != tt.wantStatus {
			t.Errorf("GET %s = %d %q, want %d", tt.path, res.StatusCode, body, tt.wantStatus)
			continue
		}
		if tt.wantBody == "" {
			if got := decodeError(t, body).Error; got != "bad_request" {
				t.Errorf("GET %s: error = %q, want bad_request", tt.path, got)
			}
			continue
		}
		if body != tt.wantBody {
			t.Errorf("GET %s = %q, want %q", tt.path, body, tt.wantBody)
			continue
		}
		ups := map[string]*pxUpstream{"ok api": api, "ok pub": pub, "ok web": web, "ok cafe": cafe}
		seen := ups[tt.wantBody].requests()
		got := seen[len(seen)-1]
		raw := (&url.URL{Path: got.Path, RawPath: got.RawPath}).EscapedPath()
		if !strings.EqualFold(raw, tt.wantRaw) {
			t.Errorf("GET %s: upstream path = %q, want %q", tt.path, raw, tt.wantRaw)
		}
	}
	if n := len(pub.requests()); n != 1 {
		t.Errorf("public upstream saw %d requests, want 1", n)
	}
}

// TestTomcatDotSegments: "..;" is a dot segment to servlet containers, so
// it is refused like "..".
func TestTomcatDotSegments(t *testing.T) {
	for p, want := range map[string]bool{
		"/public/..;/api/x":           true,
		"/public/.;x/api":             true,
		"/public/..;jsessionid=1/api": true,
		"/public/a;b/c":               false,
		"/public/...;/c":              false,
	} {
		if got := hasDotSegment(p); got != want {
			t.Errorf("hasDotSegment(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestCacheControlPrivateOnSessionAnswers: an answer to a request sent with
// the user's token is marked private when the upstream said nothing about
// caching, so no shared cache keeps one user's answer for another; the
// upstream's own Cache-Control is kept, and answers given without a
// session are left alone.
func TestCacheControlPrivateOnSessionAnswers(t *testing.T) {
	up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, _ []byte) {
		if cc := r.URL.Query().Get("cc"); cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		w.WriteHeader(http.StatusOK)
	})
	e := newPxEnv(t, Options{Routes: []Route{
		{Name: "api", Path: "/api/", Upstream: up.url().String(), Auth: AuthRequired},
		{Name: "opt", Path: "/opt/", Upstream: up.url().String(), Auth: AuthOptional},
		{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone},
	}})
	tk := e.sessions.addToken(t, pxToken)
	tests := []struct {
		path    string
		session bool
		want    []string
	}{
		{"/api/x", true, []string{"private"}},
		{"/api/x?cc=public,+max-age%3D60", true, []string{"public, max-age=60"}},
		{"/api/x?cc=no-store", true, []string{"no-store"}},
		{"/opt/x", true, []string{"private"}},
		{"/opt/x", false, nil},
		{"/pub", true, nil},
		{"/pub?cc=max-age%3D60", false, []string{"max-age=60"}},
	}
	for _, tt := range tests {
		r := e.req(t, http.MethodGet, tt.path, nil)
		if tt.session {
			r = withTicket(r, tk)
		}
		res, _ := e.do(t, r)
		if got := res.Header.Values("Cache-Control"); !slices.Equal(got, tt.want) {
			t.Errorf("GET %s (session %v): Cache-Control = %q, want %q", tt.path, tt.session, got, tt.want)
		}
	}
}
