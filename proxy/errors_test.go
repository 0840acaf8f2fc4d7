package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/session"
)

type pxTimeoutError struct{}

func (pxTimeoutError) Error() string   { return "i/o timeout" }
func (pxTimeoutError) Timeout() bool   { return true }
func (pxTimeoutError) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	tests := []struct {
		name        string
		ctx         context.Context
		err         error
		wantStatus  int
		wantCode    string
		wantRetry   time.Duration
		wantCleared bool
		wantQuiet   bool
	}{
		{"no session", live, fmt.Errorf("x: %w", session.ErrNoSession), 401, "login_required", 0, false, false},
		{"expired", live, session.ErrSessionExpired, 401, "session_expired", 0, true, false},
		{"refresh unavailable", live, &session.UnavailableError{RetryAfter: 30 * time.Second}, 503, "refresh_unavailable", 30 * time.Second, false, false},
		{"refresh unavailable, no hint", live, &session.UnavailableError{}, 503, "refresh_unavailable", time.Second, false, false},
		{"provider rejects the client", live, &session.UnavailableError{RetryAfter: 5 * time.Second, Err: fmt.Errorf("%w: invalid_client", session.ErrClientRejected)}, 503, "provider_rejected_client", 5 * time.Second, false, false},
		{"store down", live, fmt.Errorf("%w: dial", session.ErrStoreUnavailable), 503, "store_unavailable", time.Second, false, false},
		{"csrf", live, fmt.Errorf("%w: cross-site", errCSRF), 403, "csrf", 0, false, false},
		{"body too large", live, errBodyTooLarge, 413, "body_too_large", 0, false, false},
		{"MaxBytesError", live, &http.MaxBytesError{Limit: 10}, 413, "body_too_large", 0, false, false},
		{"unreadable body", live, fmt.Errorf("%w: unexpected EOF", errBadRequestBody), 400, "bad_request", 0, false, false},
		{"unreadable body, client gone", canceled, fmt.Errorf("%w: unexpected EOF", errBadRequestBody), 499, "client_closed_request", 0, false, true},
		{"capture failed", live, fmt.Errorf("%w: bad json", errCaptureFailed), 502, "token_capture_failed", 0, false, false},
		{"assertion not signed", live, fmt.Errorf("%w: %w", errAssertion, errors.New("sign")), 500, "internal_error", 0, false, false},
		{"client gone", canceled, context.Canceled, 499, "client_closed_request", 0, false, true},
		{"canceled, client still there", live, context.Canceled, 502, "bad_gateway", 0, false, false},
		{"deadline", live, context.DeadlineExceeded, 504, "upstream_timeout", 0, false, false},
		{"net timeout", live, &net.OpError{Op: "read", Err: pxTimeoutError{}}, 504, "upstream_timeout", 0, false, false},
		{"os deadline", live, os.ErrDeadlineExceeded, 504, "upstream_timeout", 0, false, false},
		{"refused", live, &net.OpError{Op: "dial", Err: errors.New("connection refused")}, 502, "bad_gateway", 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.ctx, tt.err)
			if got.Status != tt.wantStatus || got.Code != tt.wantCode || got.RetryAfter != tt.wantRetry ||
				got.ClearCookie != tt.wantCleared || got.Quiet != tt.wantQuiet {
				t.Errorf("classify(%v) = %+v, want status %d code %s retry %v cleared %v quiet %v",
					tt.err, got, tt.wantStatus, tt.wantCode, tt.wantRetry, tt.wantCleared, tt.wantQuiet)
			}
			if got.Message == "" {
				t.Errorf("classify(%v) has no message", tt.err)
			}
		})
	}
}

// TestClientGone: a client that goes away while the upstream works is
// recorded as 499, with no error-level log line.
func TestClientGone(t *testing.T) {
	arrived := make(chan struct{})
	up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, body []byte) {
		close(arrived)
		<-r.Context().Done()
	})
	e := newPxEnv(t, Options{Routes: []Route{{Name: "api", Path: "/api/", Upstream: up.url().String()}}})
	tk := e.sessions.addToken(t, pxToken)

	ctx, cancel := context.WithCancel(context.Background())
	r := withTicket(httptest.NewRequestWithContext(ctx, http.MethodGet, "/api/slow", nil), tk)
	done := make(chan struct{})
	w := httptest.NewRecorder()
	go func() {
		defer close(done)
		e.h.ServeHTTP(w, r)
	}()
	<-arrived
	cancel()
	<-done

	if got := e.requests("api", "499"); got != 1 {
		t.Errorf("requests{api,499} = %v, want 1", got)
	}
	lines := e.logs.lines(t)
	for _, l := range lines {
		if l["level"] == "ERROR" {
			t.Errorf("error-level log line: %v", l)
		}
	}
	access := e.logs.accessLines(t)
	if len(access) != 1 || access[0]["status"] != float64(499) {
		t.Errorf("access log = %v, want one line with status 499", access)
	}
	if w.Code == StatusClientClosedRequest {
		t.Error("499 was written to the client")
	}
}

