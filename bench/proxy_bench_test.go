package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/redistest"
	"github.com/tokenrelay/tokenrelay/proxy"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

// Knobs. The defaults keep `make bench` under a minute on a small machine.
var (
	phase   = flag.Duration("perf.phase", time.Second, "steady state: how long each target is loaded per round")
	rounds  = flag.Int("perf.rounds", 3, "steady state: rounds, each loading direct, bare and tokenrelay in a rotated order")
	workers = flag.Int("perf.workers", 16, "steady state: concurrent clients")

	stormSessions = flag.Int("perf.storm.sessions", 50, "refresh storm: sessions whose access token has expired")
	stormRequests = flag.Int("perf.storm.requests", 10, "refresh storm: concurrent requests per session")
	stormRounds   = flag.Int("perf.storm.rounds", 3, "refresh storm: storms per benchmark iteration")
	stormLatency  = flag.Duration("perf.storm.latency", 50*time.Millisecond, "refresh storm: token endpoint latency")
)

// maxPerWorker bounds one worker's requests in one phase, whatever the
// phase length.
const maxPerWorker = 1_000_000

const (
	upstreamBody = `{"id":1,"name":"bench"}`
	// steadyToken is the access token of the steady-state session.
	steadyToken = "bench-access-token"
)

// BenchmarkSteadyState compares, in one run on the same machine and load,
// ways to reach one loopback upstream with a pool of concurrent clients:
// directly, through a bare httputil.ReverseProxy, and through tokenrelay
// (proxy.Handler over session.Manager over a RedisStore on a real
// redis-server, with a sealed session whose access token is fresh); and,
// to tell the Redis round trip's cost from the rest, tokenrelay over a
// MemoryStore. Each round loads every target for -perf.phase, in a rotated
// order, so slow drifts in the machine's load hit all of them alike.
//
// It runs twice: "throughput" with -perf.workers clients (the machine
// saturated: requests/s is the figure) and "latency" with one client (p50
// and p99 are then what a proxy adds to one request, not queueing).
// Reported for each: requests/s, p50 and p99 latency of each target;
// tokenrelay's requests/s as a fraction of the bare proxy's (target ≥
// 0.85); the p50 and p99 tokenrelay adds over the bare proxy (target: p99
// ≤ 1 ms); and the Redis commands per proxied request (steady state: a GET
// and a PTTL, sent together in one round trip, or in one pipeline with the
// Gets of other requests that arrive meanwhile).
func BenchmarkSteadyState(b *testing.B) {
	rs := redistest.Start(b, redistest.Options{})

	var withToken atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer "+steadyToken {
			withToken.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, upstreamBody)
	}))
	defer upstream.Close()
	target, _ := url.Parse(upstream.URL)

	bare := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		// The same tuned transport tokenrelay uses: the comparison is
		// about what tokenrelay does per request, not about pooling.
		Transport: proxy.NewTransport(proxy.TransportOptions{}),
	})
	defer bare.Close()

	rdb, commands := redisClient(b, rs.Addr)
	mgr := newManager(b, rdb, redistest.KeyPrefix(b), nil)
	relay := httptest.NewServer(newHandler(b, mgr, target, true))
	defer relay.Close()
	// The same proxy over a MemoryStore isolates what the Redis round trip
	// costs from what the handler and the session engine cost.
	memMgr, err := session.NewManager(session.ManagerOptions{
		Backend:    session.NewMemoryStore(nil),
		Secret:     benchSecret,
		Refresher:  steadyRefresher{},
		Issuer:     benchIssuer,
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	memRelay := httptest.NewServer(newHandler(b, memMgr, target, true))
	defer memRelay.Close()
	relayCookie, memCookie := steadySession(b, mgr), steadySession(b, memMgr)

	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		DisableCompression:  true,
	}}
	targets := []string{"direct", "bare", "tokenrelay", "tokenrelay-memory"}
	urls := map[string]string{
		"direct":            upstream.URL + "/api/items",
		"bare":              bare.URL + "/api/items",
		"tokenrelay":        relay.URL + "/api/items",
		"tokenrelay-memory": memRelay.URL + "/api/items",
	}
	cookies := map[string]string{"tokenrelay": relayCookie, "tokenrelay-memory": memCookie}
	// throughput: many clients saturate the machine; requests/s is the
	// figure. latency: one client at a time, so p50/p99 are what each
	// proxy adds to a request rather than queueing behind the others.
	for _, mode := range []struct {
		name    string
		workers int
	}{{"throughput", *workers}, {"latency", 1}} {
		b.Run(mode.name, func(b *testing.B) {
			workers := mode.workers
			results := map[string]*loadResult{}
			for _, name := range targets {
				results[name] = &loadResult{}
				// Warm up: connections open, scripts loaded, pools filled.
				load(client, urls[name], cookies[name], workers, 200*time.Millisecond)
			}
			b.Logf("load average before: %s", loadAvg())

			b.ResetTimer()
			tokensBefore := withToken.Load()
			var relayCommands int64
			for i := range b.N {
				for r := range *rounds {
					for k := range targets {
						name := targets[(k+r+i)%len(targets)]
						before := commands.Load()
						res := load(client, urls[name], cookies[name], workers, *phase)
						if name == "tokenrelay" {
							relayCommands += commands.Load() - before
						}
						results[name].add(res)
					}
				}
			}
			b.StopTimer()
			b.Logf("load average after: %s", loadAvg())

			for _, name := range targets {
				if r := results[name]; r.failed > 0 {
					b.Errorf("%s: %d of %d requests failed or were not 200", name, r.failed, r.n)
				}
			}
			relayN := int64(results["tokenrelay"].n + results["tokenrelay-memory"].n)
			// Only tokenrelay's requests (either store) carry the token.
			if got := withToken.Load() - tokensBefore; got != relayN {
				b.Errorf("the upstream saw the Bearer token on %d requests, want the %d measured through tokenrelay", got, relayN)
			}

			for _, name := range targets {
				r := results[name]
				b.ReportMetric(r.rate(), name+"-req/s")
				b.ReportMetric(us(r.percentile(0.50)), name+"-p50-us")
				b.ReportMetric(us(r.percentile(0.99)), name+"-p99-us")
			}
			rb, rr := results["bare"], results["tokenrelay"]
			b.ReportMetric(rr.rate()/rb.rate(), "tokenrelay/bare")
			b.ReportMetric(results["tokenrelay-memory"].rate()/rb.rate(), "tokenrelay-memory/bare")
			b.ReportMetric(us(rr.percentile(0.50)-rb.percentile(0.50)), "added-p50-us")
			b.ReportMetric(us(rr.percentile(0.99)-rb.percentile(0.99)), "added-p99-us")
			if results["tokenrelay"].n > 0 {
				b.ReportMetric(float64(relayCommands)/float64(results["tokenrelay"].n), "redis-cmds/req")
			}
			b.ReportMetric(0, "ns/op") // the figures above are the result
		})
	}
}

