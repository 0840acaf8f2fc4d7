package proxy

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/session"
)

// TestSessionEndpointSeveralCookies: with more than one session cookie (a
// sibling host can toss one of the same name when the cookie is not
// __Host-), the first whose session opens answers, and no answer clears the
// cookie: it could be the browser's real one.
func TestSessionEndpointSeveralCookies(t *testing.T) {
	f := newAuthFixture(t, nil)
	good := f.ss.add(t, session.Record{Subject: "user-1", AccessExpiry: authTestNow.Add(time.Minute)})
	stale, _ := session.NewTicket()
	expired := f.ss.add(t, session.Record{Subject: "user-2"})
	f.ss.expired[expired] = true
	const garbage = "garbage-planted-by-a-sibling"
	tests := []struct {
		name       string
		values     []string
		wantAuth   bool
		wantCookie []string
	}{
		{"garbage then good", []string{garbage, good.Encode()}, true, nil},
		{"good then garbage", []string{good.Encode(), garbage}, true, nil},
		{"stale ticket then good", []string{stale.Encode(), good.Encode()}, true, nil},
		{"expired then good", []string{expired.Encode(), good.Encode()}, true, nil},
		{"garbage and stale", []string{garbage, stale.Encode()}, false, nil},
		{"stale and expired", []string{stale.Encode(), expired.Encode()}, false, nil},
		{"one stale ticket", []string{stale.Encode()}, false, []string{authClearedCookie}},
		{"one expired session", []string{expired.Encode()}, false, []string{authClearedCookie}},
		{"one garbage cookie", []string{garbage}, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/.auth/session", nil)
			for _, v := range tt.values {
				r.AddCookie(&http.Cookie{Name: session.DefaultCookieName, Value: v})
			}
			w := f.serve(r)
			body := strings.TrimSpace(w.Body.String())
			if w.Code != 200 || strings.Contains(body, `"authenticated":true`) != tt.wantAuth {
				t.Errorf("GET /.auth/session = %d %s, want authenticated %v", w.Code, body, tt.wantAuth)
			}
			if tt.wantAuth && !strings.Contains(body, `"subject":"user-1"`) {
				t.Errorf("answered %s, want the good session (user-1)", body)
			}
			if got := w.Header().Values("Set-Cookie"); strings.Join(got, "\n") != strings.Join(tt.wantCookie, "\n") {
				t.Errorf("Set-Cookie = %q, want %q", got, tt.wantCookie)
			}
		})
	}
}

// TestLogoutSeveralCookies: logout ends the session of whichever cookie
// opens one.
func TestLogoutSeveralCookies(t *testing.T) {
	f := newAuthFixture(t, nil)
	good := f.ss.add(t, session.Record{Subject: "user-1", RefreshToken: authTestRefreshToken})
	r := httptest.NewRequest("POST", "https://app.example.com/.auth/logout", nil)
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("X-CSRF", "1")
	r.AddCookie(&http.Cookie{Name: session.DefaultCookieName, Value: "garbage"})
	stale, _ := session.NewTicket()
	r.AddCookie(&http.Cookie{Name: session.DefaultCookieName, Value: stale.Encode()})
	r.AddCookie(&http.Cookie{Name: session.DefaultCookieName, Value: good.Encode()})
	if w := f.serve(r); w.Code != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", w.Code, w.Body)
	}
	if _, live := f.ss.sessions[good]; live {
		t.Errorf("the session behind the third cookie survived logout")
	}
	if got := len(f.p.revoked); got != 1 {
		t.Errorf("revoked %d refresh tokens, want 1", got)
	}
}

// TestProxySeveralSessionCookies: a proxied request uses the session of the
// first cookie that opens one, and a request whose cookies open none gets
// 401 login_required without its cookie cleared. Neither the session
// cookies nor a login-binding cookie reach the upstream.
func TestProxySeveralSessionCookies(t *testing.T) {
	up := newPxUpstream(t, "api", nil)
	e := newPxEnv(t, Options{Routes: []Route{{Name: "api", Path: "/api/", Upstream: up.url().String(), Auth: AuthRequired}}})
	good := e.sessions.addToken(t, pxToken)
	stale, _ := session.NewTicket()
	expired := e.sessions.addToken(t, "at-expired")
	tests := []struct {
		name       string
		cookie     string
		errs       []error // AccessToken answers before the fake's own
		wantStatus int
	}{
		{"garbage then good", "a=1; __Host-tokenrelay=garbage; __Host-tokenrelay=" + good.Encode(), nil, 200},
		{"stale then good", "a=1; __Host-tokenrelay=" + stale.Encode() + "; __Host-tokenrelay=" + good.Encode(), nil, 200},
		{"expired then stale", "__Host-tokenrelay=" + expired.Encode() + "; __Host-tokenrelay=" + stale.Encode(),
			[]error{session.ErrSessionExpired}, 401},
		{"stale then expired", "__Host-tokenrelay=" + stale.Encode() + "; __Host-tokenrelay=" + expired.Encode(),
			[]error{nil, session.ErrSessionExpired}, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.sessions.mu.Lock()
			e.sessions.accessErrs = tt.errs
			e.sessions.mu.Unlock()
			before := len(up.requests())
			r := e.req(t, http.MethodGet, "/api/x", nil)
			r.Header.Set("Accept", "application/json")
			r.Header.Set("Cookie", tt.cookie+"; __Host-tokenrelay-login-0123456789abcdef=sealed; app=1")
			res, body := e.do(t, r)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d %s, want %d", res.StatusCode, body, tt.wantStatus)
			}
			if got := res.Header.Values("Set-Cookie"); len(got) != 0 {
				t.Errorf("Set-Cookie = %q, want none", got)
			}
			if tt.wantStatus != 200 {
				if e := decodeError(t, body); e.Error != "login_required" {
					t.Errorf("error = %q, want login_required", e.Error)
				}
				return
			}
			seen := up.requests()[before:]
			if len(seen) != 1 || seen[0].Header.Get("Authorization") != "Bearer "+string(pxToken) {
				t.Fatalf("upstream saw %d requests, Authorization %q; want 1 with the good session's token", len(seen), seen[0].Header.Get("Authorization"))
			}
			if got, want := seen[0].Header.Values("Cookie"), []string{"a=1; app=1"}; strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("upstream Cookie = %q, want %q: only the app's cookies", got, want)
			}
		})
	}
}

// TestOpenFirstStopsOnStoreErrors: a store failure is answered as such, not
// skipped to the next ticket as if the session did not exist.
func TestOpenFirstStopsOnStoreErrors(t *testing.T) {
	a, _ := session.NewTicket()
	b, _ := session.NewTicket()
	var tried []session.Ticket
	_, _, err := openFirst(sessionCookies{tickets: []session.Ticket{a, b}, count: 2}, func(t session.Ticket) (int, error) {
		tried = append(tried, t)
		return 0, session.ErrStoreUnavailable
	})
	if !errors.Is(err, session.ErrStoreUnavailable) || len(tried) != 1 {
		t.Errorf("openFirst = %v after %d tries, want ErrStoreUnavailable after 1", err, len(tried))
	}
}
