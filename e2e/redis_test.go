package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRedisTwoReplicasRefreshStorm: two tokenrelay processes share
// one Redis. 50 users log in through replica A; each cookie works on replica
// B too. Once every access token has expired, 50 sessions × 20 concurrent
// requests alternate between the replicas: the OP sees exactly one refresh
// per session and no invalid_grant, every request succeeds, and all of a
// session's requests carry the same new token. The Redis keys name no
// session id and a session record stays within 2 KiB.
func TestRedisTwoReplicasRefreshStorm(t *testing.T) {
	t.Parallel()
	const (
		nSessions  = 50
		perSession = 20
		ttl        = 10 * time.Second
		ahead      = time.Second
	)
	s := startRedisStack(t, redisStackOptions{Replicas: 2, AccessTTL: ttl, RefreshAhead: ahead, OpTimeout: 8 * time.Second})
	a, b := s.Relays[0], s.Relays[1]
	client := redisLoadClient(t)

	users := make([]string, nSessions)
	for i := range users {
		users[i] = fmt.Sprintf("storm-user-%02d", i)
	}
	onB := make([]redisCall, nSessions)
	began := time.Now()
	sessions := redisLoginAll(t, s, users, 8, func(i int, sess redisSession) {
		onB[i] = redisGet(client, b.URL+"/api/whoami", sess.Ticket)
	})
	t.Logf("%d logins through replica A (8 at a time): %s", nSessions, time.Since(began).Round(time.Millisecond))

	// The cookie replica A set opens the session on replica B, which
	// forwards the same token: no refresh happened before the storm.
	var lastExp int64
	for i, sess := range sessions {
		if sess.Login.Sub != sess.User {
			t.Errorf("login %s: the API saw sub %q", sess.User, sess.Login.Sub)
		}
		got, err := onB[i].whoami()
		if err != nil {
			t.Fatalf("session %s on replica B: %v", sess.User, err)
		}
		if got.Sub != sess.User || got.JTI != sess.Login.JTI {
			t.Errorf("session %s on replica B: sub %q jti %q, want sub %q and the login's token (jti %q)",
				sess.User, got.Sub, got.JTI, sess.User, sess.Login.JTI)
		}
		lastExp = max(lastExp, sess.Login.Exp)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Wait for every token's own exp (whole seconds) to pass.
	waitUntil(t, time.Unix(lastExp, 0).Add(100*time.Millisecond), ttl+30*time.Second)
	s.OP.Reset(t)

	results, wall := redisBurst(client, s, sessions, perSession)
	st := s.OP.Stats(t)

	lat := make([]time.Duration, 0, nSessions*perSession)
	failed := 0
	for i, sess := range sessions {
		jtis := map[string]int{}
		for j, r := range results[i] {
			lat = append(lat, r.call.Elapsed)
			if r.err != nil {
				failed++
				if failed <= 10 {
					t.Errorf("storm: session %s request %d (replica %c): %v", sess.User, j, 'A'+(i*perSession+j)%2, r.err)
				}
				continue
			}
			if r.who.Sub != sess.User {
				t.Errorf("storm: session %s request %d: the API saw sub %q", sess.User, j, r.who.Sub)
			}
			jtis[r.who.JTI]++
		}
		if len(jtis) != 1 {
			t.Errorf("storm: session %s: its %d requests carried %d different tokens (jti counts %v), want 1", sess.User, perSession, len(jtis), jtis)
		}
		if jtis[sess.Login.JTI] != 0 {
			t.Errorf("storm: session %s: the expired login token (jti %s) reached the API", sess.User, sess.Login.JTI)
		}
	}
	if failed != 0 {
		t.Errorf("storm: %d of %d requests failed, want 0", failed, nSessions*perSession)
	}
	hint := ""
	if wall > ttl-ahead {
		hint = fmt.Sprintf(" (the storm took %s, longer than a new token stays fresh: inconclusive)", wall)
	}
	if st.RefreshSuccess != nSessions || st.RefreshError != 0 {
		t.Errorf("storm: the OP counted %d refreshes and %d failed refreshes, want %d and 0%s", st.RefreshSuccess, st.RefreshError, nSessions, hint)
	}
	if st.InvalidGrant != 0 || st.RefreshReused != 0 || st.GrantsRevoked != 0 {
		t.Errorf("storm: the OP answered invalid_grant %d times, saw %d reused refresh tokens and revoked %d grants, want 0, 0, 0",
			st.InvalidGrant, st.RefreshReused, st.GrantsRevoked)
	}
	if st.RefreshConsumed != nSessions {
		t.Errorf("storm: the OP rotated away %d refresh tokens, want %d", st.RefreshConsumed, nSessions)
	}
	t.Logf("storm: %d sessions × %d concurrent requests over 2 replicas: %d refreshes at the OP, wall %s, latency %s",
		nSessions, perSession, st.RefreshSuccess, wall.Round(time.Millisecond), redisLatency(lat))

	// tokenrelay's own count: the replicas together called the token
	// endpoint once per session, and every call succeeded.
	byResult := map[string]float64{}
	for _, r := range s.Relays {
		m := redisMetrics(t, r.AdminURL, "tokenrelay_refresh_total", "tokenrelay_refresh_shared_total", "tokenrelay_store_errors_total",
			"tokenrelay_refresh_duration_seconds_sum", "tokenrelay_refresh_duration_seconds_count",
			"tokenrelay_refresh_lock_wait_seconds_sum", "tokenrelay_refresh_lock_wait_seconds_count")
		for _, res := range []string{"success", "rejected", "failed", "lost_race"} {
			byResult[res] += m[`tokenrelay_refresh_total{result="`+res+`"}`]
		}
		for series, v := range m {
			if strings.HasPrefix(series, "tokenrelay_store_errors_total") && v != 0 {
				t.Errorf("replica %s: %s = %v, want 0", r.URL, series, v)
			}
		}
		t.Logf("replica %s: refresh_total success %v lost_race %v, shared %v, token endpoint mean %s over %v calls, lock wait mean %s over %v waits",
			r.URL, m[`tokenrelay_refresh_total{result="success"}`], m[`tokenrelay_refresh_total{result="lost_race"}`],
			m["tokenrelay_refresh_shared_total"],
			redisMean(m["tokenrelay_refresh_duration_seconds_sum"], m["tokenrelay_refresh_duration_seconds_count"]), m["tokenrelay_refresh_duration_seconds_count"],
			redisMean(m["tokenrelay_refresh_lock_wait_seconds_sum"], m["tokenrelay_refresh_lock_wait_seconds_count"]), m["tokenrelay_refresh_lock_wait_seconds_count"])
	}
	if byResult["success"] != nSessions || byResult["rejected"] != 0 || byResult["failed"] != 0 {
		t.Errorf("the replicas' tokenrelay_refresh_total sums to success %v, rejected %v, failed %v; want %d, 0, 0",
			byResult["success"], byResult["rejected"], byResult["failed"], nSessions)
	}
	if t.Failed() {
		return
	}

	// After the storm both replicas forward each session's new token.
	for i, sess := range sessions {
		want := results[i][0].who.JTI
		for _, r := range []*relay{a, b} {
			got, err := redisGet(client, r.URL+"/api/whoami", sess.Ticket).whoami()
			if err != nil || got.JTI != want {
				t.Errorf("after the storm, session %s on %s: jti %q, error %v; want the storm's token %q", sess.User, r.URL, got.JTI, err, want)
			}
		}
	}
	if got := s.OP.Stats(t).RefreshSuccess; got != nSessions {
		t.Errorf("after the storm the OP counted %d refreshes, want still %d", got, nSessions)
	}

	// The same burst with fresh tokens, for comparison: what the storm
	// costs over the steady state on this machine.
	fresh, freshWall := redisBurst(client, s, sessions, perSession)
	lat = lat[:0]
	for i := range fresh {
		for _, r := range fresh[i] {
			if r.err != nil {
				t.Errorf("fresh burst: %v", r.err)
			}
			lat = append(lat, r.call.Elapsed)
		}
	}
	t.Logf("the same burst with fresh tokens: wall %s, latency %s", freshWall.Round(time.Millisecond), redisLatency(lat))
	if got := s.OP.Stats(t).RefreshSuccess; got != nSessions {
		t.Errorf("after a burst with fresh tokens the OP counted %d refreshes, want still %d", got, nSessions)
	}

	redisCheckKeys(t, s, sessions)
}

// redisResult is one request of a burst.
type redisResult struct {
	call redisCall
	who  whoamiAnswer
	err  error
}

// redisBurst sends perSession concurrent GET /api/whoami for every session
// at once, request k of the burst to replica k mod len(s.Relays), and
// returns the results by session and the burst's wall time.
func redisBurst(client *http.Client, s *redisStack, sessions []redisSession, perSession int) ([][]redisResult, time.Duration) {
	results := make([][]redisResult, len(sessions))
	for i := range results {
		results[i] = make([]redisResult, perSession)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, sess := range sessions {
		for j := range perSession {
			relay := s.Relays[(i*perSession+j)%len(s.Relays)]
			wg.Go(func() {
				<-start
				c := redisGet(client, relay.URL+"/api/whoami", sess.Ticket)
				w, err := c.whoami()
				results[i][j] = redisResult{c, w, err}
			})
		}
	}
	began := time.Now()
	close(start)
	wg.Wait()
	return results, time.Since(began)
}

// redisLatency formats p50, p99 and max of d (sorted in place).
func redisLatency(d []time.Duration) string {
	if len(d) == 0 {
		return "n/a"
	}
	redisSortDurations(d)
	return fmt.Sprintf("p50 %s p99 %s max %s", redisPercentile(d, 50).Round(time.Microsecond),
		redisPercentile(d, 99).Round(time.Microsecond), d[len(d)-1].Round(time.Microsecond))
}

func redisMean(sum, count float64) time.Duration {
	if count == 0 {
		return 0
	}
	return time.Duration(sum / count * float64(time.Second)).Round(time.Microsecond)
}

// redisCheckKeys checks what Redis holds for the sessions: one record per
// session under the hash of its id, no key that carries a session id or a
// ticket in any common encoding, no record that carries a token, a subject
// or a token id in clear, no refresh lock left behind, and at most 2 KiB of
// Redis memory per record (MEMORY USAGE).
func redisCheckKeys(t *testing.T, s *redisStack, sessions []redisSession) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rdb := s.Redis.Client(t)

	var keys []string
	iter := rdb.Scan(ctx, 0, redisKeyPrefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN %s*: %v", redisKeyPrefix, err)
	}
	var records, locks []string
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, redisKeyPrefix+"s:"):
			records = append(records, k)
		case strings.HasPrefix(k, redisKeyPrefix+"l:"):
			locks = append(locks, k)
		}
	}
	if len(records) != len(sessions) {
		t.Errorf("Redis holds %d session records, want %d (keys: %d)", len(records), len(sessions), len(keys))
	}
	if len(locks) != 0 {
		t.Errorf("Redis still holds %d refresh locks after the storm, want 0: %q", len(locks), locks)
	}

	for _, sess := range sessions {
		id := redisTicketID(t, sess.Ticket)
		sum := sha256.Sum256(id)
		want := redisKeyPrefix + "s:{" + base64.RawURLEncoding.EncodeToString(sum[:]) + "}"
		if n, err := rdb.Exists(ctx, want).Result(); err != nil || n != 1 {
			t.Errorf("session %s: EXISTS %s = %d, %v; want 1", sess.User, want, n, err)
		}
		forms := []string{
			sess.Ticket,
			base64.RawURLEncoding.EncodeToString(id),
			base64.StdEncoding.EncodeToString(id),
			hex.EncodeToString(id),
		}
		for _, k := range keys {
			for _, f := range forms {
				if strings.Contains(k, f) || strings.Contains(strings.ToLower(k), f) {
					t.Errorf("key %q contains the session id or ticket of %s", k, sess.User)
				}
			}
			if strings.Contains(k, sess.User) {
				t.Errorf("key %q names the user %s", k, sess.User)
			}
		}
	}

	var total, largest int64
	for _, k := range records {
		val, err := rdb.Get(ctx, k).Bytes()
		if err != nil {
			t.Errorf("GET %s: %v", k, err)
			continue
		}
		for _, clear := range []string{"eyJ", "storm-user-", "example.test"} {
			if strings.Contains(string(val), clear) {
				t.Errorf("record %s holds %q in clear", k, clear)
			}
		}
		n, err := rdb.MemoryUsage(ctx, k, 0).Result()
		if err != nil {
			t.Errorf("MEMORY USAGE %s: %v", k, err)
			continue
		}
		total += n
		largest = max(largest, n)
		if n > 2048 {
			t.Errorf("MEMORY USAGE %s = %d bytes, want ≤ 2048", k, n)
		}
	}
	if len(records) > 0 {
		t.Logf("Redis: %d keys; %d session records, MEMORY USAGE mean %d B, max %d B (limit 2048)",
			len(keys), len(records), total/int64(len(records)), largest)
	}
}