func TestUpstreamFailures(t *testing.T) {
	// A port that refuses connections: listen, note the address, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := mustURL(t, "http://"+ln.Addr().String())
	ln.Close()

	release := make(chan struct{})
	slow := newPxUpstream(t, "slow", func(w http.ResponseWriter, r *http.Request, body []byte) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })

	e := newPxEnv(t, Options{
		Transport: NewTransport(TransportOptions{ResponseHeaderTimeout: 50 * time.Millisecond, DialTimeout: 5 * time.Second}),
		Routes: []Route{
			{Name: "down", Path: "/down/", Upstream: down.String(), Auth: AuthNone},
			{Name: "slow", Path: "/slow/", Upstream: slow.url().String(), Auth: AuthNone},
		},
	})
	tests := []struct {
		path       string
		wantStatus int
		wantCode   string
	}{
		{"/down/x?secret=query-value", 502, "bad_gateway"},
		{"/slow/x?secret=query-value", 504, "upstream_timeout"},
	}
	for _, tt := range tests {
		res, body := e.do(t, e.req(t, http.MethodGet, tt.path, nil))
		if res.StatusCode != tt.wantStatus || decodeError(t, body).Error != tt.wantCode {
			t.Errorf("GET %s = %d %s, want %d %s", tt.path, res.StatusCode, body, tt.wantStatus, tt.wantCode)
		}
		if got := res.Header.Get("Content-Type"); got != "application/json; charset=utf-8" {
			t.Errorf("Content-Type = %q", got)
		}
	}
	// Each failure is logged once at error level, with the request id and
	// without the query string.
	var errorLines []map[string]any
	for _, l := range e.logs.lines(t) {
		if l["level"] == "ERROR" {
			errorLines = append(errorLines, l)
		}
	}
	if len(errorLines) != 2 {
		t.Fatalf("error lines = %d, want 2:\n%s", len(errorLines), e.logs.String())
	}
	for _, l := range errorLines {
		if id, _ := l["request_id"].(string); len(id) != 26 {
			t.Errorf("error line request_id = %v", l["request_id"])
		}
	}
	if strings.Contains(e.logs.String(), "query-value") {
		t.Errorf("logs carry a query string:\n%s", e.logs.String())
	}
	if got := e.requests("down", "502"); got != 1 {
		t.Errorf("requests{down,502} = %v, want 1", got)
	}
	if got := e.requests("slow", "504"); got != 1 {
		t.Errorf("requests{slow,504} = %v, want 1", got)
	}
}

