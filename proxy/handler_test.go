package proxy

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

const pxToken secret.String = "tok-Secret-1"

// TestForwardedHeaders checks, header by header, what the upstream receives
// on each kind of route, including the Connection-header tricks that delete
// headers a Director added.
func TestForwardedHeaders(t *testing.T) {
	up := newPxUpstream(t, "up", nil)
	e := newPxEnv(t, Options{Routes: []Route{
		{Name: "api", Path: "/api/", Upstream: up.url().String(), Auth: AuthRequired},
		{Name: "opt", Path: "/opt/", Upstream: up.url().String(), Auth: AuthOptional},
		{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone},
	}})
	tk := e.sessions.addToken(t, pxToken)
	ticket := session.DefaultCookieName + "=" + tk.Encode()
	proxyHost := e.srv.Listener.Addr().String()

	tests := []struct {
		name string
		// extra header lines of the raw request (Host is added).
		headers    string
		path       string
		wantAuth   []string
		wantCookie []string
	}{
		{
			name:       "session route: token injected, client Authorization replaced, our cookie stripped",
			path:       "/api/x",
			headers:    "Authorization: Bearer client-token\r\nCookie: a=1; " + ticket + "; b=2\r\n",
			wantAuth:   []string{"Bearer " + pxToken.Reveal()},
			wantCookie: []string{"a=1; b=2"},
		},
		{
			name:       "Connection: Authorization cannot delete the injected header",
			path:       "/api/x",
			headers:    "Connection: Authorization\r\nAuthorization: Bearer client-token\r\nCookie: a=1; " + ticket + "\r\n",
			wantAuth:   []string{"Bearer " + pxToken.Reveal()},
			wantCookie: []string{"a=1"},
		},
		{
			name:       "Connection: Cookie drops the cookie header, ticket does not leak",
			path:       "/api/x",
			headers:    "Connection: Cookie\r\nCookie: " + ticket + "; a=1\r\n",
			wantAuth:   []string{"Bearer " + pxToken.Reveal()},
			wantCookie: nil,
		},
		{
			name:       "two Cookie lines: ours removed from each, others byte-exact",
			path:       "/api/x",
			headers:    "Cookie: a=1;b=x%20y\r\nCookie: " + ticket + "; c=\"q\"\r\n",
			wantAuth:   []string{"Bearer " + pxToken.Reveal()},
			wantCookie: []string{"a=1;b=x%20y", "c=\"q\""},
		},
		{
			name:       "optional route with session: token injected",
			path:       "/opt/x",
			headers:    "Authorization: Basic dXNlcjpwYXNz\r\nCookie: " + ticket + "\r\n",
			wantAuth:   []string{"Bearer " + pxToken.Reveal()},
			wantCookie: nil,
		},
		{
			name:       "optional route without session: client Authorization dropped, none injected",
			path:       "/opt/x",
			headers:    "Authorization: Basic dXNlcjpwYXNz\r\nCookie: a=1\r\n",
			wantAuth:   nil,
			wantCookie: []string{"a=1"},
		},
		{
			name:       "optional route with tampered cookie: proxied without a token",
			path:       "/opt/x",
			headers:    "Cookie: " + ticket[:len(ticket)-2] + "xx\r\n",
			wantAuth:   nil,
			wantCookie: nil,
		},
		{
			name:       "auth none: client Authorization untouched, our cookie still stripped",
			path:       "/pub",
			headers:    "Authorization: Basic dXNlcjpwYXNz\r\nCookie: a=1; " + ticket + "\r\n",
			wantAuth:   []string{"Basic dXNlcjpwYXNz"},
			wantCookie: []string{"a=1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(up.requests())
			res, body := e.raw(t, "GET "+tt.path+" HTTP/1.1\r\nHost: "+proxyHost+"\r\n"+tt.headers+"\r\n")
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d %s, want 200", res.StatusCode, body)
			}
			seen := up.requests()
			if len(seen) != before+1 {
				t.Fatalf("upstream saw %d requests, want %d", len(seen), before+1)
			}
			got := seen[len(seen)-1].Header
			if !slices.Equal(got["Authorization"], tt.wantAuth) {
				t.Errorf("upstream Authorization = %q, want %q", got["Authorization"], tt.wantAuth)
			}
			if !slices.Equal(got["Cookie"], tt.wantCookie) {
				t.Errorf("upstream Cookie = %q, want %q", got["Cookie"], tt.wantCookie)
			}
			for k, vs := range got {
				for _, v := range vs {
					if strings.Contains(v, tk.Encode()) {
						t.Errorf("upstream header %s carries the session ticket", k)
					}
				}
			}
			if got, want := got.Get("X-Forwarded-For"), "127.0.0.1"; got != want {
				t.Errorf("X-Forwarded-For = %q, want %q", got, want)
			}
			if got := got["X-Forwarded-Host"]; got != nil {
				t.Errorf("X-Forwarded-Host = %q, want none (no public URL to vouch for)", got)
			}
			if got, want := got.Get("X-Forwarded-Proto"), "http"; got != want {
				t.Errorf("X-Forwarded-Proto = %q, want %q", got, want)
			}
			if got, want := got.Get(requestIDHeader), res.Header.Get(requestIDHeader); got != want || len(want) != 26 {
				t.Errorf("upstream X-Request-Id = %q, response has %q (want equal, 26 chars)", got, want)
			}
		})
	}
}

