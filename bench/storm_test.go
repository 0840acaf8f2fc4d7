package bench

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/redistest"
)

// Storm kinds, in the order the tables list them.
const (
	kFloor  = "floor"
	k1      = "1 replica"
	k2      = "2 replicas"
	kFresh1 = "fresh tokens, 1 replica"
	kFresh2 = "fresh tokens, 2 replicas"
)

// stormReplicas is how many replicas each kind of storm spreads over.
var stormReplicas = map[string]int{k1: 1, k2: 2, kFresh1: 1, kFresh2: 2}

// stormResult is the refresh storm's part of the results.
type stormResult struct {
	Sessions           int     `json:"sessions"`
	RequestsPerSession int     `json:"requests_per_session"`
	Rounds             int     `json:"rounds"`
	TokenLatencyMs     float64 `json:"token_endpoint_extra_latency_ms"`
	// OtherCPUCores: cores the rest of the machine kept busy, on average,
	// during the storm rounds (see steadyRow.OtherCPUCores).
	OtherCPUCores float64      `json:"other_cpu_cores"`
	Kinds         []stormStats `json:"kinds"`
}

// stormStats is one kind of storm (or the floor) over every round.
type stormStats struct {
	Name string `json:"name"`
	// Requests is per round: sessions × requests per session, or, for
	// the floor, one refresh request per session.
	Requests   int       `json:"requests_per_round"`
	TokenCalls []int64   `json:"token_calls_per_round"`
	Reused     int64     `json:"refresh_tokens_reused"`
	Non2xx     int       `json:"non_2xx"`
	P50ms      float64   `json:"p50_ms"`
	P99ms      float64   `json:"p99_ms"`
	MaxMs      float64   `json:"max_ms"`
	RoundP99ms []float64 `json:"p99_ms_per_round"`
	// Over the floor of the same run; zero for the floor itself.
	AddedP50ms float64 `json:"added_p50_ms_over_floor"`
	AddedP99ms float64 `json:"added_p99_ms_over_floor"`
	// For a storm: its p99 over the same burst with fresh tokens, i.e.
	// what refreshing costs beyond serving the burst at all.
	AddedP99msOverFresh float64 `json:"added_p99_ms_over_fresh_tokens,omitempty"`

	latencies []time.Duration
}

// stormEnv is everything the storm uses.
type stormEnv struct {
	op       *role
	upstream *role
	relays   []*relay
	client   *http.Client
	n, m     int
	// fresh are sessions whose access tokens stay fresh for the whole run.
	fresh []string
	// meters are every process of the run but this one.
	meters []*meter
}

// ourCPU is the CPU time this run's processes have used so far.
func (e *stormEnv) ourCPU(b *testing.B) time.Duration {
	total := selfCPU()
	for _, m := range e.meters {
		total += m.read(b).cpu
	}
	return total
}