// steadySession creates a session whose access token stays fresh for the
// whole run and returns the Cookie header that carries it.
func steadySession(b *testing.B, mgr *session.Manager) string {
	b.Helper()
	now := time.Now()
	tk, err := mgr.Create(context.Background(), session.Record{
		AccessToken:  steadyToken,
		RefreshToken: "bench-refresh-token",
		AccessExpiry: now.Add(24 * time.Hour),
		Issuer:       benchIssuer,
		Subject:      "bench-user",
		Claims:       map[string]any{"name": "Bench User", "email": "bench@example.test"},
		CreatedAt:    now,
	}, session.ViaLogin)
	if err != nil {
		b.Fatal(err)
	}
	return "theme=dark; " + session.DefaultCookieName + "=" + tk.Encode()
}

// loadResult accumulates what a pool of clients saw.
type loadResult struct {
	n, failed int
	elapsed   time.Duration
	latencies []time.Duration
}

func (r *loadResult) add(o loadResult) {
	r.n += o.n
	r.failed += o.failed
	r.elapsed += o.elapsed
	r.latencies = append(r.latencies, o.latencies...)
}

func (r *loadResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.n) / r.elapsed.Seconds()
}

func (r *loadResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	slices.Sort(r.latencies)
	return r.latencies[min(len(r.latencies)-1, int(p*float64(len(r.latencies))))]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// load runs workers clients against target until d has passed (each client
// stops after maxPerWorker requests at most) and reports what they saw.
func load(client *http.Client, target, cookie string, workers int, d time.Duration) loadResult {
	start := time.Now()
	deadline := start.Add(d)
	per := make([]loadResult, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			res := loadResult{latencies: make([]time.Duration, 0, 8192)}
			for range maxPerWorker {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				ok := get(client, target, cookie)
				res.latencies = append(res.latencies, time.Since(t0))
				res.n++
				if !ok {
					res.failed++
				}
			}
			per[w] = res
		})
	}
	wg.Wait()
	total := loadResult{elapsed: time.Since(start)}
	for _, r := range per {
		total.n += r.n
		total.failed += r.failed
		total.latencies = append(total.latencies, r.latencies...)
	}
	return total
}