// TestForwardedProtoFromPublicURL: behind a TLS-terminating ingress the
// request reaches tokenrelay as plain http, but the upstream must learn the
// scheme browsers use.
func TestForwardedProtoFromPublicURL(t *testing.T) {
	for _, tt := range []struct {
		publicURL string
		want      string
	}{
		{"https://app.example", "https"},
		{"http://localhost:8080", "http"},
		{"", "http"}, // no PublicURL: the scheme the request arrived with
	} {
		up := newPxUpstream(t, "up", nil)
		o := Options{Routes: []Route{{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone}}}
		if tt.publicURL != "" {
			o.PublicURL = mustURL(t, tt.publicURL)
		}
		e := newPxEnv(t, o)
		r := e.req(t, http.MethodGet, "/", nil)
		r.Header.Set("X-Forwarded-Proto", "gopher")
		if res, body := e.do(t, r); res.StatusCode != http.StatusOK {
			t.Fatalf("PublicURL %q: status = %d %s, want 200", tt.publicURL, res.StatusCode, body)
		}
		seen := up.requests()
		if len(seen) != 1 {
			t.Fatalf("PublicURL %q: upstream saw %d requests, want 1", tt.publicURL, len(seen))
		}
		if got := seen[0].Header.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != tt.want {
			t.Errorf("PublicURL %q: upstream X-Forwarded-Proto = %q, want [%q]", tt.publicURL, got, tt.want)
		}
	}
}

func TestClientForwardedHeadersReplaced(t *testing.T) {
	up := newPxUpstream(t, "up", nil)
	e := newPxEnv(t, Options{
		PublicURL: mustURL(t, "https://app.example"),
		Routes:    []Route{{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone, PassHost: true}},
	})
	r := e.req(t, http.MethodGet, "/", nil)
	r.Header.Set("X-Forwarded-For", "6.6.6.6")
	r.Header.Set("X-Forwarded-Host", "evil.example")
	r.Header.Set("Forwarded", "for=6.6.6.6")
	r.Host = "app.example"
	e.do(t, r)
	got := up.requests()[0]
	if got.Header.Get("X-Forwarded-For") != "127.0.0.1" || got.Header.Get("X-Forwarded-Host") != "app.example" || got.Header.Get("Forwarded") != "" {
		t.Errorf("forwarding headers = %q %q %q, want 127.0.0.1, app.example, none",
			got.Header.Get("X-Forwarded-For"), got.Header.Get("X-Forwarded-Host"), got.Header.Get("Forwarded"))
	}
	if got.Host != "app.example" {
		t.Errorf("PassHost: upstream Host = %q, want app.example", got.Host)
	}
}

