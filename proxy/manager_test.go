package proxy

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

var _ Sessions = (*session.Manager)(nil)

// pxClock is a settable clock.
type pxClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *pxClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *pxClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// pxRefresher issues at-N/rt-N pairs and refuses any refresh token but the
// latest, like a provider with single-use refresh tokens.
type pxRefresher struct {
	mu    sync.Mutex
	clock *pxClock
	n     int
	valid secret.String
	seen  []secret.String
	dead  bool
}

func (r *pxRefresher) Refresh(ctx context.Context, rt secret.String) (*idp.Token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, rt)
	if r.dead || rt != r.valid {
		return nil, &idp.TokenError{Code: "invalid_grant", Status: 400, Dead: true}
	}
	r.n++
	r.valid = secret.String(fmt.Sprintf("rt-%d", r.n+1))
	return &idp.Token{
		AccessToken:  secret.String(fmt.Sprintf("at-%d", r.n+1)),
		RefreshToken: r.valid,
		Expiry:       r.clock.Now().Add(5 * time.Minute),
	}, nil
}

func (r *pxRefresher) calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// TestWithSessionManager runs the request path over the real session
// manager and memory store: token capture starts a session, requests carry
// its token, an expired token is refreshed before proxying, an upstream 401
// forces one refresh and one retry, and a dead refresh token ends the
// session and clears the cookie.
func TestWithSessionManager(t *testing.T) {
	clock := &pxClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	refresher := &pxRefresher{clock: clock, valid: "rt-1"}
	mgr, err := session.NewManager(session.ManagerOptions{
		Backend:      session.NewMemoryStore(clock.Now),
		Secret:       []byte(strings.Repeat("s", 32)),
		Refresher:    refresher,
		Now:          clock.Now,
		Registerer:   prometheus.NewRegistry(),
		RefreshAhead: time.Minute,
	})
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}

	var rejectMu sync.Mutex
	reject := map[string]bool{}
	up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, body []byte) {
		if r.URL.Path == "/auth/login" {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"accessToken":"at-1","refreshToken":"rt-1","user":{"id":42}}`))
			return
		}
		rejectMu.Lock()
		rejected := reject[r.Header.Get("Authorization")]
		rejectMu.Unlock()
		if rejected {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte("ok " + string(body)))
	})
	e := newPxEnv(t, Options{
		Sessions:      mgr,
		Now:           clock.Now,
		RetryOn401:    true,
		SessionMaxAge: time.Hour,
		Routes: []Route{
			{Name: "api", Path: "/api/", Upstream: up.url(), CSRFHeader: true},
			{Name: "auth_api", Path: "/auth/", Upstream: up.url(), Auth: AuthNone},
		},
		CaptureRoutes: []CaptureRoute{{Path: "/auth/login"}},
	})
	e.provider.capture = func(body []byte) (*idp.Token, *idp.Identity, []byte, bool, error) {
		tok, id, stripped, ok, err := xanoCapture(body)
		if ok {
			tok.Expiry = clock.Now().Add(5 * time.Minute)
		}
		return tok, id, stripped, ok, err
	}

	// 1. Capture: the login answer starts a session.
	res, body := e.do(t, e.req(t, http.MethodPost, "/auth/login", strings.NewReader(`{"email":"a@b"}`)))
	if res.StatusCode != 200 || body != `{"user":{"id":42}}` {
		t.Fatalf("login = %d %q", res.StatusCode, body)
	}
	cookies := res.Cookies()
	if len(cookies) != 1 || cookies[0].Name != session.DefaultCookieName {
		t.Fatalf("login cookies = %v, want the session cookie", cookies)
	}
	cookie := cookies[0]
	api := func(method, payload string) (*http.Response, string) {
		var r *http.Request
		if payload == "" {
			r = e.req(t, method, "/api/x", nil)
		} else {
			r = e.req(t, method, "/api/x", strings.NewReader(payload))
		}
		r.AddCookie(cookie)
		r.Header.Set("X-CSRF", "1")
		return e.do(t, r)
	}
	lastAuth := func() string {
		seen := up.requests()
		return seen[len(seen)-1].Header.Get("Authorization")
	}

	// 2. The captured token is used as is.
	if res, _ := api(http.MethodGet, ""); res.StatusCode != 200 || lastAuth() != "Bearer at-1" {
		t.Fatalf("GET = %d with %q, want 200 with Bearer at-1", res.StatusCode, lastAuth())
	}
	if got := refresher.calls(); got != 0 {
		t.Errorf("refresh calls = %d, want 0", got)
	}

	// 3. Past expiry: refreshed once before proxying.
	clock.Advance(10 * time.Minute)
	if res, _ := api(http.MethodGet, ""); res.StatusCode != 200 || lastAuth() != "Bearer at-2" {
		t.Fatalf("GET after expiry = %d with %q, want 200 with Bearer at-2", res.StatusCode, lastAuth())
	}
	if got := refresher.calls(); got != 1 {
		t.Errorf("refresh calls = %d, want 1", got)
	}

	// 4. The upstream refuses at-2: one forced refresh, one retry, body
	// replayed.
	rejectMu.Lock()
	reject["Bearer at-2"] = true
	rejectMu.Unlock()
	before := len(up.requests())
	res, body = api(http.MethodPost, "payload")
	if res.StatusCode != 200 || body != "ok payload" || lastAuth() != "Bearer at-3" {
		t.Fatalf("POST after revocation = %d %q with %q, want 200 \"ok payload\" with Bearer at-3", res.StatusCode, body, lastAuth())
	}
	if got := len(up.requests()) - before; got != 2 {
		t.Errorf("upstream requests for one POST = %d, want 2", got)
	}
	if got := refresher.calls(); got != 2 {
		t.Errorf("refresh calls = %d, want 2", got)
	}
	if got := e.retries("api"); got != 1 {
		t.Errorf("retries = %v, want 1", got)
	}
	access := e.logs.accessLines(t)
	if last := access[len(access)-1]; last["retried"] != true || last["refreshed"] != true {
		t.Errorf("access log = %v, want retried and refreshed", last)
	}

	// 5. The provider kills the refresh token: the session ends, the
	// cookie is cleared, and the next request needs a login.
	refresher.mu.Lock()
	refresher.dead = true
	refresher.mu.Unlock()
	clock.Advance(10 * time.Minute)
	res, body = api(http.MethodGet, "")
	if res.StatusCode != 401 || decodeError(t, body).Error != "session_expired" {
		t.Fatalf("GET with a dead refresh token = %d %s, want 401 session_expired", res.StatusCode, body)
	}
	if got := res.Header.Values("Set-Cookie"); !slices.Equal(got, []string{pxClearedCookie}) {
		t.Errorf("Set-Cookie = %q, want the cleared cookie", got)
	}
	res, body = api(http.MethodGet, "")
	if res.StatusCode != 401 || decodeError(t, body).Error != "login_required" {
		t.Errorf("GET after the session ended = %d %s, want 401 login_required", res.StatusCode, body)
	}

	// No refresh token was ever presented twice.
	refresher.mu.Lock()
	seen := slices.Clone(refresher.seen)
	refresher.mu.Unlock()
	if want := []secret.String{"rt-1", "rt-2", "rt-3"}; !slices.Equal(seen, want) {
		t.Errorf("refresh tokens presented = %q, want %q", revealAll(seen), revealAll(want))
	}
	for _, s := range []string{"at-1", "at-2", "at-3", "rt-1", "rt-2", "rt-3", cookie.Value} {
		if strings.Contains(e.logs.String(), s) {
			t.Errorf("logs contain %q", s)
		}
	}
}
