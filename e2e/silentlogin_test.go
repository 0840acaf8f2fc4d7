package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// silentLogin navigates to /.auth/login?prompt=none and returns every hop.
func silentLogin(t *testing.T, b *browser, relayURL, returnTo string) []observed {
	t.Helper()
	hops, err := b.navigate(http.MethodGet, relayURL+"/.auth/login?prompt=none&return_to="+url.QueryEscape(returnTo), nil)
	if err != nil {
		t.Fatalf("silent login: %v; hops %v", err, hopURLs(hops))
	}
	return hops
}

// sessionSubject returns the subject GET /.auth/session names, "" when the
// browser has no session.
func sessionSubject(t *testing.T, b *browser, relayURL string) string {
	t.Helper()
	o := b.get(t, relayURL+"/.auth/session", nil)
	var info struct {
		Authenticated bool   `json:"authenticated"`
		Subject       string `json:"subject"`
	}
	if err := json.Unmarshal(o.Body, &info); err != nil {
		t.Fatalf("GET /.auth/session = %d %s: %v", o.Status, o.Body, err)
	}
	return info.Subject
}

// TestSilentLogin drives prompt=none against the real OP: a browser without
// a session at the provider comes back to return_to with
// tokenrelay_error=login_required and no session; a browser with one is
// logged in without any page of the provider's being shown. The OP grants
// offline_access only with prompt=consent, so a silent login's session has
// no refresh token: it lives as long as its access token.
func TestSilentLogin(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{AccessTTL: 60 * time.Second})

	// No session at the provider: the documented signal, no session.
	anon := newBrowser(t)
	hops := silentLogin(t, anon, s.RelayURL, "/app?tab=2")
	var callback *observed
	for i, h := range hops {
		if h.URL.Path == "/.auth/callback" {
			callback = &hops[i]
		}
		if h.Status == http.StatusOK && strings.HasPrefix(h.URL.String(), s.OP.Issuer) {
			t.Errorf("prompt=none showed a page of the provider: %s", h.URL)
		}
	}
	if callback == nil {
		t.Fatalf("prompt=none never reached the callback; hops %v", hopURLs(hops))
	}
	if got, want := callback.Header.Get("Location"), "/app?tab=2&tokenrelay_error=login_required"; callback.Status != http.StatusFound || got != want {
		t.Errorf("callback = %d Location %q, want 302 %q", callback.Status, got, want)
	}
	if sub := sessionSubject(t, anon, s.RelayURL); sub != "" {
		t.Errorf("after login_required the browser has a session of %q", sub)
	}

	// An interactive login makes a session at the provider; a browser that
	// has only the provider's cookies (tokenrelay's session gone) logs in
	// silently.
	alice := newBrowser(t)
	alice.login(t, s.RelayURL, "/", "alice")
	op, _ := url.Parse(s.OP.Issuer)
	returning := newBrowser(t)
	returning.client.Jar.SetCookies(op, alice.client.Jar.Cookies(op))
	refreshTokensBefore := len(secTokens(t, s.OP, "alice").RefreshTokens)

	hops = silentLogin(t, returning, s.RelayURL, "/api/whoami")
	for _, h := range hops {
		if h.Status == http.StatusOK && strings.HasPrefix(h.URL.String(), s.OP.Issuer) {
			t.Errorf("silent login showed a page of the provider: %s", h.URL)
		}
	}
	final := hops[len(hops)-1]
	if final.URL.Path != "/api/whoami" || final.Status != http.StatusOK || decodeWhoami(t, final).Sub != "alice" {
		t.Fatalf("silent login ended at %d %s, want 200 /api/whoami as alice; hops %v", final.Status, final.URL, hopURLs(hops))
	}
	if sub := sessionSubject(t, returning, s.RelayURL); sub != "alice" {
		t.Errorf("after the silent login the session names %q, want alice", sub)
	}
	if got := len(secTokens(t, s.OP, "alice").RefreshTokens) - refreshTokensBefore; got != 0 {
		t.Errorf("the silent login got %d refresh tokens, want 0 (offline_access needs prompt=consent at this OP)", got)
	}
	if st := s.OP.Stats(t); st.CodeSuccess != 2 {
		t.Errorf("OP counted %d code exchanges, want 2 (interactive, silent)", st.CodeSuccess)
	}
}