func TestRequestID(t *testing.T) {
	up := newPxUpstream(t, "up", nil)
	e := newPxEnv(t, Options{Routes: []Route{{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone}}})
	long := strings.Repeat("a", 128)
	tests := []struct {
		in       string
		wantKept bool
	}{
		{"abc-123_X.y", true},
		{long, true},
		{long + "a", false},
		{"has space", false},
		{"semi;colon", false},
		{"", false},
	}
	for i, tt := range tests {
		r := e.req(t, http.MethodGet, "/", nil)
		if tt.in != "" {
			r.Header.Set(requestIDHeader, tt.in)
		}
		res, _ := e.do(t, r)
		got := res.Header.Get(requestIDHeader)
		if tt.wantKept && got != tt.in {
			t.Errorf("X-Request-Id %q: response id = %q, want it kept", tt.in, got)
		}
		if !tt.wantKept && (got == tt.in || len(got) != 26 || !validRequestID(got)) {
			t.Errorf("X-Request-Id %q: response id = %q, want a fresh 26-character id", tt.in, got)
		}
		if up := up.requests()[i].Header.Get(requestIDHeader); up != got {
			t.Errorf("upstream id = %q, want %q", up, got)
		}
	}
	// An upstream that echoes the id does not make it appear twice.
	echo := newPxUpstream(t, "echo", func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set(requestIDHeader, r.Header.Get(requestIDHeader))
		w.Header().Add(requestIDHeader, "upstream-own")
	})
	e2 := newPxEnv(t, Options{Routes: []Route{{Name: "pub", Path: "/", Upstream: echo.url().String(), Auth: AuthNone}}})
	r := e2.req(t, http.MethodGet, "/", nil)
	r.Header.Set(requestIDHeader, "abc")
	if res, _ := e2.do(t, r); !slices.Equal(res.Header.Values(requestIDHeader), []string{"abc"}) {
		t.Errorf("X-Request-Id values = %q, want [abc]", res.Header.Values(requestIDHeader))
	}

	// Errors answered by tokenrelay itself carry one too.
	res, _ := e.do(t, e.req(t, http.MethodGet, "/a/../b", nil))
	if res.Header.Get(requestIDHeader) == "" {
		t.Error("error answer without X-Request-Id")
	}
}

