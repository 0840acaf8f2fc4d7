package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/redistest"
)

// The fault-injection suite: each scenario runs the real binary, two
// replicas sharing a real Redis, the real OpenID Provider (rotating refresh
// tokens with reuse detection: a refresh token presented twice revokes the
// grant) behind a TCP relay that can hang, and steady load; it injects one
// fault and checks that no session is lost to it, that no refresh token is
// sent twice, that no request waits longer than its bound and that the
// upstream never gets an expired token. TestChaos prints one table row per
// scenario. Timings are scaled down (4 s tokens, refresh.timeout 2 s) so the
// suite runs in seconds; what matters is their order: a hang longer than
// refresh.timeout, shorter or longer than the lock.

const (
	chaosAccessTTL = 4 * time.Second  // the OP's access tokens
	chaosAhead     = time.Second      // refresh.ahead
	chaosTimeout   = 2 * time.Second  // refresh.timeout: the longest wait for a refresh
	chaosLockTTL   = 10 * time.Second // refresh.lock_ttl: a call may run 8 s in the background
	chaosBackoff   = time.Second      // refresh.failure_backoff
	chaosSessions  = 6
	// chaosWaitBound is the longest any request may take while the
	// provider misbehaves: refresh.timeout plus a second.
	chaosWaitBound = chaosTimeout + time.Second
	// chaosWrongSecret is a client secret the OP does not know.
	chaosWrongSecret = "not-the-client-secret"
)

// chaosRow is one line of the table.
type chaosRow struct {
	Scenario  string
	Requests  int
	Statuses  map[int]int
	P99, Max  time.Duration
	Refreshes int // refresh grants the OP answered with tokens
	Reuse     int // refresh tokens the OP saw twice
	Revoked   int // grants the OP revoked
	Lost      int // sessions that needed a new login at the end
}

func TestChaos(t *testing.T) {
	t.Parallel()
	requireBinaries(t)
	scenarios := []struct {
		name string
		run  func(t *testing.T) chaosRow
	}{
		{"provider-hang", chaosProviderHang},
		{"provider-hang-past-lock", chaosProviderHangPastLock},
		{"replica-dies-mid-refresh", chaosReplicaDies},
		{"wrong-client-secret", chaosWrongClientSecret},
		{"redis-stall", chaosRedisStall},
		{"upstream-always-401", chaosUpstream401},
	}
	var mu sync.Mutex
	var rows []chaosRow
	t.Run("scenarios", func(t *testing.T) {
		for _, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) {
				t.Parallel()
				row := sc.run(t)
				mu.Lock()
				rows = append(rows, row)
				mu.Unlock()
			})
		}
	})
	slices.SortFunc(rows, func(a, b chaosRow) int { return strings.Compare(a.Scenario, b.Scenario) })
	t.Log("\n" + chaosTable(rows))
}

