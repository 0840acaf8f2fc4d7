package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/session"
)

func TestLogout(t *testing.T) {
	rec := session.Record{RefreshToken: authTestRefreshToken, IDToken: authTestIDToken, Subject: "user-1", SID: "sid-1"}
	tests := []struct {
		name        string
		headers     map[string]string
		noSession   bool
		staleCookie bool // a cookie whose session is gone
		noEndpoint  bool // the provider has no end_session_endpoint
		revokeErr   error
		revoke      bool
		wantStatus  int
		wantJSON    bool
		wantRevoked int
		wantMetric  map[string]float64
		wantLocal   bool // the answer is the post-logout URI itself
	}{
		{
			name:    "fetch with Accept json",
			headers: map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			revoke:  true, wantStatus: 200, wantJSON: true, wantRevoked: 1,
			wantMetric: map[string]float64{"success": 1, "failed": 0},
		},
		{
			name:    "fetch by Sec-Fetch-Mode cors",
			headers: map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "X-CSRF": "1"},
			revoke:  true, wantStatus: 200, wantJSON: true, wantRevoked: 1,
			wantMetric: map[string]float64{"success": 1, "failed": 0},
		},
		{
			name:    "form post navigation",
			headers: map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "X-CSRF": "1", "Accept": "text/html"},
			revoke:  true, wantStatus: 303, wantRevoked: 1,
			wantMetric: map[string]float64{"success": 1, "failed": 0},
		},
		{
			name:      "revocation failure does not block logout",
			headers:   map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			revokeErr: errors.New("idp: revoke: status 500"),
			revoke:    true, wantStatus: 200, wantJSON: true, wantRevoked: 1,
			wantMetric: map[string]float64{"success": 0, "failed": 1},
		},
		{
			name:      "revocation not supported",
			headers:   map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			revokeErr: fmt.Errorf("idp: revoke: %w", idp.ErrNotSupported),
			revoke:    true, wantStatus: 200, wantJSON: true, wantRevoked: 1,
			wantMetric: map[string]float64{"success": 0, "failed": 0},
		},
		{
			name:    "revocation off",
			headers: map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			revoke:  false, wantStatus: 200, wantJSON: true, wantRevoked: 0,
			wantMetric: map[string]float64{"success": 0, "failed": 0},
		},
		{
			name:       "no end_session_endpoint",
			headers:    map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			noEndpoint: true,
			revoke:     true, wantStatus: 200, wantJSON: true, wantRevoked: 1, wantLocal: true,
			wantMetric: map[string]float64{"success": 1, "failed": 0},
		},
		{
			name:      "no session: local logout",
			headers:   map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			noSession: true,
			revoke:    true, wantStatus: 200, wantJSON: true, wantRevoked: 0, wantLocal: true,
			wantMetric: map[string]float64{"success": 0, "failed": 0},
		},
		{
			name:        "stale cookie: local logout",
			headers:     map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1", "Accept": "application/json"},
			staleCookie: true,
			revoke:      true, wantStatus: 200, wantJSON: true, wantRevoked: 0, wantLocal: true,
			wantMetric: map[string]float64{"success": 0, "failed": 0},
		},
		{
			name:      "no session: form post",
			headers:   map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1"},
			noSession: true,
			revoke:    true, wantStatus: 303, wantRevoked: 0, wantLocal: true,
			wantMetric: map[string]float64{"success": 0, "failed": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t, func(o *authOptions) { o.RevokeOnLogout = tt.revoke })
			f.p.revokeErr = tt.revokeErr
			f.p.endSession = !tt.noEndpoint
			r := httptest.NewRequest("POST", "https://app.example.com/.auth/logout", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			switch {
			case tt.staleCookie:
				gone, _ := session.NewTicket()
				r = withAuthTicket(r, gone)
			case !tt.noSession:
				r = withAuthTicket(r, f.ss.add(t, rec))
			}
			w := f.serve(r)
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.wantStatus, w.Body)
			}
			wantAuthNoStore(t, w)
			if got := w.Header().Values("Set-Cookie"); len(got) != 1 || got[0] != authClearedCookie {
				t.Errorf("Set-Cookie = %q, want [%q]", got, authClearedCookie)
			}
			if len(f.ss.sessions) != 0 {
				t.Errorf("%d sessions left after logout, want 0", len(f.ss.sessions))
			}
			var next string
			if tt.wantJSON {
				var got map[string]string
				if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || len(got) != 1 {
					t.Fatalf("body %s: want exactly {\"logout_url\": ...} (%v)", w.Body, err)
				}
				next = got["logout_url"]
			} else {
				next = w.Header().Get("Location")
			}
			if tt.wantLocal {
				if next != "https://app.example.com/" {
					t.Errorf("next = %q, want the post-logout URI https://app.example.com/", next)
				}
			} else {
				u, err := url.Parse(next)
				if err != nil {
					t.Fatal(err)
				}
				q := u.Query()
				if u.Host != "idp.example.com" || u.Path != "/logout" || q.Get("client_id") != "client-1" ||
					q.Get("post_logout_redirect_uri") != "https://app.example.com/" || len(q.Get("state")) < 43 {
					t.Errorf("next = %q, want the end-session URL with client_id, post_logout_redirect_uri and a fresh state", next)
				}
			}
			answer := w.Body.String() + w.Header().Get("Location")
			for _, tok := range []string{authTestAccessToken, authTestRefreshToken, authTestIDToken} {
				if strings.Contains(answer, tok) {
					t.Errorf("the logout answer holds a token: %s", answer)
				}
			}
			if got := len(f.p.revoked); got != tt.wantRevoked {
				t.Errorf("Revoke called %d times, want %d", got, tt.wantRevoked)
			}
			for _, got := range f.p.revoked {
				if got != authTestRefreshToken {
					t.Errorf("Revoke(%q), want the refresh token", got)
				}
			}
			for result, want := range tt.wantMetric {
				if got := authCounterValue(t, f.reg, "tokenrelay_revocations_total", "result", result); got != want {
					t.Errorf("tokenrelay_revocations_total{result=%q} = %v, want %v", result, got, want)
				}
			}
		})
	}
}