// TestUnauthenticated: no session on a required route is a redirect to
// login for top-level navigations and 401 JSON for everything else; a
// navigation on a route that answers with a status gets the HTML page,
// with a link to log in again.
func TestUnauthenticated(t *testing.T) {
	up := newPxUpstream(t, "up", nil)
	e := newPxEnv(t, Options{Routes: []Route{
		{Name: "auto", Path: "/app/", Upstream: up.url().String()},
		{Name: "redirect", Path: "/r/", Upstream: up.url().String(), OnUnauthenticated: UnauthRedirect},
		{Name: "status", Path: "/s/", Upstream: up.url().String(), OnUnauthenticated: UnauthStatus},
	}})
	nav := map[string]string{"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none"}
	fetch := map[string]string{"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin", "Accept": "text/html"}
	oldBrowser := map[string]string{"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
	api := map[string]string{"Accept": "application/json"}
	wantLocation := "/.auth/login?return_to=" + url.QueryEscape("/app/page?x=1&y=%2F")
	tests := []struct {
		name     string
		method   string
		path     string
		headers  map[string]string
		wantCode int
		wantLoc  string
		wantPage bool
	}{
		{"navigation", http.MethodGet, "/app/page?x=1&y=%2F", nav, http.StatusFound, wantLocation, false},
		{"no Sec-Fetch, GET accepting HTML", http.MethodGet, "/app/page?x=1&y=%2F", oldBrowser, http.StatusFound, wantLocation, false},
		{"no Sec-Fetch, POST accepting HTML", http.MethodPost, "/app/page?x=1&y=%2F", oldBrowser, http.StatusUnauthorized, "", false},
		{"fetch accepting HTML", http.MethodGet, "/app/page", fetch, http.StatusUnauthorized, "", false},
		{"API client", http.MethodGet, "/app/page", api, http.StatusUnauthorized, "", false},
		{"no headers", http.MethodGet, "/app/page", nil, http.StatusUnauthorized, "", false},
		{"redirect route, API client", http.MethodGet, "/r/x", api, http.StatusFound, "/.auth/login?return_to=%2Fr%2Fx", false},
		{"status route, navigation", http.MethodGet, "/s/x", nav, http.StatusUnauthorized, "", true},
		{"status route, API client", http.MethodGet, "/s/x", api, http.StatusUnauthorized, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.req(t, tt.method, tt.path, nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			r.Header.Set("X-CSRF", "1")
			res, body := e.do(t, r)
			if res.StatusCode != tt.wantCode {
				t.Fatalf("status = %d %s, want %d", res.StatusCode, body, tt.wantCode)
			}
			if got := res.Header.Get("Location"); got != tt.wantLoc {
				t.Errorf("Location = %q, want %q", got, tt.wantLoc)
			}
			switch {
			case tt.wantPage:
				if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" ||
					!strings.Contains(body, `<title>Session ended</title>`) ||
					!strings.Contains(body, `href="/.auth/login?return_to=%2Fs%2Fx"`) ||
					!strings.Contains(body, res.Header.Get(requestIDHeader)) {
					t.Errorf("page = %s %q, want the session-ended page with the login link and the request id", ct, body)
				}
			case tt.wantCode == http.StatusUnauthorized:
				if got := decodeError(t, body).Error; got != "login_required" {
					t.Errorf("error = %q, want login_required", got)
				}
			}
			if got := res.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			if got := res.Header.Values("Set-Cookie"); len(got) != 0 {
				t.Errorf("Set-Cookie = %q, want none", got)
			}
		})
	}
	if got := len(up.requests()); got != 0 {
		t.Errorf("upstream saw %d requests, want 0", got)
	}
}

// TestSessionErrors maps each error of Sessions.AccessToken to its answer.
func TestSessionErrors(t *testing.T) {
	up := newPxUpstream(t, "up", nil)
	e := newPxEnv(t, Options{Routes: []Route{
		{Name: "api", Path: "/api/", Upstream: up.url().String()},
		{Name: "opt", Path: "/opt/", Upstream: up.url().String(), Auth: AuthOptional},
	}})
	tk := e.sessions.addToken(t, pxToken)
	tests := []struct {
		name           string
		path           string
		err            error
		navigate       bool
		wantCode       int
		wantError      string
		wantRetryAfter string
		wantCleared    bool
		wantProxied    bool
	}{
		{"no session", "/api/x", session.ErrNoSession, false, 401, "login_required", "", false, false},
		{"expired", "/api/x", session.ErrSessionExpired, false, 401, "session_expired", "", true, false},
		{"expired, navigation", "/api/x", session.ErrSessionExpired, true, 302, "", "", true, false},
		{"refresh unavailable", "/api/x", &session.UnavailableError{RetryAfter: 2500 * 1e6}, false, 503, "refresh_unavailable", "3", false, false},
		{"store down", "/api/x", session.ErrStoreUnavailable, false, 503, "store_unavailable", "1", false, false},
		{"optional, no session", "/opt/x", session.ErrNoSession, false, 200, "", "", false, true},
		{"optional, expired", "/opt/x", session.ErrSessionExpired, false, 200, "", "", true, true},
		{"optional, store down", "/opt/x", session.ErrStoreUnavailable, false, 503, "store_unavailable", "1", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.sessions.mu.Lock()
			e.sessions.accessErrs = []error{tt.err}
			e.sessions.mu.Unlock()
			before := len(up.requests())
			r := withTicket(e.req(t, http.MethodGet, tt.path, nil), tk)
			if tt.navigate {
				r.Header.Set("Sec-Fetch-Mode", "navigate")
			}
			res, body := e.do(t, r)
			if res.StatusCode != tt.wantCode {
				t.Fatalf("status = %d %s, want %d", res.StatusCode, body, tt.wantCode)
			}
			if tt.wantError != "" {
				if got := decodeError(t, body).Error; got != tt.wantError {
					t.Errorf("error = %q, want %q", got, tt.wantError)
				}
			}
			if got := res.Header.Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
			}
			var wantCookies []string
			if tt.wantCleared {
				wantCookies = []string{pxClearedCookie}
			}
			if got := res.Header.Values("Set-Cookie"); !slices.Equal(got, wantCookies) {
				t.Errorf("Set-Cookie = %q, want %q", got, wantCookies)
			}
			proxied := len(up.requests()) == before+1
			if proxied != tt.wantProxied {
				t.Errorf("proxied = %v, want %v", proxied, tt.wantProxied)
			}
			if proxied {
				if got := up.requests()[before].Header.Get("Authorization"); got != "" {
					t.Errorf("upstream Authorization = %q, want none", got)
				}
			}
		})
	}
}

