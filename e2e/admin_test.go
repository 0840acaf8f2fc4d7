package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// adminToken is the bearer token of the session admin API in these tests.
const adminToken = "e2e-admin-token-0123456789abcdef0123"

// adminCall sends an admin API call to a listener with the given bearer
// token ("" for none) and decodes a JSON answer into v (when not nil).
func adminCall(t *testing.T, method, target, token string, v any) int {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("X-Admin-Actor", "e2e")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s %s: %v", method, target, err)
		}
	}
	return resp.StatusCode
}

// adminSessionID is the admin API's id of the session of ticket.
func adminSessionID(t *testing.T, ticket string) string {
	sum := sha256.Sum256(redisTicketID(t, ticket))
	return base64.RawURLEncoding.EncodeToString(sum[:])[:16]
}

type adminList struct {
	Subject  string `json:"subject"`
	Sessions []struct {
		ID        string    `json:"id"`
		CreatedAt time.Time `json:"created_at"`
		LastUsed  time.Time `json:"last_used"`
		ExpiresAt time.Time `json:"expires_at"`
		UserAgent string    `json:"user_agent"`
	} `json:"sessions"`
}

type adminEnded struct {
	Ended, Revoked, RevokeFailed int
}

// wantStatusEverywhere polls every replica with ticket until each answers
// want, for at most limit, and returns how long that took.
func wantStatusEverywhere(t *testing.T, s *redisStack, ticket string, want int, limit time.Duration) time.Duration {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	start := time.Now()
	for _, u := range s.relayURLs() {
		var c redisCall
		if !eventually(limit-time.Since(start), 20*time.Millisecond, func() bool {
			c = redisGet(client, u+"/api/whoami", ticket)
			return c.Status == want
		}) {
			t.Fatalf("%s still answers %d %s after %s, want %d", u, c.Status, c.Body, limit, want)
		}
	}
	return time.Since(start)
}

