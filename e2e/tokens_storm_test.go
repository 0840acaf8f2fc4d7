package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/redistest"
)

// TestRedisTwoResourcesStorm: two tokenrelay replicas share one Redis; 50
// users each use two APIs with their own audiences (resource indicators),
// whose tokens come from the session's one refresh token at the real OP,
// which rotates refresh tokens and revokes the grant at a reuse. Once
// every token has expired, 50 sessions × 20 concurrent requests, spread
// over both replicas and both APIs, make exactly one refresh per session
// and resource (the two resources' refreshes of a session run one after
// the other and each spends the refresh token the other saved): no
// invalid_grant, no reuse, every request served with its API's own token,
// one token per session and resource.
func TestRedisTwoResourcesStorm(t *testing.T) {
	t.Parallel()
	const (
		nSessions  = 50
		perSession = 20
		ttl        = 10 * time.Second
		ahead      = time.Second
	)
	rdb := redistest.Start(t, redistest.Options{AppendOnly: true})
	apis := map[string]string{} // resource → the demo API that wants it
	s := startStack(t, stackOptions{
		AccessTTL: ttl, RefreshAhead: ahead, Replicas: 2, RedisAddr: rdb.Addr, RedisOpTimeout: 8 * time.Second, SharedPublicURL: true,
		DirectAPI: true, LogLevel: "info", AllowInvalidGrant: true,
		OPArgs: []string{"--resources=" + resOrders + "," + resBilling, "--unbounded-store"},
		Configure: func(s *stack, i int, yaml string) string {
			if i == 0 {
				for _, res := range []string{resOrders, resBilling} {
					api := startProcess(t, "api-"+res[len("urn:tokenrelay:"):], bins.root, nil, bins.api, "-listen=127.0.0.1:0", "-issuer="+s.OP.Issuer, "-audience="+res)
					apis[res] = api.waitOutput(t, regexpAPIReady, 30*time.Second)[1]
					waitReady(t, api, apis[res]+"/healthz", 10*time.Second)
				}
			}
			return routesYAML(t, yaml, fmt.Sprintf(`  - {path: /orders/, upstream: %q, resource: %q, strip_prefix: true}
  - {path: /billing/, upstream: %q, resource: %q, strip_prefix: true}
  - {path: /, upstream: %q, auth: none}
`, apis[resOrders], resOrders, apis[resBilling], resBilling, s.APIURL))
		},
	})
	a, b := s.Relays[0], s.Relays[1]
	client := redisLoadClient(t)
	paths := map[string]string{resOrders: "/orders/api/whoami", resBilling: "/billing/api/whoami"}

	// Log in through replica A (which obtains the orders token on the way
	// back), then take the billing token through replica B.
	tickets := make([]string, nSessions)
	var lastExp int64
	var mu sync.Mutex
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	began := time.Now()
	for i := range nSessions {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			user := fmt.Sprintf("resources-user-%02d", i)
			br := newBrowser(t)
			res := br.login(t, a.URL, paths[resOrders], user)
			ticket := sessionTicket(t, res)
			orders := decodeWhoami(t, res.Final)
			billing, err := redisGet(client, b.URL+paths[resBilling], ticket).whoami()
			if err != nil || orders.Sub != user || billing.Sub != user {
				t.Errorf("%s: orders %+v, billing %+v (%v)", user, orders, billing, err)
				return
			}
			mu.Lock()
			tickets[i] = ticket
			lastExp = max(lastExp, orders.Exp, billing.Exp)
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d logins and %d first tokens over 2 replicas: %s", nSessions, 2*nSessions, time.Since(began).Round(time.Millisecond))

	waitUntil(t, time.Unix(lastExp, 0).Add(100*time.Millisecond), ttl+30*time.Second)
	s.OP.Reset(t)

	type result struct {
		res string
		who whoamiAnswer
		err error
	}
	results := make([][]result, nSessions)
	start := make(chan struct{})
	for i := range nSessions {
		results[i] = make([]result, perSession)
		for j := range perSession {
			relay := s.Relays[j%2]
			res := []string{resOrders, resBilling}[(j/2)%2]
			wg.Go(func() {
				<-start
				who, err := redisGet(client, relay.URL+paths[res], tickets[i]).whoami()
				results[i][j] = result{res, who, err}
			})
		}
	}
	burst := time.Now()
	close(start)
	wg.Wait()
	wall := time.Since(burst)
	st := s.OP.Stats(t)

	failed := 0
	for i := range nSessions {
		jtis := map[string]map[string]bool{resOrders: {}, resBilling: {}}
		for j, r := range results[i] {
			if r.err != nil {
				if failed++; failed <= 10 {
					t.Errorf("session %d request %d (%s): %v", i, j, r.res, r.err)
				}
				continue
			}
			jtis[r.res][r.who.JTI] = true
		}
		for res, set := range jtis {
			if len(set) != 1 {
				t.Errorf("session %d, %s: %d different tokens in the storm, want 1", i, res, len(set))
			}
		}
	}
	hint := ""
	if wall > ttl-ahead {
		hint = fmt.Sprintf(" (the storm took %s, longer than a new token stays fresh: inconclusive)", wall)
	}
	if want := 2 * nSessions; st.RefreshSuccess != want || st.RefreshError != 0 || st.RefreshConsumed != want {
		t.Errorf("storm: the OP counted %d refreshes, %d failed, %d refresh tokens rotated away; want %d, 0, %d%s",
			st.RefreshSuccess, st.RefreshError, st.RefreshConsumed, want, want, hint)
	}
	if st.InvalidGrant != 0 || st.RefreshReused != 0 || st.GrantsRevoked != 0 {
		t.Errorf("storm: invalid_grant %d, reused refresh tokens %d, revoked grants %d; want 0 each", st.InvalidGrant, st.RefreshReused, st.GrantsRevoked)
	}
	t.Logf("storm: %d sessions × %d requests over 2 replicas and 2 resources: %d refreshes at the OP, %d failed requests, wall %s",
		nSessions, perSession, st.RefreshSuccess, failed, wall.Round(time.Millisecond))

	// What a session with three JWT access tokens (the login's and two
	// resources') costs Redis.
	rc := rdb.Client(t)
	var most int64
	for _, tk := range tickets {
		n, err := rc.MemoryUsage(context.Background(), redisRecordKey(t, tk, false)).Result()
		if err != nil {
			t.Fatalf("MEMORY USAGE: %v", err)
		}
		most = max(most, n)
	}
	t.Logf("the largest session record takes %d bytes of Redis (MEMORY USAGE)", most)
	if most > 2048 {
		t.Errorf("a session record with two resources' tokens takes %d bytes of Redis, want at most 2 KiB", most)
	}
}

// sessionTicket is the session ticket a login set.
func sessionTicket(t *testing.T, res loginResult) string {
	t.Helper()
	for _, raw := range res.Callback.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(raw); err == nil && c.Name == "__Host-tokenrelay" {
			return c.Value
		}
	}
	t.Fatalf("no session ticket in %q", res.Callback.Header.Values("Set-Cookie"))
	return ""
}
