package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/identity"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/redistest"
	"github.com/tokenrelay/tokenrelay/proxy"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
	"github.com/tokenrelay/tokenrelay/session/redisstore"
)

// This file isolates tokenrelay's handler from net/http's server, client
// and connections: ServeHTTP is called directly with an upstream transport
// that answers from memory, so allocs/op and B/op are the handler's own
// (ReverseProxy's included), -benchmem style. It wires proxy.New and
// session.NewManager in-process, the only part of the harness that uses
// tokenrelay's Go API rather than the binary. The optimisation loop is:
//
//	go test -run '^$' -bench Handler -benchmem -memprofile mem.out ./bench/

// handlerResult is one in-process handler benchmark.
type handlerResult struct {
	Name              string  `json:"name"`
	NsPerOp           float64 `json:"ns_per_op"`
	AllocsPerOp       int64   `json:"allocs_per_op"`
	BytesPerOp        int64   `json:"bytes_per_op"`
	AddedAllocsOverRP int64   `json:"added_allocs_over_bare"`
	AddedBytesOverRP  int64   `json:"added_bytes_over_bare"`
}

// BenchmarkHandler measures one proxied API call through the handler:
// bare (httputil.ReverseProxy as in the steady state), memory and redis
// (tokenrelay's handler with a fresh session in that store; redis does a
// real round trip to a redis-server on loopback), and verify-memory and
// verify-redis: the same call asked of the forward-auth verify endpoint,
// as an ingress asks it (the answer carries the token; no upstream).
func BenchmarkHandler(b *testing.B) {
	for _, kind := range handlerKinds {
		b.Run(kind, func(b *testing.B) { benchHandler(b, kind) })
	}
}

var handlerKinds = []string{"bare", "memory", "memory-policy", "redis", "verify-memory", "verify-redis"}

// handlerAllocs measures the handler benchmarks for the results of `make
// bench`. testing.Benchmark cannot run inside a running benchmark (both
// take the testing package's benchmark lock), so this counts as it does:
// runtime.MemStats.Mallocs and TotalAlloc before and after a bounded
// number of calls, in one goroutine, after a warm-up.
func handlerAllocs(b *testing.B) []handlerResult {
	b.Helper()
	var out []handlerResult
	for _, kind := range handlerKinds {
		hc := newHandlerCase(b, kind)
		for range 1000 {
			hc.serve(b)
		}
		var m0, m1 runtime.MemStats
		n := 0
		runtime.ReadMemStats(&m0)
		start := time.Now()
		for ; n < 200_000 && time.Since(start) < time.Second; n++ {
			hc.serve(b)
		}
		took := time.Since(start)
		runtime.ReadMemStats(&m1)
		hc.check(b)
		out = append(out, handlerResult{
			Name: kind, NsPerOp: float64(took.Nanoseconds()) / float64(n),
			AllocsPerOp: int64((m1.Mallocs - m0.Mallocs) / uint64(n)),
			BytesPerOp:  int64((m1.TotalAlloc - m0.TotalAlloc) / uint64(n)),
		})
	}
	for i := range out {
		out[i].AddedAllocsOverRP = out[i].AllocsPerOp - out[0].AllocsPerOp
		out[i].AddedBytesOverRP = out[i].BytesPerOp - out[0].BytesPerOp
	}
	return out
}

// handlerCase is one handler with the request it serves.
type handlerCase struct {
	kind string
	h    http.Handler
	in   *http.Request
	up   *memUpstream
	w    *discardWriter
	// verify: h is the forward-auth endpoint, whose answer carries the
	// token instead of sending it upstream.
	verify bool
}

func newHandlerCase(b *testing.B, kind string) *handlerCase {
	b.Helper()
	up := newMemUpstream(*flagBody)
	up.want = "Bearer " + benchAccessToken()
	target, _ := url.Parse("http://upstream.bench.invalid")
	in := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080/api/items", nil)
	in.Header.Set("Accept", "application/json")
	hc := &handlerCase{kind: kind, in: in, up: up, w: &discardWriter{header: http.Header{}}}
	if kind == "bare" {
		hc.h = &httputil.ReverseProxy{
			Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
			Transport:  up,
			BufferPool: &bufferPool{},
		}
		in.Header.Set("Authorization", up.want)
		in.Header.Set("Cookie", "theme=dark")
		return hc
	}
	store, verify := strings.CutPrefix(kind, "verify-")
	h, cookie := inProcessRelay(b, store, target, up)
	hc.h = h
	if verify {
		// What Traefik or Caddy sends: the original method and URI.
		hc.h = http.HandlerFunc(h.ServeForwardAuth)
		in = httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8081/.auth/verify", nil)
		in.Header.Set("Accept", "application/json")
		in.Header.Set("X-Forwarded-Method", http.MethodGet)
		in.Header.Set("X-Forwarded-Uri", "/api/items")
		hc.in, hc.verify = in, true
	}
	in.Header.Set("Cookie", "theme=dark; "+cookie)
	return hc
}