// TestAdminAPIReplicas drives the session admin API of two replicas over
// Redis, with the sessions' keys escrowed, against the real OP: alice's
// three sessions are listed (never a token); ending one makes its cookie answer 401 on both replicas at once
// and its refresh token inactive at the OP, the others live; ending all of
// alice's ends the rest; bob is untouched until the kill switch, which
// ends his session on both replicas (within about a second) while a new
// login works. Without the token the API answers 401, and the traffic listener
// does not serve it at all. Each end is in the audit log.
func TestAdminAPIReplicas(t *testing.T) {
	t.Parallel()
	requireBinaries(t)
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startRedisStackWith(t, redisStackOptions{AccessTTL: 5 * time.Minute}, func(_ *stack, _ int, yaml string) string {
		return yaml + fmt.Sprintf("admin:\n  token_file: %q\n  escrow: true\n", tokenFile)
	})
	var alice []redisSession
	for range 3 {
		alice = append(alice, redisLogin(t, s, "alice"))
	}
	bob := redisLogin(t, s, "bob")
	aliceRTs := secTokens(t, s.OP, "alice").RefreshTokens
	bobRTs := secTokens(t, s.OP, "bob").RefreshTokens
	if len(aliceRTs) != 3 || len(bobRTs) != 1 {
		t.Fatalf("OP issued %d refresh tokens to alice and %d to bob, want 3 and 1", len(aliceRTs), len(bobRTs))
	}
	admin0, admin1 := s.Relays[0].AdminURL, s.Relays[1].AdminURL

	// Without the token, or with another: 401. On the traffic listener the
	// API does not exist, token or not.
	for _, tok := range []string{"", "wrong-token"} {
		if got := adminCall(t, "GET", admin0+"/admin/sessions?sub=alice", tok, nil); got != http.StatusUnauthorized {
			t.Errorf("list with token %q = %d, want 401", tok, got)
		}
		if got := adminCall(t, "DELETE", admin1+"/admin/sessions?sub=alice", tok, nil); got != http.StatusUnauthorized {
			t.Errorf("end with token %q = %d, want 401", tok, got)
		}
	}
	var onTraffic adminList
	if got := adminCall(t, "GET", s.Relays[0].URL+"/admin/sessions?sub=alice", adminToken, &onTraffic); got == http.StatusOK && onTraffic.Subject != "" {
		t.Errorf("the traffic listener serves the admin API: %d %+v", got, onTraffic)
	}

	// List through replica 1: alice's three sessions, by the ids of their
	// tickets.
	var list adminList
	if got := adminCall(t, "GET", admin1+"/admin/sessions?sub=alice", adminToken, &list); got != http.StatusOK {
		t.Fatalf("list = %d", got)
	}
	var ids, want []string
	for _, sess := range list.Sessions {
		ids = append(ids, sess.ID)
		if sess.UserAgent != "other" || sess.CreatedAt.IsZero() || !sess.ExpiresAt.After(time.Now()) {
			t.Errorf("session %+v: want user agent \"other\" (Go's client), a creation time and a future expiry", sess)
		}
	}
	for _, a := range alice {
		want = append(want, adminSessionID(t, a.Ticket))
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("listed ids %q, want alice's %q", ids, want)
	}

	// A session's record and its admin entry stay within 2 KiB of Redis.
	rdb := s.Redis.Client(t)
	for _, a := range alice {
		sum := sha256.Sum256(redisTicketID(t, a.Ticket))
		tag := "{" + base64.RawURLEncoding.EncodeToString(sum[:]) + "}"
		var total int64
		for _, k := range []string{redisKeyPrefix + "s:" + tag, redisKeyPrefix + "a:" + tag} {
			n, err := rdb.MemoryUsage(t.Context(), k, 0).Result()
			if err != nil {
				t.Fatalf("MEMORY USAGE %s: %v", k, err)
			}
			total += n
		}
		if total > 2048 {
			t.Errorf("record and admin entry use %d bytes of Redis, want ≤ 2048", total)
		}
		t.Logf("record and admin entry: %d bytes of Redis", total)
	}

	// End alice's first session through replica 0.
	var ended adminEnded
	if got := adminCall(t, "DELETE", admin0+"/admin/sessions/"+adminSessionID(t, alice[0].Ticket)+"?sub=alice", adminToken, &ended); got != http.StatusOK || ended != (adminEnded{1, 1, 0}) {
		t.Fatalf("end one = %d %+v, want 200 ended 1 revoked 1", got, ended)
	}
	took := wantStatusEverywhere(t, s, alice[0].Ticket, http.StatusUnauthorized, time.Second)
	t.Logf("the ended session answered 401 on both replicas %s after the call", took)
	for i, a := range alice[1:] {
		wantStatusEverywhere(t, s, a.Ticket, http.StatusOK, 0)
		if !secIntrospect(t, s.OP, aliceRTs[i+1]) {
			t.Errorf("alice's session %d's refresh token is inactive after another session ended", i+1)
		}
	}
	if secIntrospect(t, s.OP, aliceRTs[0]) {
		t.Errorf("the ended session's refresh token is still active at the OP")
	}
	if got := adminCall(t, "GET", admin0+"/admin/sessions?sub=alice", adminToken, &list); got != http.StatusOK || len(list.Sessions) != 2 {
		t.Errorf("list after ending one = %d, %d sessions; want 2", got, len(list.Sessions))
	}

	// End all of alice's through replica 1; bob is untouched.
	if got := adminCall(t, "DELETE", admin1+"/admin/sessions?sub=alice", adminToken, &ended); got != http.StatusOK || ended != (adminEnded{2, 2, 0}) {
		t.Fatalf("end all of alice = %d %+v, want 200 ended 2 revoked 2", got, ended)
	}
	for i, a := range alice {
		wantStatusEverywhere(t, s, a.Ticket, http.StatusUnauthorized, time.Second)
		if secIntrospect(t, s.OP, aliceRTs[i]) {
			t.Errorf("alice's refresh token %d is still active", i)
		}
	}
	wantStatusEverywhere(t, s, bob.Ticket, http.StatusOK, 0)
	if !secIntrospect(t, s.OP, bobRTs[0]) {
		t.Errorf("bob's refresh token is inactive after alice's sessions ended")
	}
	var bobs adminList
	if adminCall(t, "GET", admin0+"/admin/sessions?sub=bob", adminToken, &bobs); len(bobs.Sessions) != 1 {
		t.Errorf("bob has %d sessions listed, want 1", len(bobs.Sessions))
	}

	// The kill switch, pulled on replica 1, ends bob's session on both
	// replicas: each reads the kill instant at most a second after its
	// last read (the figure is logged; the bound leaves room for a loaded
	// machine). A login afterwards works.
	var killed struct {
		At time.Time `json:"ended_sessions_created_before"`
	}
	if got := adminCall(t, "POST", admin1+"/admin/sessions/end-all", adminToken, &killed); got != http.StatusOK || killed.At.IsZero() {
		t.Fatalf("end-all = %d %+v", got, killed)
	}
	took = wantStatusEverywhere(t, s, bob.Ticket, http.StatusUnauthorized, 3*time.Second)
	t.Logf("the kill switch ended bob's session on both replicas %s after the call", took)
	again := redisLogin(t, s, "bob")
	wantStatusEverywhere(t, s, again.Ticket, http.StatusOK, 0)

	var logs string
	for _, r := range s.Relays {
		out, _ := r.Proc.log.snapshot()
		logs += out
	}
	for _, re := range []string{
		`msg="admin: end_session" audit=true action=end_session remote_addr=\S+ actor=e2e subject=alice session=\S+ ended=1 revoked=1 revoke_failed=0 not_revocable=0`,
		`msg="admin: end_subject_sessions" audit=true action=end_subject_sessions remote_addr=\S+ actor=e2e subject=alice session="" ended=2 revoked=2 revoke_failed=0 not_revocable=0`,
		`msg="admin: end_all_sessions" audit=true action=end_all_sessions remote_addr=\S+ actor=e2e created_before=`,
	} {
		if !regexp.MustCompile(re).MatchString(logs) {
			t.Errorf("no audit line matches %s", re)
		}
	}
	for i, r := range s.Relays {
		out, _ := r.Proc.log.snapshot()
		for _, rt := range append(aliceRTs, bobRTs...) {
			if strings.Contains(out, rt) {
				t.Errorf("replica %d logged a refresh token", i)
			}
		}
	}
}