// chaosTable renders the rows as a Markdown table.
func chaosTable(rows []chaosRow) string {
	var b strings.Builder
	b.WriteString("| scenario | requests | statuses | p99 | max | refreshes | reuse | revoked | sessions lost |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		codes := make([]int, 0, len(r.Statuses))
		for c := range r.Statuses {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		var st []string
		for _, c := range codes {
			st = append(st, fmt.Sprintf("%d×%d", r.Statuses[c], c))
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %d | %d | %d | %d |\n", r.Scenario, r.Requests, strings.Join(st, " "),
			r.P99.Round(time.Millisecond), r.Max.Round(time.Millisecond), r.Refreshes, r.Reuse, r.Revoked, r.Lost)
	}
	return b.String()
}

// chaosOptions shape one scenario's stack.
type chaosOptions struct {
	// wrongSecret gives replica 1 a client secret the OP refuses.
	wrongSecret bool
	// opTimeout is session.redis.op_timeout (default: tokenrelay's).
	opTimeout time.Duration
	// routes are extra routes (YAML list items), before the stack's own.
	routes string
}

// chaosEnv is one scenario's running stack, its sessions and its record of
// every request.
type chaosEnv struct {
	t      *testing.T
	name   string
	s      *stack
	redis  *redisStack
	relay  *tcpRelay
	client *http.Client
	// configs are the replicas' configurations with the right client
	// secret.
	configs []string
	// sessions are the logged-in users.
	sessions []redisSession
	before   opStats

	mu    sync.Mutex
	calls []chaosCall // guarded by mu
}

// chaosCall is one request's outcome.
type chaosCall struct {
	session, replica int
	status           int
	code             string // the JSON error code, if any
	elapsed          time.Duration
}

// startChaos starts the stack (the OP's token endpoint behind a relay) and
// logs chaosSessions users in.
func startChaos(t *testing.T, name string, o chaosOptions) *chaosEnv {
	t.Helper()
	e := &chaosEnv{t: t, name: name, client: redisLoadClient(t)}
	rdb := redistest.Start(t, redistest.Options{})
	e.s = startStack(t, stackOptions{
		AccessTTL:       chaosAccessTTL,
		RefreshAhead:    chaosAhead,
		Replicas:        2,
		RedisAddr:       rdb.Addr,
		SharedPublicURL: true,
		LogLevel:        "info",
		Configure: func(s *stack, i int, yaml string) string {
			if e.relay == nil {
				u, err := url.Parse(s.OP.Issuer)
				if err != nil {
					t.Fatal(err)
				}
				e.relay = startTCPRelay(t, u.Host)
			}
			good := e.configure(yaml, o)
			e.configs = append(e.configs, good)
			if o.wrongSecret && i == 1 {
				return chaosEdit(t, good, fmt.Sprintf("client_secret: %q", opClientSecret), fmt.Sprintf("client_secret: %q", chaosWrongSecret))
			}
			return good
		},
	})
	e.redis = &redisStack{stack: e.s, Redis: rdb}
	users := make([]string, chaosSessions)
	for i := range users {
		users[i] = fmt.Sprintf("chaos-%s-%d", name, i)
	}
	e.sessions = redisLoginAll(t, e.redis, users, 3, nil)
	e.before = e.s.OP.Stats(t)
	return e
}

// configure points the token endpoint at the relay and sets the scaled
// refresh timings.
func (e *chaosEnv) configure(yaml string, o chaosOptions) string {
	t := e.t
	yaml = chaosEdit(t, yaml, "  auth_method: client_secret_basic\n",
		fmt.Sprintf("  auth_method: client_secret_basic\n  token_endpoint: %q\n", "http://"+e.relay.Addr+"/token"))
	yaml = chaosEdit(t, yaml, "  timeout: 10s\n",
		fmt.Sprintf("  timeout: %s\n  lock_ttl: %s\n  failure_backoff: %s\n", chaosTimeout, chaosLockTTL, chaosBackoff))
	if o.opTimeout > 0 {
		yaml = chaosEdit(t, yaml, fmt.Sprintf("    key_prefix: %q\n", redisKeyPrefix),
			fmt.Sprintf("    key_prefix: %q\n    op_timeout: %s\n", redisKeyPrefix, o.opTimeout))
	}
	if o.routes != "" {
		yaml = chaosEdit(t, yaml, "routes:\n", "routes:\n"+o.routes)
	}
	return yaml
}

// chaosEdit replaces old with new in yaml, once, and fails when old is not
// there.
func chaosEdit(t *testing.T, yaml, old, new string) string {
	t.Helper()
	if !strings.Contains(yaml, old) {
		t.Fatalf("the generated configuration has no %q:\n%s", old, yaml)
	}
	return strings.Replace(yaml, old, new, 1)
}

// call sends one GET path through replica r for session i and records it.
func (e *chaosEnv) call(i, r int, path string) chaosCall {
	c := redisGet(e.client, e.s.Relays[r].URL+path, e.sessions[i].Ticket)
	out := chaosCall{session: i, replica: r, status: c.Status, elapsed: c.Elapsed}
	if c.Err != nil {
		out.status = -1
		out.code = c.Err.Error()
	} else if c.Status >= 400 {
		var body struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(c.Body, &body)
		out.code = body.Error
	}
	e.mu.Lock()
	e.calls = append(e.calls, out)
	e.mu.Unlock()
	return out
}

// load sends, for d, one /api/whoami request per session every period,
// alternating between the given replicas (both by default).
func (e *chaosEnv) load(d, period time.Duration, replicas ...int) {
	if len(replicas) == 0 {
		replicas = []int{0, 1}
	}
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range e.sessions {
		wg.Go(func() {
			// Sessions start spread over one period.
			time.Sleep(period * time.Duration(i) / time.Duration(len(e.sessions)))
			for n := 0; time.Now().Before(end) && n < int(d/period)+1; n++ {
				next := time.Now().Add(period)
				e.call(i, replicas[(i+n)%len(replicas)], "/api/whoami")
				time.Sleep(time.Until(next))
			}
		})
	}
	wg.Wait()
}

// lost asks every session once more through the given replicas (a few
// tries while the answer is 503) and counts the sessions that need a new
// login.
func (e *chaosEnv) lost(replicas ...int) int {
	n := 0
	for i := range e.sessions {
		status := 0
		for try := 0; try < 8; try++ {
			status = e.call(i, replicas[try%len(replicas)], "/api/whoami").status
			if status != http.StatusServiceUnavailable {
				break
			}
			time.Sleep(time.Second)
		}
		if status == http.StatusUnauthorized {
			n++
		} else if status != http.StatusOK {
			e.t.Errorf("session %d: final status %d, want 200 or 401", i, status)
		}
	}
	return n
}

// row summarises the scenario.
func (e *chaosEnv) row(scenario string, lost int) chaosRow {
	after := e.s.OP.Stats(e.t)
	e.mu.Lock()
	calls := slices.Clone(e.calls)
	e.mu.Unlock()
	r := chaosRow{
		Scenario:  scenario,
		Requests:  len(calls),
		Statuses:  map[int]int{},
		Refreshes: after.RefreshSuccess - e.before.RefreshSuccess,
		Reuse:     after.RefreshReused - e.before.RefreshReused,
		Revoked:   after.GrantsRevoked - e.before.GrantsRevoked,
		Lost:      lost,
	}
	var d []time.Duration
	for _, c := range calls {
		r.Statuses[c.status]++
		d = append(d, c.elapsed)
	}
	redisSortDurations(d)
	r.P99, r.Max = redisPercentile(d, 99), redisPercentile(d, 100)
	return r
}

// check asserts what every scenario must keep: no refresh token sent
// twice, no grant revoked, no request over bound, no transport error, and
// no token the upstream refused as expired.
func (e *chaosEnv) check(r chaosRow, bound time.Duration) {
	t := e.t
	if r.Reuse != 0 || r.Revoked != 0 {
		t.Errorf("the OP saw %d reused refresh tokens and revoked %d grants, want 0 and 0", r.Reuse, r.Revoked)
	}
	if st := e.s.OP.Stats(t); st.InvalidGrant != e.before.InvalidGrant {
		t.Errorf("the OP answered invalid_grant %d times, want 0", st.InvalidGrant-e.before.InvalidGrant)
	}
	if r.Max > bound {
		t.Errorf("a request took %s, longer than %s", r.Max, bound)
	}
	if n := r.Statuses[-1]; n != 0 {
		t.Errorf("%d requests failed without an answer", n)
	}
	for _, c := range e.s.Tap.Requests() {
		if c.Status == http.StatusUnauthorized {
			t.Errorf("the upstream refused a token tokenrelay forwarded (%s): expired or invalid", c.Path)
		}
	}
}

// endedUnknown sums, over the given replicas, the sessions ended because a
// refresh's outcome was unknown and the access token had expired.
func (e *chaosEnv) endedUnknown(replicas ...int) int {
	const series = `tokenrelay_sessions_ended_total{reason="unknown_outcome"}`
	n := 0.0
	for _, i := range replicas {
		n += redisMetrics(e.t, e.s.Relays[i].AdminURL, "tokenrelay_sessions_ended_total")[series]
	}
	return int(n)
}

// count returns how many recorded calls match.
func (e *chaosEnv) count(match func(chaosCall) bool) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.calls {
		if match(c) {
			n++
		}
	}
	return n
}