// BenchmarkRefreshStorm: N sessions whose access tokens have just expired
// each get M concurrent requests at once, through 1 tokenrelay replica and
// through 2 replicas sharing one redis-server (each request of a session
// to the next replica in turn), against an OpenID Provider whose refresh
// tokens are single use. Beside them, in the same rounds, the floor: the
// same provider answering N concurrent refresh requests sent straight to
// its token endpoint, so that what tokenrelay adds to the provider's own
// latency is visible. Each round runs the floor and both storms in a
// rotated order.
//
// Two references run in the same rounds: the same bursts with sessions
// whose tokens are fresh (no refresh at all), through 1 and 2 replicas.
// They tell the cost of serving M×N concurrent requests on this machine
// from the cost of the refresh itself.
//
// Reported per kind: p50, p99 and max latency over every round, the p99 of
// each round, and the p50/p99 added over the floor. It fails unless every
// storm makes exactly N refresh calls, presents no refresh token twice and
// answers every request 2xx (the upstream verifies each token, and
// refresh.retry_on_401 is off, so a stale token shows as a failure);
// timings never fail it.
func BenchmarkRefreshStorm(b *testing.B) {
	env := startStorm(b)
	run.start(b)
	kinds := []string{kFloor, k1, k2, kFresh1, kFresh2}
	stats := map[string]*stormStats{}
	for _, k := range kinds {
		stats[k] = &stormStats{Name: k}
	}
	m0, o0, t0 := machineCPU(), env.ourCPU(b), time.Now()
	b.ResetTimer()
	for range b.N {
		for r := range *flagStormRounds {
			for i := range kinds {
				k := kinds[(i+r)%len(kinds)]
				b.StopTimer()
				switch k {
				case kFloor:
					env.floor(b, stats[k])
				case kFresh1, kFresh2:
					env.burst(b, stats[k], env.fresh, stormReplicas[k])
				default:
					env.storm(b, stats[k], stormReplicas[k])
				}
			}
		}
	}
	b.StopTimer()
	other := max(0, machineCPU()-m0-(env.ourCPU(b)-o0)).Seconds() / time.Since(t0).Seconds()
	run.finish(b)
	if n := env.upstream.Stats(b)["unauthorized"]; n != 0 {
		b.Errorf("the upstream refused %d requests for an expired or invalid token; want 0", n)
	}
	res := &stormResult{Sessions: env.n, RequestsPerSession: env.m, Rounds: *flagStormRounds,
		TokenLatencyMs: ms(*flagStormLatency), OtherCPUCores: other}
	for _, k := range kinds {
		s := stats[k]
		env.check(b, s)
		s.summarize(stats[kFloor])
	}
	stats[k1].AddedP99msOverFresh = stats[k1].P99ms - stats[kFresh1].P99ms
	stats[k2].AddedP99msOverFresh = stats[k2].P99ms - stats[kFresh2].P99ms
	for _, k := range kinds {
		s := stats[k]
		res.Kinds = append(res.Kinds, *s)
		if k == k1 || k == k2 {
			b.ReportMetric(s.AddedP99ms, strings.ReplaceAll(k, " ", "-")+"-added-p99-ms")
		}
	}
	run.setStorm(res)
	b.Log("\n" + stormTable(res))
}

func startStorm(b *testing.B) *stormEnv {
	b.Helper()
	_, keyPath := writeKey(b, b.TempDir())
	rs := redistest.Start(b, redistest.Options{})
	op := startRole(b, "op", envKey+"="+keyPath, envLatency+"="+flagStormLatency.String())
	up := startRole(b, "upstream", envKey+"="+keyPath, envIssuer+"="+op.URL, envVerify+"=1", envBody+"="+strconv.Itoa(*flagBody))
	o := relayOptions{store: "redis", redisAddr: rs.Addr, keyPrefix: "bench:storm:", issuer: op.URL,
		upstream: up.URL, secret: newSecret(), noRetry: true}
	o.name = "tokenrelay-a"
	a := startRelay(b, o)
	// Both replicas sit behind one public URL, as behind a balancer.
	o.name, o.publicURL = "tokenrelay-b", a.URL
	bb := startRelay(b, o)
	env := &stormEnv{op: op, upstream: up, relays: []*relay{a, bb}, client: newLoadClient(),
		n: *flagStormSessions, m: *flagStormRequests}
	env.client.Timeout = 60 * time.Second
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	b.Cleanup(func() { _ = rdb.Close() })
	env.meters = []*meter{{name: op.name, pid: op.Pid()}, {name: up.name, pid: up.Pid()},
		{name: a.name, pid: a.Pid()}, {name: bb.name, pid: bb.Pid()}, redisMeter(rdb)}
	fresh, err := loginAll(env.relays, "fresh-", env.n, 24*3600)
	if err != nil {
		b.Fatal(err)
	}
	env.fresh = fresh
	// Open the connections the storms and the floor will use.
	burst(env.client, env.n*env.m, func(i int) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, env.relays[i%2].URL+"/api/items", nil)
		return req
	})
	burst(env.client, env.n, func(int) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, op.URL+"/.well-known/openid-configuration", nil)
		return req
	})
	return env
}