// TestRedisOutage: while redis-server is down, requests that need
// a session get 503 store_unavailable with Retry-After, /readyz fails and
// /healthz does not; once Redis is back on the same port (its append-only
// file reloaded), /readyz recovers and the same sessions work again on both
// replicas. Then the back-channel index, itself reloaded from the
// append-only file, still works: the OP's logout token for one user's sid,
// sent to replica A, ends that session on both replicas and removes its
// record and sid index from Redis; the other user's session, record and
// index stay.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	s := startRedisStack(t, redisStackOptions{Replicas: 2, AccessTTL: 120 * time.Second})
	client := &http.Client{Timeout: 10 * time.Second}
	sessions := redisLoginAll(t, s, []string{"outage-ann", "outage-ben"}, 2, nil)

	statusOf := func(url string) int {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	s.Redis.Stop(t)
	// A replica serves the sessions its local cache holds until it learns
	// that Redis is gone, at most 80 ms after Redis last answered its
	// tracking connection (see docs/operations.md).
	waitUntil(t, time.Now().Add(crossReplicaBound), time.Second)

	for _, r := range s.Relays {
		for _, sess := range sessions {
			for _, path := range []string{"/api/whoami", "/.auth/session"} {
				c := redisGet(client, r.URL+path, sess.Ticket)
				if c.Err != nil {
					t.Fatalf("GET %s%s with Redis down: %v", r.URL, path, c.Err)
				}
				var body struct {
					Error   string `json:"error"`
					Message string `json:"message"`
				}
				jsonErr := json.Unmarshal(c.Body, &body)
				if c.Status != http.StatusServiceUnavailable || jsonErr != nil || body.Error != "store_unavailable" || body.Message == "" {
					t.Errorf("GET %s%s (%s) with Redis down = %d %s, want 503 {\"error\":\"store_unavailable\",\"message\":…}", r.URL, path, sess.User, c.Status, c.Body)
				}
				if got, want := c.Header.Get("Retry-After"), "1"; got != want {
					t.Errorf("GET %s with Redis down: Retry-After = %q, want %q", path, got, want)
				}
				if got := c.Header.Get("Content-Type"); !strings.HasPrefix(got, "application/json") {
					t.Errorf("GET %s with Redis down: Content-Type = %q, want application/json", path, got)
				}
				if got := c.Header.Values("Set-Cookie"); len(got) != 0 {
					t.Errorf("GET %s with Redis down: Set-Cookie %q, want none (the session is kept)", path, got)
				}
			}
		}
		if got, want := statusOf(r.AdminURL+"/readyz"), http.StatusServiceUnavailable; got != want {
			t.Errorf("%s/readyz with Redis down = %d, want %d", r.AdminURL, got, want)
		}
		if got, want := statusOf(r.AdminURL+"/healthz"), http.StatusOK; got != want {
			t.Errorf("%s/healthz with Redis down = %d, want %d", r.AdminURL, got, want)
		}
	}

	s.Redis.Restart(t)
	for _, r := range s.Relays {
		waitReady(t, r.Proc, r.AdminURL+"/readyz", 30*time.Second)
	}

	for _, r := range s.Relays {
		for _, sess := range sessions {
			got, err := redisGet(client, r.URL+"/api/whoami", sess.Ticket).whoami()
			if err != nil || got.Sub != sess.User || got.JTI != sess.Login.JTI {
				t.Errorf("after Redis came back, session %s on %s: sub %q jti %q, error %v; want sub %q with the login's token %q",
					sess.User, r.URL, got.Sub, got.JTI, err, sess.User, sess.Login.JTI)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Back-channel logout of ann's sid, through the index in Redis.
	ann, ben := sessions[0], sessions[1]
	ctx := t.Context()
	rdb := s.Redis.Client(t)
	annSID, benSID := redisOPSID(t, s.OP, ann.User), redisOPSID(t, s.OP, ben.User)
	annIndex, benIndex := redisIndexKey("sid", s.OP.Issuer, annSID), redisIndexKey("sid", s.OP.Issuer, benSID)
	for _, tt := range []struct {
		sess  redisSession
		index string
	}{{ann, annIndex}, {ben, benIndex}} {
		got, err := rdb.SMembers(ctx, tt.index).Result()
		if want := redisRecordKey(t, tt.sess.Ticket, true); err != nil || len(got) != 1 || got[0] != want {
			t.Fatalf("SMEMBERS of %s's sid index = %q, %v; want [%q]", tt.sess.User, got, err, want)
		}
	}
	s.OP.BackchannelLogout(t, ann.User, annSID)
	waitUntil(t, time.Now().Add(crossReplicaBound), time.Second)

	for _, r := range s.Relays {
		c := redisGet(client, r.URL+"/api/whoami", ann.Ticket)
		var body struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(c.Body, &body); c.Err != nil || err != nil || c.Status != http.StatusUnauthorized || body.Error != "login_required" {
			t.Errorf("%s's GET %s/api/whoami after back-channel logout = %d %s (%v), want 401 login_required", ann.User, r.URL, c.Status, c.Body, c.Err)
		}
		if got, err := redisGet(client, r.URL+"/api/whoami", ben.Ticket).whoami(); err != nil || got.Sub != ben.User {
			t.Errorf("%s's session on %s after %s's back-channel logout: sub %q, %v; want sub %q", ben.User, r.URL, ann.User, got.Sub, err, ben.User)
		}
	}
	for _, tt := range []struct {
		key  string
		want int64
	}{
		{redisRecordKey(t, ann.Ticket, false), 0},
		{annIndex, 0},
		{redisRecordKey(t, ben.Ticket, false), 1},
		{benIndex, 1},
	} {
		if got, err := rdb.Exists(ctx, tt.key).Result(); err != nil || got != tt.want {
			t.Errorf("EXISTS %s after the back-channel logout = %d, %v; want %d", tt.key, got, err, tt.want)
		}
	}

	if st := s.OP.Stats(t); st.RefreshSuccess+st.RefreshError != 0 || st.InvalidGrant != 0 {
		t.Errorf("the OP counted %d refreshes, %d failed, %d invalid_grant; want none", st.RefreshSuccess, st.RefreshError, st.InvalidGrant)
	}
	for _, r := range s.Relays {
		if out, _ := r.Proc.log.snapshot(); strings.Contains(out, "panic") {
			t.Errorf("%s's output mentions a panic (see %s)", r.Proc.name, r.Proc.logPath)
		}
	}
}