// chaosProviderHang: the provider hangs 6 s (longer than refresh.timeout,
// shorter than the lock) while both replicas serve steady load: it rotates
// each refresh token at once, and its answers are held at the relay.
// Requests with a valid token keep it, those with an expired one get 503
// within refresh.timeout, the hung calls complete in the background, and
// every session is back without a new login.
func chaosProviderHang(t *testing.T) chaosRow {
	e := startChaos(t, "hang", chaosOptions{})
	time.AfterFunc(3*time.Second, e.relay.down.hold)
	time.AfterFunc(9*time.Second, e.relay.release)
	e.load(16*time.Second, 250*time.Millisecond)
	r := e.row("provider hangs 6s (> refresh.timeout 2s, < lock_ttl 10s)", e.lost(0, 1))
	e.check(r, chaosWaitBound)
	if r.Lost != 0 {
		t.Errorf("%d sessions lost, want 0", r.Lost)
	}
	if n := r.Statuses[http.StatusServiceUnavailable]; n == 0 {
		t.Errorf("no request met the hang (no 503): the scenario did not test anything")
	}
	return r
}

// chaosProviderHangPastLock: the provider hangs 13 s, past the lock: it
// completes the calls (rotating refresh tokens) and its answers reach
// nobody, tokenrelay having given up on them. Their outcome is unknown: no
// refresh token is sent again, the sessions whose access token expired
// meanwhile end cleanly (401 session_expired), and nothing is revoked.
func chaosProviderHangPastLock(t *testing.T) chaosRow {
	e := startChaos(t, "pastlock", chaosOptions{})
	time.AfterFunc(2*time.Second, e.relay.down.hold)
	time.AfterFunc(15*time.Second, e.relay.release)
	e.load(22*time.Second, 250*time.Millisecond)
	r := e.row("provider hangs 13s (> lock_ttl 10s): answers lost", e.lost(0, 1))
	e.check(r, chaosWaitBound)
	if ended := e.endedUnknown(0, 1); ended != r.Lost {
		t.Errorf("%d sessions lost, %d ended for an unknown refresh outcome; want every lost one ended so", r.Lost, ended)
	}
	return r
}

