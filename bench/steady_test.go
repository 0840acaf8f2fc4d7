package bench

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/redistest"
)

// Target names, in the order the tables list them.
const (
	tDirect = "direct"
	tBare   = "bare"
	tMemory = "tokenrelay-memory"
	tRedis  = "tokenrelay-redis"
	// tMemoryPolicy is the memory relay's /policy/ route: the same
	// process and session as tMemory, with a policy and identity headers.
	tMemoryPolicy = "tokenrelay-memory-policy"
	// The forward-auth verify endpoint of the memory and Redis relays,
	// asked about the same API call (the answer carries the token; no
	// upstream is called).
	tVerifyMemory = "verify-memory"
	tVerifyRedis  = "verify-redis"
	// With -bench.against: the other binary.
	tAgainstMemory = "against-memory"
	tAgainstRedis  = "against-redis"
)

// target is one way of reaching the upstream.
type target struct {
	name string
	url  string
	// path is appended to url: "/api/items" when empty.
	path   string
	header http.Header
	client *http.Client
	proxy  *meter // the proxy process; nil for direct
	redis  *meter // redis-server, for the Redis store only
}

// cell accumulates one target at one concurrency over all rounds.
type cell struct {
	phaseResult
	proxyCPU, upstreamCPU, redisCPU, loadCPU time.Duration
	// otherCPU is the CPU time the rest of the machine used meanwhile:
	// other programs (a shared machine) and this run's idle processes.
	otherCPU                    time.Duration
	proxyAllocs, upstreamAllocs uint64
	redisCommands               int64
}

// steadyEnv is everything the steady-state run uses.
type steadyEnv struct {
	targets  []*target
	upstream *role
	upMeter  *meter
	rdb      *redis.Client
}

// BenchmarkSteadyState compares, in one interleaved run, four ways to reach
// one upstream API: directly, through a bare httputil.ReverseProxy, and
// through tokenrelay (the real binary, as `make build` makes it) with the
// memory store and with the Redis store (a real redis-server), at each
// -bench.clients concurrency of closed-loop keep-alive clients. Each round
// loads every target for -bench.phase per concurrency, the targets' order
// rotated from round to round, so drifts in the machine's load hit all of
// them alike.
//
// Every server runs in a process of its own (the upstream, the bare proxy
// and the OpenID Provider in re-executed copies of this test binary), so
// CPU time (/proc/<pid>/stat) and allocations (the process's runtime
// counters; tokenrelay's /metrics) are each process's own. The load
// generator runs in this process; its CPU is reported apart.
//
// The upstream verifies the RS256 JWT bearer token of every request, as a
// resource server behind tokenrelay does: with a free upstream, the
// proxy's share of the machine would be larger than in any real
// deployment. -bench.upstream.verify=false measures that case.
//
// It fails when a request is not answered 200 (tokenrelay's requests reach
// the upstream only with a valid token, so this also proves the token was
// injected); timings never fail it.
func BenchmarkSteadyState(b *testing.B) {
	clients, err := clientCounts()
	if err != nil {
		b.Fatal(err)
	}
	env := startSteady(b)
	if *flagHold > 0 {
		env.hold(b, *flagHold)
		return
	}
	run.start(b)
	b.ResetTimer()
	cells := map[string]map[int]*cell{}
	for _, t := range env.targets {
		cells[t.name] = map[int]*cell{}
		for _, c := range clients {
			cells[t.name][c] = &cell{}
		}
	}
	for range b.N {
		for r := range *flagRounds {
			for ci, c := range clients {
				for k := range env.targets {
					t := env.targets[(k+r+ci)%len(env.targets)]
					env.phase(b, t, c, cells[t.name][c])
				}
			}
		}
	}
	b.StopTimer()
	run.finish(b)
	if n := env.upstream.Stats(b)["unauthorized"]; n != 0 {
		b.Errorf("the upstream refused %d requests for want of a valid bearer token; want 0", n)
	}
	rows := steadyRows(env.targets, clients, cells)
	for _, row := range rows {
		if row.Failed > 0 {
			b.Errorf("%s, %d clients: %d of %d requests were not answered 200", row.Target, row.Clients, row.Failed, row.Requests)
		}
		reportRow(b, row)
	}
	handler := handlerAllocs(b)
	run.setSteady(rows, handler)
	b.Log("\n" + steadyTable(rows) + "\n" + handlerTable(handler))
}

