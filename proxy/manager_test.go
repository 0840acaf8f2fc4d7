package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/idptest"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

var _ Sessions = (*session.Manager)(nil)

// TestWithSessionManager runs the request path over the real session
// manager and memory store: token capture starts a session, requests carry
// its token, an expired token is refreshed before proxying, an upstream 401
// forces one refresh and one retry, and a dead refresh token ends the
// session and clears the cookie.
func TestWithSessionManager(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		refresher := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		refresher.Grant() // at-1 and rt-1: what the login answer below holds
		mgr, err := session.NewManager(session.ManagerOptions{
			Backend:        session.NewMemoryStore(time.Now),
			Secret:         []byte(strings.Repeat("s", 32)),
			Refresher:      refresher,
			Now:            time.Now,
			Registerer:     prometheus.NewRegistry(),
			RefreshOptions: session.RefreshOptions{Ahead: time.Minute},
		})
		if err != nil {
			t.Fatalf("NewManager: %v", err)
		}

		var rejectMu sync.Mutex
		reject := map[string]bool{}
		up := newPxUpstreamInProcess("up", func(w http.ResponseWriter, r *http.Request, body []byte) {
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
		e := newPxEnvInProcess(t, Options{
			Sessions:  mgr,
			Transport: up.transport(),
			Now:       time.Now,
			Retry:     RetryOptions{RetryOn401: new(true)},
			Session:   session.LifetimeOptions{MaxLifetime: time.Hour},
			Routes: []Route{
				{Name: "api", Path: "/api/", Upstream: up.url().String(), CSRFHeader: new(true)},
				{Name: "auth_api", Path: "/auth/", Upstream: up.url().String(), Auth: AuthNone},
			},
			CaptureRoutes: []CaptureRoute{{Path: "/auth/login"}},
		})
		e.provider.capture = func(body []byte) (*idp.Captured, error) {
			c, err := xanoCapture(body)
			if c != nil {
				c.Token.Expiry = time.Now().Add(5 * time.Minute)
			}
			return c, err
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
		if got := refresherCalls(refresher); got != 0 {
			t.Errorf("refresh calls = %d, want 0", got)
		}

		// 3. Past expiry: refreshed once before proxying.
		time.Sleep(10 * time.Minute)
		if res, _ := api(http.MethodGet, ""); res.StatusCode != 200 || lastAuth() != "Bearer at-2" {
			t.Fatalf("GET after expiry = %d with %q, want 200 with Bearer at-2", res.StatusCode, lastAuth())
		}
		if got := refresherCalls(refresher); got != 1 {
			t.Errorf("refresh calls = %d, want 1", got)
		}

		// 4. The upstream refuses at-2 (past the floor on forced refreshes,
		// MinRefreshInterval after the last refresh): one forced refresh, one
		// retry, body replayed.
		time.Sleep(session.RefreshOptions{}.WithDefaults().MinInterval)
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
		if got := refresherCalls(refresher); got != 2 {
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
		refresher.RevokeAll()
		time.Sleep(10 * time.Minute)
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
		seen := refresher.Presented()
		if want := []secret.String{"rt-1", "rt-2", "rt-3"}; !slices.Equal(seen, want) {
			t.Errorf("refresh tokens presented = %q, want %q", revealAll(seen), revealAll(want))
		}
		for _, s := range []string{"at-1", "at-2", "at-3", "rt-1", "rt-2", "rt-3", cookie.Value} {
			if strings.Contains(e.logs.String(), s) {
				t.Errorf("logs contain %q", s)
			}
		}
	})
}

// TestLoginEndsEverySessionTheBrowserSent: a browser may send several
// session cookies (a sibling host can toss one of the same name), and which
// one is its own is unknown. A login, by callback or by token capture, ends
// the session of every ticket it sent and starts one under a fresh ticket,
// so no ticket planted before the login opens anything after it.
func TestLoginEndsEverySessionTheBrowserSent(t *testing.T) {
	ctx := context.Background()
	now := authTestNow
	// oldSessions starts two sessions in mgr and returns their tickets and
	// the Cookie header that sends both.
	oldSessions := func(t *testing.T, mgr *session.Manager) ([]session.Ticket, string) {
		var old []session.Ticket
		for i := range 2 {
			tk, err := mgr.Create(ctx, session.Record{AccessToken: secret.String(fmt.Sprintf("at-old-%d", i)), AccessExpiry: now.Add(time.Hour)}, session.ViaLogin)
			if err != nil {
				t.Fatal(err)
			}
			old = append(old, tk)
		}
		return old, session.DefaultCookieName + "=" + old[0].Encode() + "; " + session.DefaultCookieName + "=" + old[1].Encode()
	}
	wantEnded := func(t *testing.T, mgr *session.Manager, old []session.Ticket) {
		t.Helper()
		for i, tk := range old {
			if _, err := mgr.Load(ctx, tk); !errors.Is(err, session.ErrNoSession) {
				t.Errorf("session of cookie %d after the login: %v, want it ended (ErrNoSession)", i, err)
			}
		}
	}

	t.Run("callback", func(t *testing.T) {
		atAuthTestNow(t, func(t *testing.T) {
			f := newManagerFixture(t)
			old, cookie := oldSessions(t, f.mgr)
			w := f.serve(httptest.NewRequest(http.MethodGet, "/.auth/login", nil))
			loc, _ := url.Parse(w.Header().Get("Location"))
			r := httptest.NewRequest(http.MethodGet, authCallbackURL(authTestCode, loc.Query().Get("state")), nil)
			r.Header.Set("Cookie", cookie)
			if w := f.serve(r); w.Code != http.StatusFound || !sessionCookieSet(w) {
				t.Fatalf("callback = %d %s, want 302 with a session cookie", w.Code, w.Body)
			}
			wantEnded(t, f.mgr, old)
		})
	})

	t.Run("capture", func(t *testing.T) {
		mgr, err := session.NewManager(session.ManagerOptions{
			Backend:    session.NewMemoryStore(func() time.Time { return now }),
			Secret:     []byte(strings.Repeat("s", 32)),
			Refresher:  noRefresh{},
			Now:        func() time.Time { return now },
			Registerer: prometheus.NewRegistry(),
		})
		if err != nil {
			t.Fatalf("NewManager: %v", err)
		}
		old, cookie := oldSessions(t, mgr)
		up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, body []byte) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"accessToken":"at-new","refreshToken":"rt-new","user":{"id":42}}`))
		})
		e := newPxEnv(t, Options{
			Sessions:      mgr,
			Now:           func() time.Time { return now },
			Routes:        []Route{{Name: "auth_api", Path: "/auth/", Upstream: up.url().String(), Auth: AuthNone}},
			CaptureRoutes: []CaptureRoute{{Path: "/auth/login"}},
		})
		e.provider.capture = xanoCapture
		r := e.req(t, http.MethodPost, "/auth/login", strings.NewReader(`{}`))
		r.Header.Set("Cookie", cookie)
		res, body := e.do(t, r)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("login = %d %s", res.StatusCode, body)
		}
		wantEnded(t, mgr, old)
		cookies := res.Cookies()
		if len(cookies) != 1 {
			t.Fatalf("Set-Cookie = %v, want the new session cookie", cookies)
		}
		tk, err := session.ParseTicket(cookies[0].Value)
		if err != nil {
			t.Fatal(err)
		}
		if s, err := mgr.Load(ctx, tk); err != nil || s.AccessToken != "at-new" {
			t.Errorf("new session = %v, %v; want the captured tokens", s, err)
		}
	})
}

// refresherCalls is how many refreshes p was asked for.
func refresherCalls(p *idptest.TokenEndpoint) int {
	calls, _ := p.Stats()
	return calls
}