// chaosReplicaDies: replica 1 sends its refreshes, the provider rotates the
// refresh tokens, and replica 1 is killed (SIGKILL) before the answers reach
// it. Replica 0 never sends those refresh tokens again: its requests wait
// at most refresh.timeout, and once the dead replica's locks lapse the
// sessions, whose refresh outcome is unknown and whose access tokens have
// expired, end cleanly.
func chaosReplicaDies(t *testing.T) chaosRow {
	e := startChaos(t, "crash", chaosOptions{})
	time.Sleep(chaosAccessTTL) // every access token has expired
	e.relay.down.hold()
	var wg sync.WaitGroup
	for i := range e.sessions {
		wg.Go(func() { e.call(i, 1, "/api/whoami") })
	}
	wg.Wait()
	want := e.before.RefreshSuccess + len(e.sessions)
	if !eventually(20*time.Second, 100*time.Millisecond, func() bool { return e.s.OP.Stats(t).RefreshSuccess >= want }) {
		t.Fatalf("the OP answered %d of %d refreshes", e.s.OP.Stats(t).RefreshSuccess-e.before.RefreshSuccess, len(e.sessions))
	}
	if err := e.s.Relays[1].Proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-e.s.Relays[1].Proc.exited
	e.relay.down.release()
	e.load(chaosLockTTL+2*time.Second, 250*time.Millisecond, 0)
	r := e.row("replica killed between the provider's answer and the save", e.lost(0))
	e.check(r, chaosWaitBound)
	if ended := e.endedUnknown(0); ended != r.Lost {
		t.Errorf("%d sessions lost, %d ended for an unknown refresh outcome; want every lost one ended so", r.Lost, ended)
	}
	return r
}