// get makes one API call as a browser's fetch() would and reports whether
// it was answered 200.
func get(client *http.Client, target, cookie string) bool {
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return false
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", cookie)
	res, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// loadAvg is /proc/loadavg's first three fields ("?" elsewhere).
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// BenchmarkRefreshStorm: N sessions whose access tokens have all expired
// each get M concurrent requests, spread over two tokenrelay replicas
// (each its own Manager, Redis client, Handler and HTTP server) sharing one
// redis-server. The token endpoint is a fake whose refresh tokens are
// single use (rotation) and which answers after -perf.storm.latency.
//
// Reported per storm: token-endpoint calls (must equal N), non-2xx answers
// (must be 0), refresh tokens presented twice (must be 0), and the storm's
// wall time. A count that breaks the invariant fails the benchmark; the
// timing never does.
func BenchmarkRefreshStorm(b *testing.B) {
	rs := redistest.Start(b, redistest.Options{})
	n, m := *stormSessions, *stormRequests

	var stale atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only refreshed tokens are accepted: an expired one would be a
		// request the storm failed to refresh for.
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer fresh-") {
			stale.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, upstreamBody)
	}))
	defer upstream.Close()
	target, _ := url.Parse(upstream.URL)

	tokens := newFakeTokenEndpoint(*stormLatency)
	prefix := redistest.KeyPrefix(b)
	var replicas []*httptest.Server
	var mgrs []*session.Manager
	for range 2 {
		rdb, _ := redisClient(b, rs.Addr)
		mgr := newManager(b, rdb, prefix, tokens)
		// No retry on 401: a wrong token must show as a failed request.
		srv := httptest.NewServer(newHandler(b, mgr, target, false))
		defer srv.Close()
		replicas = append(replicas, srv)
		mgrs = append(mgrs, mgr)
	}
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 2048,
		DisableCompression:  true,
	}}

	var calls, non2xx, reused, storms int
	var wall time.Duration
	b.ResetTimer()
	for range b.N {
		for range *stormRounds {
			b.StopTimer()
			cookies := make([]string, n)
			for i := range n {
				tk, err := mgrs[i%2].Create(context.Background(), session.Record{
					AccessToken:  secret.String(fmt.Sprintf("expired-%d", i)),
					RefreshToken: tokens.issue(),
					AccessExpiry: time.Now().Add(-time.Second),
					Issuer:       benchIssuer,
					Subject:      fmt.Sprintf("storm-user-%d", i),
					CreatedAt:    time.Now(),
				}, session.ViaLogin)
				if err != nil {
					b.Fatal(err)
				}
				cookies[i] = session.DefaultCookieName + "=" + tk.Encode()
			}
			callsBefore, reusedBefore := tokens.counts()
			b.StartTimer()

			began := time.Now()
			bad := storm(client, replicas, cookies, m)
			took := time.Since(began)

			b.StopTimer()
			callsAfter, reusedAfter := tokens.counts()
			calls += callsAfter - callsBefore
			reused += reusedAfter - reusedBefore
			non2xx += bad
			wall += took
			storms++
			b.StartTimer()
		}
	}
	b.StopTimer()

	if want := storms * n; calls != want {
		b.Errorf("%d storms of %d sessions made %d token-endpoint calls, want %d", storms, n, calls, want)
	}
	if non2xx != 0 || reused != 0 || stale.Load() != 0 {
		b.Errorf("%d non-2xx answers, %d refresh tokens reused, %d stale tokens forwarded; want 0, 0, 0", non2xx, reused, stale.Load())
	}
	s := float64(storms)
	b.ReportMetric(float64(n*m), "requests/storm")
	b.ReportMetric(float64(calls)/s, "token-calls/storm")
	b.ReportMetric(float64(non2xx)/s, "non-2xx/storm")
	b.ReportMetric(float64(reused)/s, "reuse/storm")
	b.ReportMetric(float64(wall.Milliseconds())/s, "ms/storm")
	b.ReportMetric(0, "ns/op")
}