// TestCSRF: unsafe methods on session routes pass the origin check and the
// header check; capture routes need only the origin check.
func TestCSRF(t *testing.T) {
	up := newPxUpstream(t, "up", nil)
	e := newPxEnv(t, Options{
		PublicURL: mustURL(t, "https://app.example"),
		CSRF:      CSRFOptions{TrustedOrigins: []string{"https://partner.example"}},
		Routes: []Route{
			{Name: "api", Path: "/api/", Upstream: up.url().String(), CSRFHeader: new(true)},
			{Name: "noheader", Path: "/hooks/", Upstream: up.url().String(), CSRFHeader: new(false)},
			{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone},
		},
		CaptureRoutes: []CaptureRoute{{Path: "/auth/login"}},
	})
	tk := e.sessions.addToken(t, pxToken)
	tests := []struct {
		name     string
		method   string
		path     string
		headers  map[string]string
		wantCode int
	}{
		{"cross-site POST", "POST", "/api/x", map[string]string{"Sec-Fetch-Site": "cross-site", "X-CSRF": "1"}, 403},
		{"same-site POST", "POST", "/api/x", map[string]string{"Sec-Fetch-Site": "same-site", "X-CSRF": "1"}, 403},
		{"same-origin POST with header", "POST", "/api/x", map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1"}, 200},
		{"same-origin POST without header", "POST", "/api/x", map[string]string{"Sec-Fetch-Site": "same-origin"}, 403},
		{"same-origin DELETE without header", "DELETE", "/api/x", map[string]string{"Sec-Fetch-Site": "same-origin"}, 403},
		{"trusted origin PUT", "PUT", "/api/x", map[string]string{"Origin": "https://partner.example", "X-CSRF": "1"}, 200},
		{"foreign origin PATCH", "PATCH", "/api/x", map[string]string{"Origin": "https://evil.example", "X-CSRF": "1"}, 403},
		{"cross-site GET", "GET", "/api/x", map[string]string{"Sec-Fetch-Site": "cross-site"}, 200},
		{"route without header requirement", "POST", "/hooks/x", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200},
		{"route without header requirement, cross-site", "POST", "/hooks/x", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"auth none route, cross-site", "POST", "/other", map[string]string{"Sec-Fetch-Site": "cross-site"}, 200},
		{"capture route, same-origin without header", "POST", "/auth/login", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200},
		{"capture route, cross-site", "POST", "/auth/login", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"cross-site WebSocket handshake", "GET", "/api/ws", map[string]string{"Sec-Fetch-Site": "cross-site", "Upgrade": "websocket", "Connection": "Upgrade"}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(up.requests())
			r := withTicket(e.req(t, tt.method, tt.path, strings.NewReader("x")), tk)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			res, body := e.do(t, r)
			if res.StatusCode != tt.wantCode {
				t.Fatalf("status = %d %s, want %d", res.StatusCode, body, tt.wantCode)
			}
			if tt.wantCode == 403 {
				if got := decodeError(t, body).Error; got != "csrf" {
					t.Errorf("error = %q, want csrf", got)
				}
				if got := len(up.requests()); got != before {
					t.Errorf("refused request reached the upstream")
				}
			}
		})
	}
}

func TestMaxRequestBody(t *testing.T) {
	up := newPxUpstream(t, "up", nil)
	e := newPxEnv(t, Options{Upstream: UpstreamOptions{MaxRequestBody: 10}, Routes: []Route{{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone}}})

	res, body := e.do(t, e.req(t, http.MethodPost, "/x", strings.NewReader(strings.Repeat("a", 11))))
	if res.StatusCode != http.StatusRequestEntityTooLarge || decodeError(t, body).Error != "body_too_large" {
		t.Errorf("declared 11 bytes = %d %s, want 413 body_too_large", res.StatusCode, body)
	}
	// Chunked: the limit is found while streaming to the upstream.
	res, body = e.raw(t, "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n8\r\naaaaaaaa\r\n8\r\naaaaaaaa\r\n0\r\n\r\n")
	if res.StatusCode != http.StatusRequestEntityTooLarge || decodeError(t, body).Error != "body_too_large" {
		t.Errorf("chunked 16 bytes = %d %s, want 413 body_too_large", res.StatusCode, body)
	}
	res, body = e.do(t, e.req(t, http.MethodPost, "/x", strings.NewReader(strings.Repeat("a", 10))))
	if res.StatusCode != http.StatusOK {
		t.Errorf("10 bytes = %d %s, want 200", res.StatusCode, body)
	}
	if got, want := e.requests("pub", "413"), 2.0; got != want {
		t.Errorf("requests{pub,413} = %v, want %v", got, want)
	}
}
