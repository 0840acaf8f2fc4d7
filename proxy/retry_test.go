package proxy

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

// rejectOld answers 401 to "Bearer old" (and to everything when always is
// set) and echoes the body otherwise.
func rejectOld(always bool) func(w http.ResponseWriter, r *http.Request, body []byte) {
	return func(w http.ResponseWriter, r *http.Request, body []byte) {
		if always || r.Header.Get("Authorization") == "Bearer old" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"rejected":"`+r.Header.Get("Authorization")+`"}`)
			return
		}
		_, _ = w.Write(append([]byte("echo:"), body...))
	}
}

func TestRetryOn401(t *testing.T) {
	const old, fresh secret.String = "old", "new"
	tests := []struct {
		name         string
		method       string
		body         string
		chunked      bool
		retryOn401   bool
		maxRetryBody int64
		always401    bool
		wantStatus   int
		wantBody     string
		wantUpstream []string // Authorization of each upstream request
		wantRejected []secret.String
		wantRetries  float64
	}{
		{
			name: "GET retried once with the new token", method: "GET", retryOn401: true,
			wantStatus: 200, wantBody: "echo:", wantUpstream: []string{"Bearer old", "Bearer new"},
			wantRejected: []secret.String{"", old}, wantRetries: 1,
		},
		{
			name: "POST body replayed byte-exact", method: "POST", body: "{\"a\":1}\x00\xff", retryOn401: true,
			wantStatus: 200, wantBody: "echo:{\"a\":1}\x00\xff", wantUpstream: []string{"Bearer old", "Bearer new"},
			wantRejected: []secret.String{"", old}, wantRetries: 1,
		},
		{
			name: "chunked body within the limit replayed", method: "POST", body: "chunky", chunked: true, retryOn401: true,
			wantStatus: 200, wantBody: "echo:chunky", wantUpstream: []string{"Bearer old", "Bearer new"},
			wantRejected: []secret.String{"", old}, wantRetries: 1,
		},
		{
			name: "body at the limit replayed", method: "PUT", body: strings.Repeat("x", 16), retryOn401: true, maxRetryBody: 16,
			wantStatus: 200, wantBody: "echo:" + strings.Repeat("x", 16), wantUpstream: []string{"Bearer old", "Bearer new"},
			wantRejected: []secret.String{"", old}, wantRetries: 1,
		},
		{
			name: "large body streams without retry", method: "POST", body: strings.Repeat("x", 17), retryOn401: true, maxRetryBody: 16,
			wantStatus: 401, wantBody: `{"rejected":"Bearer old"}`, wantUpstream: []string{"Bearer old"},
			wantRejected: []secret.String{""}, wantRetries: 0,
		},
		{
			name: "large chunked body streams without retry", method: "POST", body: strings.Repeat("y", 40), chunked: true, retryOn401: true, maxRetryBody: 16,
			wantStatus: 401, wantBody: `{"rejected":"Bearer old"}`, wantUpstream: []string{"Bearer old"},
			wantRejected: []secret.String{""}, wantRetries: 0,
		},
		{
			name: "second 401 goes to the client", method: "GET", retryOn401: true, always401: true,
			wantStatus: 401, wantBody: `{"rejected":"Bearer new"}`, wantUpstream: []string{"Bearer old", "Bearer new"},
			wantRejected: []secret.String{"", old}, wantRetries: 1,
		},
		{
			name: "retry off", method: "GET", retryOn401: false,
			wantStatus: 401, wantBody: `{"rejected":"Bearer old"}`, wantUpstream: []string{"Bearer old"},
			wantRejected: []secret.String{""}, wantRetries: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newPxUpstream(t, "up", rejectOld(tt.always401))
			e := newPxEnv(t, Options{
				Retry:  RetryOptions{RetryOn401: new(tt.retryOn401), MaxRetryBody: tt.maxRetryBody},
				Routes: []Route{{Name: "api", Path: "/api/", Upstream: up.url().String(), CSRFHeader: new(true)}},
			})
			tk := e.sessions.addToken(t, old, fresh)
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
				if tt.chunked {
					// A reader of unknown length makes the client send chunks.
					body = io.MultiReader(strings.NewReader(tt.body))
				}
			}
			r := withTicket(e.req(t, tt.method, "/api/x", body), tk)
			r.Header.Set("X-CSRF", "1")
			res, got := e.do(t, r)
			if res.StatusCode != tt.wantStatus || got != tt.wantBody {
				t.Errorf("answer = %d %q, want %d %q", res.StatusCode, got, tt.wantStatus, tt.wantBody)
			}
			seen := up.requests()
			var gotAuth []string
			for _, s := range seen {
				gotAuth = append(gotAuth, s.Header.Get("Authorization"))
				if string(s.Body) != tt.body {
					t.Errorf("upstream body = %q, want %q", s.Body, tt.body)
				}
			}
			if !slices.Equal(gotAuth, tt.wantUpstream) {
				t.Errorf("upstream Authorization = %q, want %q", gotAuth, tt.wantUpstream)
			}
			var gotRejected []secret.String
			for _, c := range e.sessions.calls() {
				if c.Ticket != tk {
					t.Errorf("AccessToken called with another ticket")
				}
				gotRejected = append(gotRejected, c.Rejected)
			}
			if !slices.Equal(gotRejected, tt.wantRejected) {
				t.Errorf("AccessToken rejected args = %q, want %q", revealAll(gotRejected), revealAll(tt.wantRejected))
			}
			if got := e.retries("api"); got != tt.wantRetries {
				t.Errorf("tokenrelay_upstream_retries_total{api} = %v, want %v", got, tt.wantRetries)
			}
			lines := e.logs.accessLines(t)
			if len(lines) != 1 {
				t.Fatalf("access log lines = %d, want 1", len(lines))
			}
			if got, want := lines[0]["retried"], tt.wantRetries == 1; got != want {
				t.Errorf("access log retried = %v, want %v", got, want)
			}
			if got, want := lines[0]["refreshed"], tt.wantRetries == 1; got != want {
				t.Errorf("access log refreshed = %v, want %v", got, want)
			}
		})
	}
}

// TestRetrySessionEnded: when the refresh after a 401 finds the session
// dead, the client learns it (and loses the cookie) instead of getting the
// upstream's 401.
func TestRetrySessionEnded(t *testing.T) {
	up := newPxUpstream(t, "up", rejectOld(false))
	e := newPxEnv(t, Options{Retry: RetryOptions{RetryOn401: new(true)}, Routes: []Route{{Name: "api", Path: "/api/", Upstream: up.url().String()}}})
	tk := e.sessions.addToken(t, "old")
	e.sessions.accessErrs = []error{nil, session.ErrSessionExpired}
	res, body := e.do(t, withTicket(e.req(t, http.MethodGet, "/api/x", nil), tk))
	if res.StatusCode != http.StatusUnauthorized || decodeError(t, body).Error != "session_expired" {
		t.Errorf("answer = %d %s, want 401 session_expired", res.StatusCode, body)
	}
	if got := res.Header.Values("Set-Cookie"); !slices.Equal(got, []string{pxClearedCookie}) {
		t.Errorf("Set-Cookie = %q, want the cleared cookie", got)
	}
	if got := len(up.requests()); got != 1 {
		t.Errorf("upstream requests = %d, want 1", got)
	}
	if got := e.retries("api"); got != 0 {
		t.Errorf("retries = %v, want 0", got)
	}
}

// TestRetryRefreshUnavailable: a transient refresh failure hands the
// upstream's own 401 on.
func TestRetryRefreshUnavailable(t *testing.T) {
	up := newPxUpstream(t, "up", rejectOld(false))
	e := newPxEnv(t, Options{Retry: RetryOptions{RetryOn401: new(true)}, Routes: []Route{{Name: "api", Path: "/api/", Upstream: up.url().String()}}})
	tk := e.sessions.addToken(t, "old")
	e.sessions.accessErrs = []error{nil, &session.UnavailableError{RetryAfter: 1e9}}
	res, body := e.do(t, withTicket(e.req(t, http.MethodGet, "/api/x", nil), tk))
	if res.StatusCode != http.StatusUnauthorized || body != `{"rejected":"Bearer old"}` {
		t.Errorf("answer = %d %s, want the upstream's 401", res.StatusCode, body)
	}
	if got := len(up.requests()); got != 1 {
		t.Errorf("upstream requests = %d, want 1", got)
	}
}

func revealAll(s []secret.String) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = v.Reveal()
	}
	return out
}