// storm sends m concurrent requests for each session (cookies), request i
// to replica i%len(replicas), all released at once, and returns how many
// were not answered 2xx.
func storm(client *http.Client, replicas []*httptest.Server, cookies []string, m int) int {
	start := make(chan struct{})
	var bad atomic.Int64
	var wg sync.WaitGroup
	for i := range len(cookies) * m {
		wg.Go(func() {
			<-start
			target := replicas[i%len(replicas)].URL + "/api/items"
			if !get(client, target, cookies[i%len(cookies)]) {
				bad.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	return int(bad.Load())
}

// fakeTokenEndpoint is a token endpoint with single-use refresh tokens: a
// refresh token presented a second time is counted as reuse and refused
// with invalid_grant, as a provider with rotation does. Safe for
// concurrent use.
type fakeTokenEndpoint struct {
	latency time.Duration

	mu    sync.Mutex
	live  map[string]bool // refresh tokens issued and not yet spent; guarded by mu
	calls int             // guarded by mu
	reuse int             // guarded by mu
	seq   int             // guarded by mu
}

func newFakeTokenEndpoint(latency time.Duration) *fakeTokenEndpoint {
	return &fakeTokenEndpoint{latency: latency, live: map[string]bool{}}
}

// issue returns a new live refresh token.
func (f *fakeTokenEndpoint) issue() secret.String {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issueLocked()
}

func (f *fakeTokenEndpoint) issueLocked() secret.String {
	f.seq++
	rt := "rt-" + strconv.Itoa(f.seq)
	f.live[rt] = true
	return secret.String(rt)
}

func (f *fakeTokenEndpoint) counts() (calls, reuse int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.reuse
}

// Refresh implements session.Refresher.
func (f *fakeTokenEndpoint) Refresh(ctx context.Context, rt secret.String) (*idp.Token, error) {
	f.mu.Lock()
	f.calls++
	ok := f.live[rt.Reveal()]
	delete(f.live, rt.Reveal())
	var next secret.String
	if ok {
		next = f.issueLocked()
	} else {
		f.reuse++
	}
	seq := f.seq
	f.mu.Unlock()

	t := time.NewTimer(f.latency)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, &idp.TokenError{Err: ctx.Err()}
	}
	if !ok {
		return nil, &idp.TokenError{Code: "invalid_grant", Status: http.StatusBadRequest, Dead: true}
	}
	return &idp.Token{
		AccessToken:  secret.String("fresh-" + strconv.Itoa(seq)),
		RefreshToken: next,
		TokenType:    "Bearer",
		Expiry:       time.Now().Add(time.Hour),
	}, nil
}

// steadyRefresher fails every refresh: the steady-state benchmark's
// tokens are fresh, so a call is a bug in the benchmark or the engine.
type steadyRefresher struct{}

func (steadyRefresher) Refresh(context.Context, secret.String) (*idp.Token, error) {
	return nil, errors.New("bench: unexpected refresh in the steady state")
}

const benchIssuer = "https://idp.bench.invalid"

// benchSecret is the server secret every replica of one run shares.
var benchSecret = func() []byte {
	s := make([]byte, 32)
	_, _ = rand.Read(s)
	return s
}()

// redisClient builds the client as cmd/tokenrelay does and counts the
// commands it sends (a pipeline counts as its commands).
func redisClient(b *testing.B, addr string) (redis.UniversalClient, *atomic.Int64) {
	b.Helper()
	rdb, err := session.NewRedisClient(session.RedisClientOptions{URL: "redis://" + addr})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rdb.Close() })
	n := new(atomic.Int64)
	rdb.AddHook(countHook{n})
	return rdb, n
}

type countHook struct{ n *atomic.Int64 }

func (countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

var _ redis.Hook = countHook{}

// newManager builds a session manager on a RedisStore as cmd/tokenrelay
// does; a nil refresher fails every refresh.
func newManager(b *testing.B, rdb redis.UniversalClient, prefix string, r session.Refresher) *session.Manager {
	b.Helper()
	if r == nil {
		r = steadyRefresher{}
	}
	mgr, err := session.NewManager(session.ManagerOptions{
		Backend:    session.NewRedisStore(rdb, session.RedisStoreOptions{KeyPrefix: prefix}),
		Secret:     benchSecret,
		Refresher:  r,
		Issuer:     benchIssuer,
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	return mgr
}

// newHandler builds the proxy as cmd/tokenrelay does: one required-auth
// route, metrics on a registry, the JSON access log (written to nowhere,
// but formatted).
func newHandler(b *testing.B, mgr *session.Manager, target *url.URL, retry bool) *proxy.Handler {
	b.Helper()
	public, _ := url.Parse("http://127.0.0.1")
	h, err := proxy.New(proxy.Options{
		Sessions:   mgr,
		Provider:   noProvider{},
		Cookie:     session.CookieOptions{Secure: true, SameSite: http.SameSiteLaxMode},
		PublicURL:  public,
		Routes:     []proxy.Route{{Name: "api", Path: "/api/", Upstream: target, Auth: proxy.AuthRequired}},
		RetryOn401: retry,
		Transport:  proxy.NewTransport(proxy.TransportOptions{}),
		Registerer: prometheus.NewRegistry(),
		Logger:     slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// noProvider is a proxy.Provider for benchmarks that never log in.
type noProvider struct{}

var errNoProvider = errors.New("bench: no identity provider")

func (noProvider) AuthCodeURL(state, nonce, verifier string) string { return "" }
func (noProvider) Exchange(context.Context, string, string) (*idp.Token, error) {
	return nil, errNoProvider
}
func (noProvider) Identify(context.Context, *idp.Token, string) (*idp.Identity, error) {
	return nil, errNoProvider
}
func (noProvider) Revoke(context.Context, secret.String) error        { return errNoProvider }
func (noProvider) EndSessionURL(secret.String, string, string) string { return "" }
func (noProvider) VerifyLogoutToken(context.Context, string) (*idp.LogoutToken, error) {
	return nil, errNoProvider
}
func (noProvider) Capture([]byte) (*idp.Token, *idp.Identity, []byte, bool, error) {
	return nil, nil, nil, false, errNoProvider
}

var _ proxy.Provider = noProvider{}