// TestNoSecretsInLogs drives every path that logs (success, refresh retry,
// capture, failures) and searches the log output for secrets.
func TestNoSecretsInLogs(t *testing.T) {
	up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, body []byte) {
		switch {
		case r.URL.Path == "/auth/login":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"accessToken":"at-CAPTURED","refreshToken":"rt-CAPTURED","user":{"id":1}}`))
		case r.Header.Get("Authorization") == "Bearer tok-Old-Secret":
			w.WriteHeader(http.StatusUnauthorized)
		default:
			_, _ = w.Write([]byte("ok"))
		}
	})
	e := newPxEnv(t, Options{
		Retry: RetryOptions{RetryOn401: new(true)},
		Routes: []Route{
			{Name: "api", Path: "/api/", Upstream: up.url().String()},
			{Name: "auth_api", Path: "/auth/", Upstream: up.url().String(), Auth: AuthNone},
		},
		CaptureRoutes: []CaptureRoute{{Path: "/auth/login"}},
	})
	e.provider.capture = xanoCapture
	tk := e.sessions.addToken(t, "tok-Old-Secret", "tok-New-Secret")

	r := withTicket(e.req(t, http.MethodGet, "/api/x?code=query-Secret", nil), tk)
	r.Header.Set("Authorization", "Bearer client-Secret")
	if res, _ := e.do(t, r); res.StatusCode != 200 {
		t.Fatalf("GET /api/x = %d, want 200", res.StatusCode)
	}
	if res, _ := e.do(t, withTicket(e.req(t, http.MethodPost, "/auth/login", strings.NewReader(`{"password":"pw-Secret"}`)), tk)); res.StatusCode != 200 {
		t.Fatalf("POST /auth/login = %d, want 200", res.StatusCode)
	}
	e.sessions.accessErrs = []error{&session.UnavailableError{RetryAfter: time.Second}}
	if res, _ := e.do(t, withTicket(e.req(t, http.MethodGet, "/api/y", nil), tk)); res.StatusCode != 503 {
		t.Fatalf("GET /api/y = %d, want 503", res.StatusCode)
	}
	logs := e.logs.String()
	for _, s := range []string{"Secret", "CAPTURED", tk.Encode(), "query-"} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain %q:\n%s", s, logs)
		}
	}
	if got := len(e.logs.accessLines(t)); got != 3 {
		t.Errorf("access lines = %d, want 3", got)
	}
}

func TestAccessLogFields(t *testing.T) {
	up := newPxUpstream(t, "up", nil)
	e := newPxEnv(t, Options{Routes: []Route{{Name: "api", Path: "/api/", Upstream: up.url().String()}}})
	tk := e.sessions.addToken(t, pxToken)
	r := withTicket(e.req(t, http.MethodGet, "/api/items?page=2", nil), tk)
	r.Header.Set(requestIDHeader, "req-1")
	e.do(t, r)
	lines := e.logs.accessLines(t)
	if len(lines) != 1 {
		t.Fatalf("access lines = %d, want 1", len(lines))
	}
	l := lines[0]
	want := map[string]any{
		"level": "INFO", "msg": "request", "method": "GET", "path": "/api/items", "route": "api",
		"status": float64(200), "upstream": up.url().Host, "refreshed": false, "retried": false,
		"bytes": float64(len("ok up")), "request_id": "req-1",
	}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("access log %s = %v, want %v", k, l[k], v)
		}
	}
	if _, ok := l["duration"].(float64); !ok {
		t.Errorf("access log duration = %v, want a number", l["duration"])
	}
	if len(l) != len(want)+2 { // + time, duration
		t.Errorf("access log has %d fields, want %d: %v", len(l), len(want)+2, l)
	}
}

func TestMetrics(t *testing.T) {
	up := newPxUpstream(t, "up", nil)
	e := newPxEnv(t, Options{Routes: []Route{
		{Name: "api", Path: "/api/", Upstream: up.url().String()},
		{Name: "root", Path: "/", Upstream: up.url().String(), Auth: AuthNone},
	}})
	tk := e.sessions.addToken(t, pxToken)
	for range 3 {
		e.do(t, withTicket(e.req(t, http.MethodGet, "/api/x", nil), tk))
	}
	e.do(t, e.req(t, http.MethodGet, "/api/x", nil))      // 401
	e.do(t, e.req(t, http.MethodGet, "/", nil))           // 200 root
	e.do(t, e.req(t, http.MethodGet, "/.auth/nope", nil)) // auth endpoint
	e.do(t, e.req(t, http.MethodGet, "/a/./b", nil))      // 400 unmatched

	tests := []struct {
		route, code string
		want        float64
	}{
		{"api", "200", 3}, {"api", "401", 1}, {"root", "200", 1}, {"unmatched", "400", 1},
	}
	for _, tt := range tests {
		if got := e.requests(tt.route, tt.code); got != tt.want {
			t.Errorf("tokenrelay_requests_total{route=%q,code=%q} = %v, want %v", tt.route, tt.code, got, tt.want)
		}
	}
	authCount := 0.0
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetName() != "tokenrelay_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "route" && lp.GetValue() == "auth" {
					authCount += m.GetCounter().GetValue()
				}
			}
		}
	}
	if authCount != 1 {
		t.Errorf("requests{route=auth} = %v, want 1", authCount)
	}
	for _, n := range []string{"tokenrelay_requests_total", "tokenrelay_request_duration_seconds", "tokenrelay_upstream_retries_total"} {
		if !names[n] {
			t.Errorf("metric %s not registered", n)
		}
	}
	hist, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range hist {
		if mf.GetName() != "tokenrelay_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == "api" && m.GetHistogram().GetSampleCount() != 4 {
				t.Errorf("duration{api} count = %d, want 4", m.GetHistogram().GetSampleCount())
			}
		}
	}
	if got := e.retries("api"); got != 0 {
		t.Errorf("retries{api} = %v, want 0", got)
	}

	// A second Handler on the same registry is refused.
	_, err = New(Options{Sessions: e.sessions, Provider: e.provider, Registerer: e.reg, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		t.Error("New on a registry that already holds the metrics: no error")
	}
}
