package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/redistest"
)

// redisStackOptions shape a stack of several tokenrelay replicas sharing one
// Redis.
type redisStackOptions struct {
	Replicas     int           // default 2
	AccessTTL    time.Duration // the OP's access token lifetime
	RefreshAhead time.Duration // default 1s
	OpTimeout    time.Duration // session.redis.op_timeout (see stackOptions.RedisOpTimeout)
}

// redisStack is an OP, the sample API, a redis-server with appendonly on,
// and several tokenrelay replicas with the same session secret on that
// Redis. Logins go through Relays[0], whose URL is the redirect URI the OP
// knows and every replica's public URL; every replica serves every session.
// /api/ goes to the API directly (Tap is nil), and the replicas log at info.
type redisStack struct {
	*stack
	Redis *redistest.Server
}

func startRedisStack(t *testing.T, o redisStackOptions) *redisStack {
	t.Helper()
	return startRedisStackWith(t, o, nil)
}

// startRedisStackWith is startRedisStack with each replica's configuration
// edited by configure (nil: as generated).
func startRedisStackWith(t *testing.T, o redisStackOptions, configure func(s *stack, i int, yaml string) string) *redisStack {
	t.Helper()
	requireBinaries(t)
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	rdb := redistest.Start(t, redistest.Options{AppendOnly: true})
	return &redisStack{
		Redis: rdb,
		stack: startStack(t, stackOptions{
			AccessTTL:       o.AccessTTL,
			RefreshAhead:    o.RefreshAhead,
			Replicas:        o.Replicas,
			RedisAddr:       rdb.Addr,
			RedisOpTimeout:  o.OpTimeout,
			SharedPublicURL: true,
			DirectAPI:       true,
			LogLevel:        "info",
			// The Redis tests assert the OP's counters themselves.
			AllowInvalidGrant: true,
			Configure:         configure,
		}),
	}
}

// redisSession is a logged-in user, as the tests drive it: the cookie's
// ticket sent by hand, so any replica can be addressed with one client.
type redisSession struct {
	User   string
	Ticket string
	// Login is the whoami answer at the end of the login (return_to
	// /api/whoami through replica 0).
	Login whoamiAnswer
}

// redisLogin logs user in through replica 0 and returns the session.
func redisLogin(t *testing.T, s *redisStack, user string) redisSession {
	t.Helper()
	b := newBrowser(t)
	res := b.login(t, s.Relays[0].URL, "/api/whoami", user)
	sess := redisSession{User: user, Login: decodeWhoami(t, res.Final)}
	for _, raw := range res.Callback.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(raw); err == nil && c.Name == "__Host-tokenrelay" {
			sess.Ticket = c.Value
		}
	}
	if len(sess.Ticket) != 43 {
		t.Fatalf("login %s: no session ticket in %q", user, res.Callback.Header.Values("Set-Cookie"))
	}
	return sess
}

// redisTicketID returns the session id half of a ticket (16 bytes id, 16
// bytes key, base64url).
func redisTicketID(t *testing.T, ticket string) []byte {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(ticket)
	if err != nil || len(raw) != 32 {
		t.Fatalf("ticket: %d bytes, %v; want 32", len(raw), err)
	}
	return raw[:16]
}

// redisCall is one API call through a replica.
type redisCall struct {
	Status  int
	Header  http.Header
	Body    []byte
	Elapsed time.Duration
	Err     error
}

// redisGet sends GET url with the session's cookie and reads the answer.
func redisGet(client *http.Client, url, ticket string) redisCall {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return redisCall{Err: err}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if ticket != "" {
		req.Header.Set("Cookie", "__Host-tokenrelay="+ticket)
	}
	began := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return redisCall{Err: err, Elapsed: time.Since(began)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return redisCall{Status: resp.StatusCode, Header: resp.Header, Body: body, Elapsed: time.Since(began), Err: err}
}

// whoami decodes a 200 whoami answer, or reports why it is not one.
func (c redisCall) whoami() (whoamiAnswer, error) {
	var w whoamiAnswer
	if c.Err != nil {
		return w, c.Err
	}
	if c.Status != http.StatusOK {
		return w, fmt.Errorf("status %d, body %s", c.Status, c.Body)
	}
	if err := json.Unmarshal(c.Body, &w); err != nil {
		return w, fmt.Errorf("body %q: %w", c.Body, err)
	}
	return w, nil
}

// redisLoadClient is a client for many concurrent calls to a few loopback
// hosts.
func redisLoadClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{
		MaxIdleConns:        2000,
		MaxIdleConnsPerHost: 1000,
		IdleConnTimeout:     30 * time.Second,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// redisPercentile returns the p-th percentile (nearest rank) of sorted d.
func redisPercentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d))*p/100+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func redisSortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}

// redisLoginAll logs users in with at most par logins at once. A failed
// login ends its own goroutine (t.Fatalf is runtime.Goexit there; the
// deferred releases still run) and the test stops once all have returned.
func redisLoginAll(t *testing.T, s *redisStack, users []string, par int, after func(i int, sess redisSession)) []redisSession {
	t.Helper()
	out := make([]redisSession, len(users))
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = redisLogin(t, s, u)
			if after != nil {
				after(i, out[i])
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// redisMetrics scrapes a replica's /metrics and returns every sample of the
// named metric families, keyed by the series as printed
// (`name{label="v"}`).
func redisMetrics(t *testing.T, adminURL string, names ...string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatalf("GET %s/metrics: %v", adminURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d, %v", adminURL, resp.StatusCode, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(series, "{")
		for _, n := range names {
			if name == n {
				var v float64
				if _, err := fmt.Sscan(value, &v); err != nil {
					t.Fatalf("metrics line %q: %v", line, err)
				}
				out[series] = v
			}
		}
	}
	return out
}

// redisOPSID returns the one sid the OP holds for account (GET /__tokens).
func redisOPSID(t *testing.T, o *op, account string) string {
	t.Helper()
	resp, err := o.client.Get(o.Issuer + "/__tokens?account=" + url.QueryEscape(account))
	if err != nil {
		t.Fatalf("op tokens: %v", err)
	}
	defer resp.Body.Close()
	var v struct {
		SIDs []string `json:"sids"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("op tokens for %s: status %d, %v", account, resp.StatusCode, err)
	}
	if len(v.SIDs) != 1 {
		t.Fatalf("the OP holds %d sids for %s, want 1", len(v.SIDs), account)
	}
	return v.SIDs[0]
}

// redisIndexKey is the Redis key of the back-channel index of a sid or sub
// ("sid" or "sub") of the issuer, as the session package builds it.
func redisIndexKey(kind, issuer, value string) string {
	sum := sha256.Sum256([]byte(issuer + "\x00" + value))
	return redisKeyPrefix + "ix:" + kind + ":" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// redisRecordKey is the Redis key of the record of the session a ticket
// names, without the prefix when bare is set (index members are bare).
func redisRecordKey(t *testing.T, ticket string, bare bool) string {
	t.Helper()
	sum := sha256.Sum256(redisTicketID(t, ticket))
	k := "s:{" + base64.RawURLEncoding.EncodeToString(sum[:]) + "}"
	if bare {
		return k
	}
	return redisKeyPrefix + k
}
