package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestLogoutThroughProvider follows a logout the whole way a browser does:
// the page's fetch POST /.auth/logout (X-CSRF: 1) answers the provider's
// end-session URL, which names the client (client_id) and never carries the
// ID token (no id_token_hint: the URL goes through the browser, its history
// and the provider's logs); the browser goes there, confirms on the
// provider's page, and lands back on tokenrelay's post-logout URI, which the
// OP accepted on the strength of client_id alone. The OP counts one
// revocation and one ended session, its own session is over (the next login
// asks for credentials again), and tokenrelay's session is gone.
func TestLogoutThroughProvider(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{AccessTTL: 60 * time.Second})
	b := newBrowser(t)
	b.login(t, s.RelayURL, "/", "grace")
	decodeWhoami(t, b.get(t, s.RelayURL+"/api/whoami", nil))

	req, err := http.NewRequest(http.MethodPost, s.RelayURL+"/.auth/logout", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-CSRF", "1")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Origin", s.RelayURL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	out, err := b.do(req)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		LogoutURL string `json:"logout_url"`
	}
	if err := json.Unmarshal(out.Body, &answer); out.Status != http.StatusOK || err != nil {
		t.Fatalf("POST /.auth/logout = %d %s, want 200 {\"logout_url\":…}", out.Status, out.Body)
	}
	lu, err := url.Parse(answer.LogoutURL)
	if err != nil || lu.Scheme+"://"+lu.Host+lu.Path != s.OP.Issuer+"/session/end" {
		t.Fatalf("logout_url = %q, want the OP's end_session_endpoint %s/session/end", answer.LogoutURL, s.OP.Issuer)
	}
	if got, want := lu.Query().Get("post_logout_redirect_uri"), s.RelayURL+"/"; got != want {
		t.Errorf("post_logout_redirect_uri = %q, want %q", got, want)
	}
	if got := lu.Query().Get("client_id"); got != opClientID {
		t.Errorf("client_id = %q, want %q", got, opClientID)
	}
	if lu.Query().Has("id_token_hint") || jwtRE.MatchString(answer.LogoutURL) || jwtRE.Match(out.Body) {
		t.Errorf("the logout answer carries the ID token: %s", out.Body)
	}

	// At the provider: its confirmation page, then back to tokenrelay.
	hops, err := b.navigate(http.MethodGet, answer.LogoutURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	confirm, ok := firstPostForm(hops[len(hops)-1])
	if !ok {
		t.Fatalf("no confirmation form at the provider; last page %d:\n%s", hops[len(hops)-1].Status, hops[len(hops)-1].Body)
	}
	hops, err = b.navigate(http.MethodPost, confirm.Action.String(), confirm.Values)
	if err != nil {
		t.Fatal(err)
	}
	last := hops[len(hops)-1]
	if got, want := last.URL.String(), s.RelayURL+"/"; !strings.HasPrefix(got, want) || last.Status != http.StatusOK {
		t.Errorf("logout ended at %d %s, want 200 %s", last.Status, got, want)
	}

	st := s.OP.Stats(t)
	if st.Revocations != 1 || st.EndSession != 1 {
		t.Errorf("OP counted %d revocations and %d ended sessions, want 1 and 1", st.Revocations, st.EndSession)
	}
	gone := b.get(t, s.RelayURL+"/api/whoami", nil)
	if gone.Status != http.StatusUnauthorized {
		t.Errorf("GET /api/whoami after logout = %d %s, want 401", gone.Status, gone.Body)
	}
	sess := b.get(t, s.RelayURL+"/.auth/session", nil)
	if sess.Status != http.StatusOK || !strings.Contains(string(sess.Body), `"authenticated":false`) {
		t.Errorf("GET /.auth/session after logout = %d %s, want 200 authenticated false", sess.Status, sess.Body)
	}

	// The OP's own session ended too: a new login stops at its login form.
	hops, err = b.navigate(http.MethodGet, s.RelayURL+"/.auth/login?return_to=/", nil)
	if err != nil {
		t.Fatal(err)
	}
	page := hops[len(hops)-1]
	f, ok := firstPostForm(page)
	if _, asks := f.Values["login"]; !ok || !asks || page.URL.Host == strings.TrimPrefix(s.RelayURL, "http://") {
		t.Errorf("a login after logout ended at %d %s without asking for credentials; the OP session survived", page.Status, page.URL)
	}
	// No tokenrelay answer of the whole run carried a JWT (the ID token).
	for _, o := range b.responses() {
		if o.URL.Host == strings.TrimPrefix(s.RelayURL, "http://") && (jwtRE.Match(o.Body) || jwtRE.MatchString(o.Header.Get("Location"))) {
			t.Errorf("%s %s answered a JWT", o.Method, o.URL.Path)
		}
	}
}
