package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/session"
)

func TestBackchannelLogout(t *testing.T) {
	form := func(token string) *http.Request {
		r := httptest.NewRequest("POST", "/.auth/backchannel-logout", strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}
	tests := []struct {
		name        string
		req         *http.Request
		token       *idp.LogoutToken
		verifyErr   error
		storeErr    error
		wantStatus  int
		wantCode    string
		wantSID     []string
		wantSubject []string
		wantVerify  int
	}{
		{
			name: "sid", req: form("lt-1"),
			token:      &idp.LogoutToken{Issuer: "https://idp.example.com", Subject: "user-1", SID: "sid-1"},
			wantStatus: 200, wantSID: []string{"sid-1"}, wantVerify: 1,
		},
		{
			name: "sub only", req: form("lt-1"),
			token:      &idp.LogoutToken{Issuer: "https://idp.example.com", Subject: "user-1"},
			wantStatus: 200, wantSubject: []string{"user-1"}, wantVerify: 1,
		},
		{
			name: "invalid token", req: form("lt-bad"),
			verifyErr:  errors.New("idp: logout token: nonce present"),
			wantStatus: 400, wantCode: "invalid_request", wantVerify: 1,
		},
		{
			name: "neither sid nor sub", req: form("lt-1"),
			token:      &idp.LogoutToken{Issuer: "https://idp.example.com"},
			wantStatus: 400, wantCode: "invalid_request", wantVerify: 1,
		},
		{
			name: "missing token", req: form(""),
			wantStatus: 400, wantCode: "invalid_request",
		},
		{
			name: "token in query only",
			req: func() *http.Request {
				r := httptest.NewRequest("POST", "/.auth/backchannel-logout?logout_token=lt-1", nil)
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				return r
			}(),
			wantStatus: 400, wantCode: "invalid_request",
		},
		{
			name:       "body too large",
			req:        form("lt-" + strings.Repeat("a", maxLogoutTokenBody)),
			wantStatus: 400, wantCode: "invalid_request",
		},
		{
			name: "store down", req: form("lt-1"),
			token:      &idp.LogoutToken{Issuer: "https://idp.example.com", Subject: "user-1", SID: "sid-1"},
			storeErr:   fmt.Errorf("session: end by sid: %w", session.ErrStoreUnavailable),
			wantStatus: 503, wantCode: "store_unavailable", wantVerify: 1,
		},
		{
			name:       "GET not allowed",
			req:        httptest.NewRequest("GET", "/.auth/backchannel-logout", nil),
			wantStatus: 405, wantCode: "method_not_allowed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t, nil)
			f.p.logoutToken, f.p.logoutErr = tt.token, tt.verifyErr
			f.ss.err["EndBySID"], f.ss.err["EndBySubject"] = tt.storeErr, tt.storeErr
			// A server-to-server call: no Origin, no Sec-Fetch-*, no X-CSRF.
			w := f.serve(tt.req)
			if w.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.wantStatus, w.Body)
			}
			wantAuthNoStore(t, w)
			if tt.wantCode != "" {
				if e := decodeAuthError(t, w); e.Error != tt.wantCode {
					t.Errorf("error = %q, want %q", e.Error, tt.wantCode)
				}
			} else if w.Body.Len() != 0 {
				t.Errorf("body = %q, want empty", w.Body)
			}
			if !reflect.DeepEqual(f.ss.bySID, tt.wantSID) {
				t.Errorf("EndBySID calls = %q, want %q", f.ss.bySID, tt.wantSID)
			}
			if !reflect.DeepEqual(f.ss.bySubject, tt.wantSubject) {
				t.Errorf("EndBySubject calls = %q, want %q", f.ss.bySubject, tt.wantSubject)
			}
			if got := len(f.p.verified); got != tt.wantVerify {
				t.Errorf("VerifyLogoutToken called %d times, want %d", got, tt.wantVerify)
			}
		})
	}
}

// TestBackchannelWithManager ends a real session by its sid and by its
// subject.
func TestBackchannelWithManager(t *testing.T) {
	tests := []struct {
		name  string
		token idp.LogoutToken
		ended bool
	}{
		{"sid", idp.LogoutToken{Issuer: "https://idp.example.com", Subject: "user-1", SID: "sid-1"}, true},
		{"subject", idp.LogoutToken{Issuer: "https://idp.example.com", Subject: "user-1"}, true},
		{"other sid", idp.LogoutToken{Issuer: "https://idp.example.com", Subject: "user-1", SID: "sid-2"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			atAuthTestNow(t, func(t *testing.T) {
				f := newManagerFixture(t)
				w := f.serve(httptest.NewRequest("GET", "/.auth/login", nil))
				loc, _ := url.Parse(w.Header().Get("Location"))
				w = f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, loc.Query().Get("state")), nil))
				var ticket string
				for _, c := range w.Result().Cookies() {
					if c.Name == session.DefaultCookieName {
						ticket = c.Value
					}
				}
				tok := tt.token
				f.p.logoutToken = &tok
				r := httptest.NewRequest("POST", "/.auth/backchannel-logout", strings.NewReader("logout_token=lt"))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if w := f.serve(r); w.Code != http.StatusOK {
					t.Fatalf("back-channel logout: %d %s", w.Code, w.Body)
				}
				r = httptest.NewRequest("GET", "/.auth/session", nil)
				r.AddCookie(&http.Cookie{Name: session.DefaultCookieName, Value: ticket})
				w = f.serve(r)
				wantBody := `{"authenticated":false}`
				if got := strings.TrimSpace(w.Body.String()); (got == wantBody) != tt.ended {
					t.Errorf("session after back-channel logout: %s, want ended=%v", got, tt.ended)
				}
			})
		})
	}
}
