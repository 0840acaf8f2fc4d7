package proxy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/session"
)

func TestSessionEndpoint(t *testing.T) {
	f := newAuthFixture(t, nil)
	rec := session.Record{
		AccessToken:  authTestAccessToken,
		RefreshToken: authTestRefreshToken,
		IDToken:      authTestIDToken,
		AccessExpiry: authTestNow.Add(5 * time.Minute),
		Issuer:       "https://idp.example.com",
		Subject:      "user-1",
		SID:          "sid-1",
		Claims:       map[string]any{"email": "ada@example.com", "name": "Ada"},
		CreatedAt:    authTestNow,
	}
	tk := f.ss.add(t, rec)
	stale, _ := session.NewTicket()

	tests := []struct {
		name       string
		req        *http.Request
		loadErr    error
		wantStatus int
		wantBody   string
		wantCookie []string
	}{
		{
			name:       "logged in",
			req:        withAuthTicket(httptest.NewRequest("GET", "/.auth/session", nil), tk),
			wantStatus: 200,
			wantBody:   `{"authenticated":true,"subject":"user-1","claims":{"email":"ada@example.com","name":"Ada"},"expires_at":"2026-03-02T12:00:00Z","access_token_expires_at":"2026-03-01T12:05:00Z"}`,
		},
		{
			name:       "no cookie",
			req:        httptest.NewRequest("GET", "/.auth/session", nil),
			wantStatus: 200, wantBody: `{"authenticated":false}`,
		},
		{
			name:       "stale cookie cleared",
			req:        withAuthTicket(httptest.NewRequest("GET", "/.auth/session", nil), stale),
			wantStatus: 200, wantBody: `{"authenticated":false}`,
			wantCookie: []string{authClearedCookie},
		},
		{
			name:       "store down",
			req:        withAuthTicket(httptest.NewRequest("GET", "/.auth/session", nil), tk),
			loadErr:    fmt.Errorf("session: load: %w", session.ErrStoreUnavailable),
			wantStatus: 503,
			wantBody:   `{"error":"store_unavailable","message":"the session store is unreachable"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.ss.err["Load"] = tt.loadErr
			w := f.serve(tt.req)
			if w.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", w.Code, tt.wantStatus)
			}
			if got := strings.TrimSpace(w.Body.String()); got != tt.wantBody {
				t.Errorf("body = %s, want %s", got, tt.wantBody)
			}
			if got := w.Header().Values("Set-Cookie"); len(got) != len(tt.wantCookie) || (len(got) > 0 && !reflect.DeepEqual(got, tt.wantCookie)) {
				t.Errorf("Set-Cookie = %q, want %q", got, tt.wantCookie)
			}
			wantAuthNoStore(t, w)
			for _, tok := range []string{authTestAccessToken, authTestRefreshToken, authTestIDToken} {
				if strings.Contains(w.Body.String(), tok) {
					t.Errorf("body contains a token: %s", w.Body)
				}
			}
		})
	}
}
