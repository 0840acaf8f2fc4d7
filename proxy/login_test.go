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
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
)

func TestLoginRedirect(t *testing.T) {
	tests := []struct {
		name         string
		query        string
		wantReturnTo string
	}{
		{"path with query", "?return_to=" + url.QueryEscape("/app/inbox?tab=2#top"), "/app/inbox?tab=2#top"},
		{"no return_to", "", "/"},
		{"open redirect refused", "?return_to=" + url.QueryEscape("//evil.com"), "/"},
		{"absolute refused", "?return_to=" + url.QueryEscape("https://evil.com/x"), "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAuthFixture(t, nil)
			w := f.serve(httptest.NewRequest("GET", "https://app.example.com/.auth/login"+tt.query, nil))
			if w.Code != http.StatusFound {
				t.Fatalf("status = %d, want 302; body %s", w.Code, w.Body)
			}
			wantAuthNoStore(t, w)
			loc, err := url.Parse(w.Header().Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := loc.Scheme+"://"+loc.Host+loc.Path, "https://idp.example.com/authorize"; got != want {
				t.Errorf("redirect to %q, want %q", got, want)
			}
			q := loc.Query()
			st, ok := f.ss.states[q.Get("state")]
			if !ok {
				t.Fatalf("state %q from the redirect was not sealed (sealed: %d)", q.Get("state"), len(f.ss.states))
			}
			if len(f.ss.states) != 1 {
				t.Errorf("sealed %d states, want 1", len(f.ss.states))
			}
			if st.ReturnTo != tt.wantReturnTo {
				t.Errorf("sealed ReturnTo = %q, want %q", st.ReturnTo, tt.wantReturnTo)
			}
			if !st.CreatedAt.Equal(authTestNow) {
				t.Errorf("sealed CreatedAt = %v, want %v", st.CreatedAt, authTestNow)
			}
			if got, want := q.Get("nonce"), st.Nonce; got != want {
				t.Errorf("nonce = %q, want sealed %q", got, want)
			}
			if got, want := q.Get("code_challenge"), "S256("+st.Verifier+")"; got != want {
				t.Errorf("code_challenge = %q, want %q", got, want)
			}
			for name, v := range map[string]string{"state": st.State, "nonce": st.Nonce, "verifier": st.Verifier} {
				if len(v) < 43 {
					t.Errorf("%s %q is shorter than 43 characters (256 bits)", name, v)
				}
			}
			if got, want := w.Header().Values("Set-Cookie"), []string{loginCookieLine(st.State, "sealed-"+st.State)}; !reflect.DeepEqual(got, want) {
				t.Errorf("Set-Cookie = %q, want %q", got, want)
			}
			if st.State == st.Nonce || st.State == st.Verifier || st.Nonce == st.Verifier {
				t.Errorf("state, nonce and verifier are not independent: %+v", st)
			}
		})
	}
}

func TestLoginSeveralTabs(t *testing.T) {
	f := newAuthFixture(t, nil)
	const tabs = 3
	for i := range tabs {
		w := f.serve(httptest.NewRequest("GET", fmt.Sprintf("/.auth/login?return_to=/tab/%d", i), nil))
		if w.Code != http.StatusFound {
			t.Fatalf("login %d: status %d", i, w.Code)
		}
	}
	if got := len(f.ss.states); got != tabs {
		t.Fatalf("sealed %d distinct states, want %d", got, tabs)
	}
	// Each tab's callback lands on its own return_to, in any order.
	states := map[string]string{}
	for s, st := range f.ss.states {
		states[s] = st.ReturnTo
	}
	for s, want := range states {
		w := f.serve(httptest.NewRequest("GET", "/.auth/callback?code=c&state="+url.QueryEscape(s), nil))
		if got := w.Header().Get("Location"); w.Code != http.StatusFound || got != want {
			t.Errorf("callback: %d to %q, want 302 to %q", w.Code, got, want)
		}
	}
}

