package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"
)

// TestLoginSilentParams pins what a login URL passes to the provider:
// prompt=none (a silent login) and the step-up parameters, exactly as
// sent; anything else is dropped; prompt=none combined with another prompt
// value, or a malformed or repeated parameter, is refused before any state
// is sealed.
func TestLoginSilentParams(t *testing.T) {
	tests := []struct {
		name   string
		query  string
		status int
		want   url.Values // provider parameters in the redirect
	}{
		{"silent", "prompt=none&max_age=60", http.StatusFound, url.Values{"prompt": {"none"}, "max_age": {"60"}}},
		{"step-up", "prompt=login&acr_values=urn:mfa&max_age=300", http.StatusFound, url.Values{"prompt": {"login"}, "acr_values": {"urn:mfa"}, "max_age": {"300"}}},
		{"others dropped", "redirect_uri=https://evil.example/&scope=admin&state=x&foo=1&login_hint=ada", http.StatusFound, url.Values{}},
		{"none with another prompt", "prompt=none%20login", http.StatusBadRequest, nil},
		{"unknown prompt", "prompt=always", http.StatusBadRequest, nil},
		{"negative max_age", "max_age=-1", http.StatusBadRequest, nil},
		{"repeated", "prompt=none&prompt=login", http.StatusBadRequest, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t, nil)
			w := f.serve(httptest.NewRequest("GET", "/.auth/login?return_to=/app&"+tt.query, nil))
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			if tt.status != http.StatusFound {
				if e := decodeAuthError(t, w); e.Error != "invalid_request" {
					t.Errorf("error = %q, want invalid_request", e.Error)
				}
				if len(f.ss.states) != 0 {
					t.Errorf("a refused login sealed %d states", len(f.ss.states))
				}
				return
			}
			loc, _ := url.Parse(w.Header().Get("Location"))
			got := loc.Query()
			for _, own := range []string{"state", "nonce", "code_challenge"} {
				got.Del(own)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("passed on %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCallbackSilentLoginErrors pins the answer to a provider that needs
// the user: back to the login's return_to with tokenrelay_error, so a page
// can fall back to an interactive login; other provider errors, and silent
// errors without this browser's login binding, still get the error answer.
func TestCallbackSilentLoginErrors(t *testing.T) {
	tests := []struct {
		name     string
		returnTo string
		err      string
		bound    bool
		location string // "" for the 401 login_failed answer
	}{
		{"login_required", "/app", "login_required", true, "/app?tokenrelay_error=login_required"},
		{"interaction_required, query and fragment kept", "/app?tab=2#top", "interaction_required", true, "/app?tab=2&tokenrelay_error=interaction_required#top"},
		{"consent_required", "/", "consent_required", true, "/?tokenrelay_error=consent_required"},
		{"an earlier signal replaced", "/app?tokenrelay_error=login_required&a=%2F&tokenrelay_error", "interaction_required", true, "/app?a=%2F&tokenrelay_error=interaction_required"},
		{"account_selection_required", "/x", "account_selection_required", true, "/x?tokenrelay_error=account_selection_required"},
		{"access_denied is an error page", "/app", "access_denied", true, ""},
		{"another browser's state is an error page", "/app", "login_required", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t, nil)
			w := f.serve(httptest.NewRequest("GET", "/.auth/login?prompt=none&return_to="+url.QueryEscape(tt.returnTo), nil))
			loc, _ := url.Parse(w.Header().Get("Location"))
			state := loc.Query().Get("state")
			cb := httptest.NewRequest("GET", "/.auth/callback?"+url.Values{"error": {tt.err}, "state": {state}}.Encode(), nil)
			if tt.bound {
				w = f.serve(cb)
			} else {
				w = f.serveFromOtherBrowser(cb)
			}
			wantAuthNoStore(t, w)
			if tt.location == "" {
				if w.Code != http.StatusUnauthorized || decodeAuthError(t, w).Error != "login_failed" {
					t.Fatalf("answer = %d %s, want 401 login_failed", w.Code, w.Body)
				}
				return
			}
			if w.Code != http.StatusFound {
				t.Fatalf("status = %d, want 302; body %s", w.Code, w.Body)
			}
			if got := w.Header().Get("Location"); got != tt.location {
				t.Errorf("Location = %q, want %q", got, tt.location)
			}
			if sessionCookieSet(w) || len(f.ss.created) != 0 || len(f.p.exchanges) != 0 {
				t.Errorf("a refused silent login made a session (cookie %v, created %d, exchanges %d)", sessionCookieSet(w), len(f.ss.created), len(f.p.exchanges))
			}
			if _, still := f.jar[loginCookieName(state)]; still {
				t.Errorf("the login binding cookie was not cleared")
			}
		})
	}
}