// TestAdminAPIWithoutEscrow drives the admin API as configured by default
// (a token file, no admin.escrow) on two replicas over Redis against the
// real OP: ending one of alice's sessions makes its cookie answer 401 on
// both replicas and is reported not revocable (no session key was kept to
// read its refresh token, which stays active at the OP), and her other
// session lives on; the audit line counts it.
func TestAdminAPIWithoutEscrow(t *testing.T) {
	t.Parallel()
	requireBinaries(t)
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startRedisStackWith(t, redisStackOptions{AccessTTL: 5 * time.Minute}, func(_ *stack, _ int, yaml string) string {
		return yaml + fmt.Sprintf("admin:\n  token_file: %q\n", tokenFile)
	})
	alice := []redisSession{redisLogin(t, s, "alice"), redisLogin(t, s, "alice")}
	rts := secTokens(t, s.OP, "alice").RefreshTokens
	if len(rts) != 2 {
		t.Fatalf("OP issued %d refresh tokens to alice, want 2", len(rts))
	}
	admin0, admin1 := s.Relays[0].AdminURL, s.Relays[1].AdminURL

	var list adminList
	if got := adminCall(t, "GET", admin1+"/admin/sessions?sub=alice", adminToken, &list); got != http.StatusOK || len(list.Sessions) != 2 {
		t.Fatalf("list = %d, %d sessions; want 200 and 2", got, len(list.Sessions))
	}
	var ended struct {
		Ended, Revoked, RevokeFailed int
		NotRevocable                 int `json:"not_revocable"`
	}
	target := adminSessionID(t, alice[0].Ticket)
	if got := adminCall(t, "DELETE", admin0+"/admin/sessions/"+target+"?sub=alice", adminToken, &ended); got != http.StatusOK || ended.Ended != 1 || ended.Revoked != 0 || ended.NotRevocable != 1 {
		t.Fatalf("end one = %d %+v, want 200, ended 1, revoked 0, not revocable 1", got, ended)
	}
	wantStatusEverywhere(t, s, alice[0].Ticket, http.StatusUnauthorized, time.Second)
	wantStatusEverywhere(t, s, alice[1].Ticket, http.StatusOK, 0)
	if !secIntrospect(t, s.OP, rts[0]) {
		t.Errorf("the ended session's refresh token was revoked, though no key was escrowed to read it")
	}
	if got := adminCall(t, "GET", admin0+"/admin/sessions?sub=alice", adminToken, &list); got != http.StatusOK || len(list.Sessions) != 1 {
		t.Errorf("list after ending one = %d, %d sessions; want 1", got, len(list.Sessions))
	}
	var logs string
	for _, r := range s.Relays {
		out, _ := r.Proc.log.snapshot()
		logs += out
	}
	if re := `msg="admin: end_session" audit=true action=end_session remote_addr=\S+ actor=e2e subject=alice session=` + target + ` ended=1 revoked=0 revoke_failed=0 not_revocable=1`; !regexp.MustCompile(re).MatchString(logs) {
		t.Errorf("no audit line matches %s", re)
	}
}