// serve makes one call with a fresh copy of the request (the handler may
// change the one it is given), as net/http's server would.
func (hc *handlerCase) serve(b *testing.B) {
	r := *hc.in
	r.Header = hc.in.Header.Clone()
	clear(hc.w.header)
	hc.w.status = 0
	hc.h.ServeHTTP(hc.w, &r)
	if hc.w.status != http.StatusOK {
		b.Fatalf("%s: status %d, want 200", hc.kind, hc.w.status)
	}
	if hc.verify && hc.w.header.Get("Authorization") != hc.up.want {
		hc.up.bad++
	}
}

// check fails b when a request reached the upstream without the token (or
// a verify answer lacked it).
func (hc *handlerCase) check(b *testing.B) {
	if hc.up.bad > 0 {
		b.Fatalf("%s: %d requests reached the upstream without the session's token", hc.kind, hc.up.bad)
	}
}

func benchHandler(b *testing.B, kind string) {
	hc := newHandlerCase(b, kind)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		hc.serve(b)
	}
	b.StopTimer()
	hc.check(b)
}

// benchAccessToken stands for an access token of realistic size (a signed
// JWT of about 800 bytes). Made on first use: `go test ./...` runs no
// benchmark and should not pay for an RSA key.
var benchAccessToken = sync.OnceValue(func() string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	t, err := signToken(key, accessClaims("https://op.bench.invalid", "bench-user", 24*3600))
	if err != nil {
		panic(err)
	}
	return t
})

// inProcessRelay builds tokenrelay's handler as cmd/tokenrelay does (one
// required-auth route, metrics, JSON access log to a discarding writer,
// the forward-auth endpoint on) over a store of kind, with one session as
// an OIDC login leaves it, and returns its cookie. memory-policy gives the
// route the policy and the identity headers of the steady state's /policy/
// route.
func inProcessRelay(b *testing.B, kind string, target *url.URL, up http.RoundTripper) (*proxy.Handler, string) {
	b.Helper()
	var backend session.Backend = session.NewMemoryStore(nil)
	if kind == "redis" {
		rs := redistest.Start(b, redistest.Options{})
		rdb, err := redisstore.NewClient(redisstore.Options{URL: "redis://" + rs.Addr})
		if err != nil {
			b.Fatal(err)
		}
		store := redisstore.New(rdb, redisstore.Options{KeyPrefix: "bench:handler:"}, nil)
		b.Cleanup(func() { _ = store.Close(); _ = rdb.Close() })
		backend = store
	}
	p, err := idp.New(context.Background(), idp.Options{Type: idp.TypeOAuth2, ClientID: opClientID,
		AuthorizationEndpoint: "https://op.bench.invalid/authorize", TokenEndpoint: "https://op.bench.invalid/token"})
	if err != nil {
		b.Fatal(err)
	}
	mgr, err := session.NewManager(session.ManagerOptions{Backend: backend, Secret: []byte(newSecret()),
		Refresher: p, Issuer: "https://op.bench.invalid", Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	public, _ := url.Parse("http://127.0.0.1:8080")
	route := proxy.Route{Name: "api", Path: "/api/", Upstream: target.String(), Auth: proxy.AuthRequired}
	if kind == "memory-policy" {
		route.Policy.Expression = `claims.email.endsWith("@bench.example") && request.method in ["GET", "HEAD"] && request.headers["accept"] == "application/json"`
		route.Identity = &identity.Options{}
	}
	h, err := proxy.New(proxy.Options{
		Sessions: mgr, Provider: p, PublicURL: public,
		Cookie:      session.CookieOptions{Secure: new(true), SameSite: session.SameSiteLax},
		Routes:      []proxy.Route{route},
		Retry:       proxy.RetryOptions{RetryOn401: new(true)},
		ForwardAuth: proxy.ForwardAuthOptions{Listen: "127.0.0.1:8081"},
		Transport:   up, Registerer: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	tk, err := mgr.Create(context.Background(), session.Record{
		AccessToken: secret.String(benchAccessToken()), RefreshToken: secret.String(randomString()),
		IDToken: secret.String(benchAccessToken()), AccessExpiry: now.Add(24 * time.Hour),
		Issuer: "https://op.bench.invalid", Subject: "bench-user", SID: randomString(),
		Claims: map[string]any{"sub": "bench-user", "name": "Bench User", "email": "bench@bench.example"},
	}, session.ViaLogin)
	if err != nil {
		b.Fatal(err)
	}
	return h, session.DefaultCookieName + "=" + tk.Encode()
}

// memUpstream answers every request from memory with a JSON body and
// counts requests whose Authorization is not want.
type memUpstream struct {
	body []byte
	want string
	bad  int
}

func newMemUpstream(size int) *memUpstream { return &memUpstream{body: jsonBody(size)} }

func (u *memUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") != u.want {
		u.bad++
	}
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(u.body))}},
		Body:   io.NopCloser(bytes.NewReader(u.body)), ContentLength: int64(len(u.body)), Request: r,
	}, nil
}

// discardWriter is a ResponseWriter that keeps the status and drops the
// body, reused across iterations so that it allocates nothing itself.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}