func TestLoginSealFails(t *testing.T) {
	f := newAuthFixture(t, nil)
	f.ss.err["SealLogin"] = errors.New("session: seal login: nonce: entropy exhausted")
	w := f.serve(httptest.NewRequest("GET", "/.auth/login", nil))
	if w.Code != http.StatusInternalServerError || decodeAuthError(t, w).Error != "internal_error" {
		t.Errorf("got %d %s, want 500 internal_error", w.Code, w.Body)
	}
	if got := w.Header().Values("Set-Cookie"); len(got) != 0 {
		t.Errorf("Set-Cookie = %q, want none", got)
	}
	wantAuthNoStore(t, w)
}

// TestLoginPushFails: a login whose pushed authorization request the
// provider refuses is answered 502 with Retry-After, and binds nothing to
// the browser.
func TestLoginPushFails(t *testing.T) {
	f := newAuthFixture(t, nil)
	f.p.authorizeErr = errors.New("idp: pushed authorization request: status 503")
	w := f.serve(httptest.NewRequest("GET", "https://app.example.com/.auth/login?return_to=/x", nil))
	if w.Code != http.StatusBadGateway || w.Header().Get("Retry-After") == "" || w.Header().Get("Set-Cookie") != "" {
		t.Errorf("login = %d, Retry-After %q, Set-Cookie %q; want 502, a Retry-After, no cookie", w.Code, w.Header().Get("Retry-After"), w.Header().Get("Set-Cookie"))
	}
	if got := decodeError(t, w.Body.String()).Error; got != "authorization_request_failed" {
		t.Errorf("error = %q, want authorization_request_failed", got)
	}
}

// TestLoginStepUpParameters pins what a step-up login URL passes on: its
// acr_values, max_age and prompt reach the provider's authorization
// request and are sealed into the login state, so the session records what
// was asked; anything malformed is refused before the provider sees it,
// with the login-failed page for a navigation.
func TestLoginStepUpParameters(t *testing.T) {
	f := newAuthFixture(t, nil)
	w := f.serve(httptest.NewRequest("GET", "/.auth/login?return_to=/mfa/x&acr_values=urn:mfa+urn:hwk&max_age=600&prompt=login&scope=admin", nil))
	if w.Code != http.StatusFound {
		t.Fatalf("status = %d, want 302; body %s", w.Code, w.Body)
	}
	loc, _ := url.Parse(w.Header().Get("Location"))
	q := loc.Query()
	if q.Get("acr_values") != "urn:mfa urn:hwk" || q.Get("max_age") != "600" || q.Get("prompt") != "login" || q.Has("scope") {
		t.Errorf("authorization request %s, want acr_values, max_age and prompt passed on, and nothing else", loc.RawQuery)
	}
	st := f.ss.states[q.Get("state")]
	want := idp.LoginRequest{ACRValues: []string{"urn:mfa", "urn:hwk"}, MaxAge: 10 * time.Minute, Prompt: []string{"login"}}
	if !reflect.DeepEqual(st.Request, want) || st.ReturnTo != "/mfa/x" {
		t.Errorf("sealed state asks for %+v returning to %q, want %+v and /mfa/x", st.Request, st.ReturnTo, want)
	}

	for _, query := range []string{"prompt=none+login", "max_age=forever", "acr_values=a%01b"} {
		r := httptest.NewRequest("GET", "/.auth/login?"+query, nil)
		r.Header.Set("Sec-Fetch-Mode", "navigate")
		w := f.serve(r)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "<title>Login failed</title>") || w.Header().Get("Location") != "" {
			t.Errorf("%s: %d %q, want 400 with the login-failed page", query, w.Code, w.Body)
		}
		r = httptest.NewRequest("GET", "/.auth/login?"+query, nil)
		if w := f.serve(r); w.Code != http.StatusBadRequest || decodeAuthError(t, w).Error != "invalid_request" {
			t.Errorf("%s from an API client: %d %s, want 400 invalid_request", query, w.Code, w.Body)
		}
	}
	if len(f.ss.states) != 1 {
		t.Errorf("sealed %d login states, want only the valid login's", len(f.ss.states))
	}
}