func TestLogoutRefused(t *testing.T) {
	tests := []struct {
		name       string
		headers    map[string]string
		endErr     error
		wantStatus int
		wantCode   string
	}{
		{"cross-site form post", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.com"}, nil, 403, "csrf"},
		{"cross-site with header", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.com", "X-CSRF": "1"}, nil, 403, "csrf"},
		{"same-origin without header", map[string]string{"Sec-Fetch-Site": "same-origin"}, nil, 403, "csrf"},
		{"store down", map[string]string{"Sec-Fetch-Site": "same-origin", "X-CSRF": "1"}, fmt.Errorf("session: end: %w", session.ErrStoreUnavailable), 503, "store_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t, nil)
			f.ss.err["End"] = tt.endErr
			tk := f.ss.add(t, session.Record{RefreshToken: authTestRefreshToken, IDToken: authTestIDToken})
			r := withAuthTicket(httptest.NewRequest("POST", "https://app.example.com/.auth/logout", nil), tk)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			w := f.serve(r)
			if e := decodeAuthError(t, w); w.Code != tt.wantStatus || e.Error != tt.wantCode {
				t.Fatalf("got %d %q, want %d %q", w.Code, e.Error, tt.wantStatus, tt.wantCode)
			}
			wantAuthNoStore(t, w)
			if _, live := f.ss.sessions[tk]; !live {
				t.Errorf("the session ended on a refused logout")
			}
			if got := w.Header().Values("Set-Cookie"); len(got) != 0 {
				t.Errorf("Set-Cookie = %q on a refused logout, want none", got)
			}
			if len(f.p.revoked) != 0 {
				t.Errorf("Revoke called on a refused logout")
			}
		})
	}
}
