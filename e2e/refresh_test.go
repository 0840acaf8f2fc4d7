package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// currentToken makes one API call through tokenrelay and returns the token
// the upstream received, verified against the OP's JWKS.
func currentToken(t *testing.T, s *stack, b *browser) (string, *accessClaims) {
	t.Helper()
	decodeWhoami(t, b.get(t, s.RelayURL+"/api/whoami", nil))
	raw := bearerToken(t, s.Tap.Last(t).Authorization)
	return raw, s.OP.VerifyAccessToken(t, raw)
}

// checkUpstreamNeverRejected asserts the API accepted every token tokenrelay
// forwarded: the API allows no clock leeway, so an expired token would show
// up here as a 401 (even if tokenrelay's retry then hid it from the
// browser).
func checkUpstreamNeverRejected(t *testing.T, s *stack) {
	t.Helper()
	for i, r := range s.Tap.Requests() {
		if r.Status != http.StatusOK {
			t.Errorf("upstream request %d (%s) answered %d, want 200: tokenrelay forwarded a token the API refused", i, r.Path, r.Status)
		}
	}
}

// TestRefreshAfterExpiry: once the access token has
// expired, the next request carries a new, valid token, obtained with
// exactly one refresh at the OP.
func TestRefreshAfterExpiry(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{AccessTTL: 4 * time.Second, RefreshAhead: time.Second})
	b := newBrowser(t)
	b.login(t, s.RelayURL, "/", "dave")

	oldRaw, old := currentToken(t, s, b)
	before := s.OP.Stats(t)

	// Wait for the token's own exp (whole seconds) to pass.
	waitUntil(t, old.ExpiresAt.Time.Add(100*time.Millisecond), 10*time.Second)

	newRaw, fresh := currentToken(t, s, b)
	after := s.OP.Stats(t)

	if newRaw == oldRaw || fresh.ID == old.ID {
		t.Fatalf("after expiry the upstream still got the old token (jti %s)", old.ID)
	}
	if !fresh.ExpiresAt.After(old.ExpiresAt.Time) {
		t.Errorf("new token exp %s is not after the old one's %s", fresh.ExpiresAt, old.ExpiresAt)
	}
	if got, want := after.RefreshSuccess-before.RefreshSuccess, 1; got != want {
		t.Errorf("the OP counted %d refreshes for one expired token, want %d", got, want)
	}
	if got := after.RefreshError - before.RefreshError; got != 0 {
		t.Errorf("the OP counted %d failed refreshes, want 0", got)
	}

	// The new token is fresh: using it again refreshes nothing.
	again, _ := currentToken(t, s, b)
	if again != newRaw {
		t.Errorf("a second call right after the refresh got another token")
	}
	if got, want := s.OP.Stats(t).RefreshSuccess-before.RefreshSuccess, 1; got != want {
		t.Errorf("after one more call the OP counted %d refreshes, want %d", got, want)
	}
	checkUpstreamNeverRejected(t, s)
}

// TestConcurrentRefreshOneSession: 50 concurrent requests
// on one session whose access token has expired share exactly one refresh;
// all 50 succeed with the same new token and the OP sees no invalid_grant.
func TestConcurrentRefreshOneSession(t *testing.T) {
	t.Parallel()
	const (
		n   = 50
		ttl = 8 * time.Second
	)
	s := startStack(t, stackOptions{AccessTTL: ttl, RefreshAhead: time.Second})
	b := newBrowser(t)
	b.login(t, s.RelayURL, "/", "erin")

	_, old := currentToken(t, s, b)
	waitUntil(t, old.ExpiresAt.Time.Add(100*time.Millisecond), 15*time.Second)
	before := s.OP.Stats(t)
	firstBurst := len(s.Tap.Requests())

	statuses, errs, elapsed := b.burst(s.RelayURL+"/api/whoami", n, http.Header{"Accept": {"application/json"}})

	for i := range n {
		if errs[i] != nil || statuses[i] < 200 || statuses[i] > 299 {
			t.Errorf("request %d: status %d, error %v; want 2xx", i, statuses[i], errs[i])
		}
	}
	after := s.OP.Stats(t)
	if got, want := after.RefreshSuccess-before.RefreshSuccess, 1; got != want {
		// A second refresh is legitimate only if the new token turned stale
		// during the burst; say so rather than blame the engine.
		hint := ""
		if elapsed > ttl-time.Second {
			hint = fmt.Sprintf(" (the burst took %s, longer than the token stays fresh: inconclusive)", elapsed)
		}
		t.Errorf("the OP counted %d refreshes for %d concurrent requests on one session, want %d%s", got, n, want, hint)
	}
	if after.InvalidGrant != 0 || after.RefreshError != before.RefreshError {
		t.Errorf("the OP answered invalid_grant %d times and %d refreshes failed, want 0", after.InvalidGrant, after.RefreshError-before.RefreshError)
	}

	burst := s.Tap.Requests()[firstBurst:]
	if len(burst) != n {
		t.Fatalf("the upstream received %d requests, want %d", len(burst), n)
	}
	tokens := map[string]int{}
	for _, r := range burst {
		tokens[r.Authorization]++
	}
	if len(tokens) != 1 {
		t.Errorf("the %d requests carried %d different tokens, want 1", n, len(tokens))
	}
	for authz := range tokens {
		c := s.OP.VerifyAccessToken(t, bearerToken(t, authz))
		if c.ID == old.ID {
			t.Errorf("the burst carried the expired token (jti %s)", old.ID)
		}
	}
	checkUpstreamNeverRejected(t, s)
	t.Logf("%d concurrent requests on one expired session: 1 refresh, %s", n, elapsed)
}