// chaosWrongClientSecret: replica 1 runs with a client secret the provider
// refuses (invalid_client). Its requests on expired tokens get 503
// provider_rejected_client, its readiness fails and its metric says so; no
// session ends; replica 0 keeps serving them; and once replica 1 runs with
// the right secret, the same cookies work on it again.
func chaosWrongClientSecret(t *testing.T) chaosRow {
	e := startChaos(t, "secret", chaosOptions{wrongSecret: true})
	time.Sleep(chaosAccessTTL) // every access token has expired
	for i := range e.sessions {
		if c := e.call(i, 1, "/api/whoami"); c.status != http.StatusServiceUnavailable || c.code != "provider_rejected_client" {
			t.Errorf("session %d on the misconfigured replica: %d %s, want 503 provider_rejected_client", i, c.status, c.code)
		}
	}
	bad := e.s.Relays[1]
	if resp, err := http.Get(bad.AdminURL + "/readyz"); err != nil {
		t.Errorf("/readyz of the misconfigured replica: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "not ready: client: unavailable\n" {
			t.Errorf("/readyz of the misconfigured replica = %d %q, want 503 \"not ready: client: unavailable\\n\"", resp.StatusCode, body)
		}
	}
	if m := redisMetrics(t, bad.AdminURL, "tokenrelay_provider_client_rejected"); m["tokenrelay_provider_client_rejected"] != 1 {
		t.Errorf("tokenrelay_provider_client_rejected = %v, want 1", m)
	}
	e.load(2*time.Second, 250*time.Millisecond, 0) // the good replica serves them all
	if n := e.count(func(c chaosCall) bool { return c.replica == 0 && c.status != http.StatusOK }); n != 0 {
		t.Errorf("%d requests on the good replica failed", n)
	}

	// Replica 1 again, with the right secret: the same cookies work.
	if err := os.WriteFile(bad.ConfigPath, []byte(e.configs[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	bad.Proc.stop(t)
	bad.Proc = startProcess(t, "tokenrelay-b-fixed", bins.root, []string{"GORACE=halt_on_error=0"}, bins.tokenrelay, "serve", "-config", bad.ConfigPath)
	waitReady(t, bad.Proc, bad.AdminURL+"/readyz", 60*time.Second)
	time.Sleep(chaosAccessTTL) // expired again: replica 1 must refresh
	for i := range e.sessions {
		if c := e.call(i, 1, "/api/whoami"); c.status != http.StatusOK {
			t.Errorf("session %d on the fixed replica: %d %s, want 200", i, c.status, c.code)
		}
	}
	r := e.row("replica with a wrong client secret, then fixed", e.lost(0, 1))
	e.check(r, chaosWaitBound)
	if r.Lost != 0 {
		t.Errorf("%d sessions lost, want 0", r.Lost)
	}
	return r
}

// plainRedisLine is a go-redis log line written around slog.
var plainRedisLine = regexp.MustCompile(`(?m)^redis: `)

// chaosRedisStall: redis-server is paused (SIGSTOP) for 3 s under load.
// Requests fail fast with 503 store_unavailable, bounded by
// session.redis.op_timeout (500 ms here) rather than go-redis's timeouts
// and retries; afterwards every session works, and go-redis wrote nothing
// around the structured log.
func chaosRedisStall(t *testing.T) chaosRow {
	const opTimeout = 500 * time.Millisecond
	e := startChaos(t, "redis", chaosOptions{opTimeout: opTimeout})
	pid := e.redis.Redis.PID()
	time.AfterFunc(2*time.Second, func() { _ = syscall.Kill(pid, syscall.SIGSTOP) })
	time.AfterFunc(5*time.Second, func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	e.load(9*time.Second, 250*time.Millisecond)
	r := e.row("Redis paused 3s (op_timeout 500ms)", e.lost(0, 1))
	e.check(r, chaosWaitBound)
	if r.Lost != 0 {
		t.Errorf("%d sessions lost, want 0", r.Lost)
	}
	if n := e.count(func(c chaosCall) bool { return c.code == "store_unavailable" }); n == 0 {
		t.Errorf("no request met the stall (no 503 store_unavailable): the scenario did not test anything")
	}
	for _, rl := range e.s.Relays {
		if out, _ := rl.Proc.log.snapshot(); plainRedisLine.MatchString(out) {
			t.Errorf("%s wrote go-redis lines around the structured log", rl.Proc.name)
		}
	}
	return r
}

// chaosUpstream401: an upstream that answers 401 to every token. Each
// request is retried once with a refreshed token only when the session was
// not refreshed within refresh.min_interval (30 s): 20 requests of one
// session cost one refresh, and every 401 is passed on.
func chaosUpstream401(t *testing.T) chaosRow {
	deny := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"forbidden_by_policy"}`))
	}))
	t.Cleanup(deny.Close)
	e := startChaos(t, "deny", chaosOptions{routes: fmt.Sprintf("  - path: /deny/\n    upstream: %q\n    auth: required\n", deny.URL)})
	for n := range 20 {
		if c := e.call(0, n%2, "/deny/x"); c.status != http.StatusUnauthorized || c.code != "forbidden_by_policy" {
			t.Errorf("request %d: %d %s, want the upstream's 401 passed on", n, c.status, c.code)
		}
	}
	r := e.row("upstream answers 401 to everything (20 requests, 1 session)", e.lost(0, 1))
	e.check(r, chaosWaitBound)
	if r.Refreshes > 2 {
		t.Errorf("20 rejected requests caused %d refreshes, want at most 2", r.Refreshes)
	}
	return r
}