// startSteady starts the processes and sessions of the steady state and
// warms every target up (connections open, pools filled).
func startSteady(b *testing.B) *steadyEnv {
	b.Helper()
	key, keyPath := writeKey(b, b.TempDir())
	rs := redistest.Start(b, redistest.Options{})
	op := startRole(b, "op", envKey+"="+keyPath, envLatency+"=0s")
	verify := "0"
	if *flagVerify {
		verify = "1"
	}
	up := startRole(b, "upstream", envKey+"="+keyPath, envIssuer+"="+op.URL, envVerify+"="+verify, envBody+"="+strconv.Itoa(*flagBody))
	bare := startRole(b, "bare", envTarget+"="+up.URL)
	secret := newSecret()
	mem := startRelay(b, relayOptions{name: "tokenrelay-memory", store: "memory", issuer: op.URL, upstream: up.URL, secret: secret, verify: true, policyRoute: *flagPolicy})
	red := startRelay(b, relayOptions{name: "tokenrelay-redis", store: "redis", redisAddr: rs.Addr, keyPrefix: "bench:steady:",
		issuer: op.URL, upstream: up.URL, secret: secret, verify: true})

	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	b.Cleanup(func() { _ = rdb.Close() })
	token, err := signToken(key, accessClaims(op.URL, "steady-direct", 24*3600))
	if err != nil {
		b.Fatal(err)
	}
	env := &steadyEnv{upstream: up, upMeter: roleMeter(b, up), rdb: rdb}
	memHeader, redHeader := sessionHeader(b, mem, "steady-memory"), sessionHeader(b, red, "steady-redis")
	env.targets = []*target{
		{name: tDirect, url: up.URL, header: http.Header{"Authorization": {"Bearer " + token}}},
		{name: tBare, url: bare.URL, proxy: roleMeter(b, bare),
			header: http.Header{"Authorization": {"Bearer " + token}, "Cookie": {"theme=dark"}}},
		{name: tMemory, url: mem.URL, proxy: relayMeter(b, mem), header: memHeader},
		{name: tRedis, url: red.URL, proxy: relayMeter(b, red), header: redHeader, redis: redisMeter(rdb)},
		// Envoy's form: the original path after the verify path, the same
		// sessions as the proxy rows.
		{name: tVerifyMemory, url: mem.Verify + "/.auth/verify", proxy: relayMeter(b, mem), header: memHeader.Clone()},
		{name: tVerifyRedis, url: red.Verify + "/.auth/verify", proxy: relayMeter(b, red), header: redHeader.Clone(), redis: redisMeter(rdb)},
	}
	if *flagPolicy {
		memory := env.targets[2]
		env.targets = append(env.targets, &target{name: tMemoryPolicy, url: mem.URL, path: policyPath,
			proxy: relayMeter(b, mem), header: memory.header.Clone()})
	}
	if *flagAgainst != "" {
		env.targets = append(env.targets, againstTargets(b, rs.Addr, op.URL, up.URL, secret, rdb)...)
	}
	maxClients := 0
	clients, _ := clientCounts()
	for _, c := range clients {
		maxClients = max(maxClients, c)
	}
	for _, t := range env.targets {
		if t.path == "" {
			t.path = "/api/items"
		}
		t.url += t.path
		t.header.Set("Accept", "application/json")
		t.client = newLoadClient()
		if res := load(t.client, t.url, t.header, maxClients, 500*time.Millisecond); res.failed > 0 {
			b.Fatalf("warm-up of %s: %d of %d requests failed", t.name, res.failed, res.n)
		}
	}
	return env
}

// hold prints how to load each target with wrk and keeps everything up for
// d, for measurements with an outside load generator.
func (e *steadyEnv) hold(b *testing.B, d time.Duration) {
	var sb strings.Builder
	for _, t := range e.targets {
		fmt.Fprintf(&sb, "%s: wrk", t.name)
		for k, vs := range t.header {
			for _, v := range vs {
				fmt.Fprintf(&sb, " -H %q", k+": "+v)
			}
		}
		fmt.Fprintf(&sb, " %s\n", t.url)
	}
	fmt.Fprintf(&sb, "processes: upstream %d", e.upMeter.pid)
	for _, t := range e.targets {
		if t.proxy != nil {
			fmt.Fprintf(&sb, ", %s %d", t.name, t.proxy.pid)
		}
	}
	fmt.Printf("bench: holding for %s\n%s\n", d, sb.String())
	time.Sleep(d)
}

// againstTargets are the memory and Redis targets of the -bench.against
// binary.
func againstTargets(b *testing.B, redisAddr, issuer, upstream, secret string, rdb *redis.Client) []*target {
	b.Helper()
	mem := startRelay(b, relayOptions{name: tAgainstMemory, variant: "against", store: "memory", issuer: issuer, upstream: upstream, secret: secret})
	red := startRelay(b, relayOptions{name: tAgainstRedis, variant: "against", store: "redis", redisAddr: redisAddr,
		keyPrefix: "bench:against:", issuer: issuer, upstream: upstream, secret: secret})
	return []*target{
		{name: tAgainstMemory, url: mem.URL, proxy: relayMeter(b, mem), header: sessionHeader(b, mem, "against-memory")},
		{name: tAgainstRedis, url: red.URL, proxy: relayMeter(b, red), header: sessionHeader(b, red, "against-redis"),
			redis: redisMeter(rdb)},
	}
}

// sessionHeader logs a user in through r (an access token fresh for the
// whole run) and returns the headers of an API call from that browser.
func sessionHeader(b *testing.B, r *relay, sub string) http.Header {
	b.Helper()
	cookie, err := login(r.URL, sub, 24*3600)
	if err != nil {
		b.Fatalf("%s: login: %v", r.name, err)
	}
	return http.Header{"Cookie": {"theme=dark; " + cookie}}
}