// floor sends N concurrent refresh requests straight to the token endpoint,
// as tokenrelay would (form body, client_secret_basic), each with its own
// live refresh token.
func (e *stormEnv) floor(b *testing.B, s *stormStats) {
	b.Helper()
	var tokens []string
	if err := getJSON(e.op.URL+"/bench/mint?n="+strconv.Itoa(e.n), &tokens); err != nil {
		b.Fatal(err)
	}
	before := e.op.Stats(b)
	b.StartTimer()
	lat, ok := burst(e.client, e.n, func(i int) *http.Request {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tokens[i]}}
		req, _ := http.NewRequest(http.MethodPost, e.op.URL+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(opClientID), url.QueryEscape(opClientSecret))
		return req
	})
	b.StopTimer()
	e.record(b, s, before, lat, ok)
}

// storm logs N users in through the first k replicas with access tokens
// living one second, waits until every one has expired, then sends M
// requests per session at once, request j of a session to replica j mod k.
func (e *stormEnv) storm(b *testing.B, s *stormStats, k int) {
	b.Helper()
	cookies, err := loginAll(e.relays[:k], fmt.Sprintf("storm-%d-%d-", k, len(s.TokenCalls)), e.n, 1)
	if err != nil {
		b.Fatal(err)
	}
	// tokenrelay took each expiry as its receipt of the token plus one
	// second; every receipt was before now.
	expired := time.Now().Add(time.Second + 100*time.Millisecond)
	time.Sleep(time.Until(expired))
	e.burst(b, s, cookies, k)
}

// burst sends M requests per session (cookies) at once, request j of a
// session to replica j mod k.
func (e *stormEnv) burst(b *testing.B, s *stormStats, cookies []string, k int) {
	b.Helper()
	before := e.op.Stats(b)
	b.StartTimer()
	lat, ok := burst(e.client, e.n*e.m, func(i int) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, e.relays[(i/e.n)%k].URL+"/api/items", nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", cookies[i%e.n])
		return req
	})
	b.StopTimer()
	e.record(b, s, before, lat, ok)
}

// record adds one round's latencies and the OP's counts since before.
func (e *stormEnv) record(b *testing.B, s *stormStats, before map[string]int64, lat []time.Duration, ok []bool) {
	after := e.op.Stats(b)
	s.Requests = len(lat)
	s.TokenCalls = append(s.TokenCalls, after["refreshes"]-before["refreshes"])
	s.Reused += after["reuse"] - before["reuse"]
	for _, good := range ok {
		if !good {
			s.Non2xx++
		}
	}
	round := append([]time.Duration(nil), lat...)
	sortDurations(round)
	s.RoundP99ms = append(s.RoundP99ms, ms(percentile(round, 0.99)))
	s.latencies = append(s.latencies, lat...)
}

// check fails the benchmark when a storm broke the refresh invariants:
// exactly one refresh per session (none with fresh tokens).
func (e *stormEnv) check(b *testing.B, s *stormStats) {
	want := int64(e.n)
	if s.Name == kFresh1 || s.Name == kFresh2 {
		want = 0
	}
	for i, calls := range s.TokenCalls {
		if calls != want {
			b.Errorf("%s, round %d: %d refresh calls at the token endpoint, want exactly %d", s.Name, i+1, calls, want)
		}
	}
	if s.Reused != 0 || s.Non2xx != 0 {
		b.Errorf("%s: %d refresh tokens presented twice, %d answers not 2xx; want 0 and 0", s.Name, s.Reused, s.Non2xx)
	}
}

// summarize computes the percentiles, and the added latency over floor.
func (s *stormStats) summarize(floor *stormStats) {
	sortDurations(s.latencies)
	s.P50ms = ms(percentile(s.latencies, 0.50))
	s.P99ms = ms(percentile(s.latencies, 0.99))
	s.MaxMs = ms(percentile(s.latencies, 1))
	if s != floor {
		sortDurations(floor.latencies)
		s.AddedP50ms = s.P50ms - ms(percentile(floor.latencies, 0.50))
		s.AddedP99ms = s.P99ms - ms(percentile(floor.latencies, 0.99))
	}
}