// phase loads t with c clients for one phase and adds what every process
// used to acc.
func (e *steadyEnv) phase(b *testing.B, t *target, c int, acc *cell) {
	b.Helper()
	var p0, r0 reading
	if t.proxy != nil {
		p0 = t.proxy.read(b)
	}
	if t.redis != nil {
		r0 = t.redis.read(b)
	}
	cmds0 := e.redisCommands(b, t)
	u0, l0, m0 := e.upMeter.read(b), selfCPU(), machineCPU()

	res := load(t.client, t.url, t.header, c, *flagPhase)

	m1, l1, u1 := machineCPU(), selfCPU(), e.upMeter.read(b)
	before := acc.proxyCPU + acc.upstreamCPU + acc.redisCPU + acc.loadCPU
	defer func() {
		ours := acc.proxyCPU + acc.upstreamCPU + acc.redisCPU + acc.loadCPU - before
		acc.otherCPU += max(0, m1-m0-ours)
	}()
	acc.loadCPU += l1 - l0
	cpu, allocs := e.upMeter.since(u0, u1)
	acc.upstreamCPU += cpu
	acc.upstreamAllocs += allocs
	if t.redis != nil {
		cpu, _ := t.redis.since(r0, t.redis.read(b))
		acc.redisCPU += cpu
		// Less the harness's own: the INFO that read cmds0 and the INFO
		// cpu just sent.
		acc.redisCommands += e.redisCommands(b, t) - cmds0 - 2
	}
	if t.proxy != nil {
		cpu, allocs := t.proxy.since(p0, t.proxy.read(b))
		acc.proxyCPU += cpu
		acc.proxyAllocs += allocs
	}
	acc.n += res.n
	acc.failed += res.failed
	acc.elapsed += res.elapsed
	acc.latencies = append(acc.latencies, res.latencies...)
}

// redisCommands is Redis's count of commands processed, for the Redis
// target (0 for the others).
func (e *steadyEnv) redisCommands(b *testing.B, t *target) int64 {
	if t.redis == nil {
		return 0
	}
	n, err := redisInfo(e.rdb, "stats", "total_commands_processed")
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// steadyRows turns the cells into result rows, with ratios to the bare
// proxy at the same concurrency.
func steadyRows(targets []*target, clients []int, cells map[string]map[int]*cell) []steadyRow {
	var rows []steadyRow
	for _, c := range clients {
		bare := summarize(tBare, c, cells[tBare][c])
		for _, t := range targets {
			row := summarize(t.name, c, cells[t.name][c])
			row.RatioToBare = row.ReqPerSec / bare.ReqPerSec
			row.AddedP50us = row.P50us - bare.P50us
			row.AddedP99us = row.P99us - bare.P99us
			if t.proxy != nil && t.name != tBare {
				row.AddedAllocsPerReq = *row.ProxyAllocsPerReq - *bare.ProxyAllocsPerReq
			}
			if t.proxy == nil {
				row.ProxyCPUPer10k, row.ProxyAllocsPerReq = nil, nil
			}
			if t.redis == nil {
				row.RedisCPUPer10k, row.RedisCmdsPerReq = nil, nil
			}
			rows = append(rows, row)
		}
	}
	return rows
}

func summarize(name string, clients int, c *cell) steadyRow {
	sortDurations(c.latencies)
	n := float64(max(c.n, 1))
	per10k := func(d time.Duration) *float64 { v := d.Seconds() / n * 10000; return &v }
	perReq := func(x float64) *float64 { v := x / n; return &v }
	return steadyRow{
		Target: name, Clients: clients, Requests: c.n, Failed: c.failed, Seconds: c.elapsed.Seconds(),
		ReqPerSec: float64(c.n) / c.elapsed.Seconds(),
		P50us:     us(percentile(c.latencies, 0.50)), P99us: us(percentile(c.latencies, 0.99)),
		P999us:         us(percentile(c.latencies, 0.999)),
		ProxyCPUPer10k: per10k(c.proxyCPU), UpstreamCPUPer10k: *per10k(c.upstreamCPU),
		RedisCPUPer10k: per10k(c.redisCPU), LoadgenCPUPer10k: *per10k(c.loadCPU),
		ProxyAllocsPerReq: perReq(float64(c.proxyAllocs)), UpstreamAllocsPerReq: *perReq(float64(c.upstreamAllocs)),
		RedisCmdsPerReq: perReq(float64(c.redisCommands)),
		OtherCPUCores:   c.otherCPU.Seconds() / c.elapsed.Seconds(),
	}
}

// reportRow reports tokenrelay's ratios to the bare proxy as benchmark
// metrics; the full figures are in the table and the results files.
func reportRow(b *testing.B, row steadyRow) {
	if row.Target != tDirect && row.Target != tBare {
		b.ReportMetric(row.RatioToBare, fmt.Sprintf("%s-c%d-x-bare", strings.TrimPrefix(row.Target, "tokenrelay-"), row.Clients))
	}
	b.ReportMetric(0, "ns/op")
}
