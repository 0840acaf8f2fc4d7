package bench

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The harness re-executes this test binary to run its helper servers in
// processes of their own, so that each one's CPU time and allocations can
// be read apart from the load generator's. The environment says what to
// run.
const (
	envRole    = "BENCH_ROLE"    // upstream | bare | op
	envKey     = "BENCH_KEY"     // PEM file of the provider's RSA signing key
	envIssuer  = "BENCH_ISSUER"  // upstream: the issuer its tokens must carry
	envTarget  = "BENCH_TARGET"  // bare: the upstream URL
	envVerify  = "BENCH_VERIFY"  // upstream: "1" verifies the bearer JWT
	envBody    = "BENCH_BODY"    // upstream: bytes of JSON answered
	envLatency = "BENCH_LATENCY" // op: extra time per token-endpoint call

	// readyPrefix starts the one line a role prints on stdout once it
	// listens: "bench-ready url=<base URL> stats=<stats URL>".
	readyPrefix = "bench-ready "
)

// runRole serves one helper role until the process is killed.
func runRole(role string) error {
	var h http.Handler
	var stats func() map[string]int64
	var onListen func(base string)
	switch role {
	case "upstream":
		up, err := newUpstream()
		if err != nil {
			return err
		}
		h, stats = up, up.stats
	case "bare":
		target, err := url.Parse(os.Getenv(envTarget))
		if err != nil || target.Host == "" {
			return fmt.Errorf("%s=%q is not an upstream URL", envTarget, os.Getenv(envTarget))
		}
		h = newBareProxy(target)
	case "op":
		p, err := newOP()
		if err != nil {
			return err
		}
		h, stats, onListen = p, p.stats, p.setIssuer
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	return serveRole(h, stats, onListen)
}

// serveRole listens on two loopback ports, one for the role's traffic and
// one for its statistics (so that reading them never touches the measured
// handler), prints the ready line and serves until killed.
func serveRole(h http.Handler, stats func() map[string]int64, onListen func(string)) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	statsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	base := "http://" + ln.Addr().String()
	if onListen != nil {
		onListen(base)
	}
	go func() {
		_ = http.Serve(statsLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			out := map[string]int64{"mallocs": int64(mallocs())}
			if stats != nil {
				for k, v := range stats() {
					out[k] = v
				}
			}
			_ = json.NewEncoder(w).Encode(out)
		}))
	}()
	fmt.Printf("%surl=%s stats=http://%s\n", readyPrefix, base, statsLn.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// mallocs is the count of heap objects this process has allocated, tiny
// ones included: what runtime.MemStats.Mallocs and Prometheus's
// go_memstats_mallocs_total report, read without stopping the world.
func mallocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/tiny/allocs:objects"}}
	metrics.Read(s)
	var n uint64
	for _, v := range s {
		if v.Value.Kind() == metrics.KindUint64 {
			n += v.Value.Uint64()
		}
	}
	return n
}

// upstream is the API behind the proxies. Like a real resource server it
// verifies the RS256 access token of every request (signature, issuer,
// expiry) before answering a fixed JSON body; a request without a valid
// token gets 401.
type upstream struct {
	key    *rsa.PublicKey
	parser *jwt.Parser
	verify bool
	body   []byte

	requests, unauthorized atomic.Int64
}

func newUpstream() (*upstream, error) {
	key, err := readKey(os.Getenv(envKey))
	if err != nil {
		return nil, err
	}
	size, err := strconv.Atoi(os.Getenv(envBody))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", envBody, err)
	}
	return &upstream{
		key: &key.PublicKey,
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}),
			jwt.WithIssuer(os.Getenv(envIssuer)), jwt.WithExpirationRequired()),
		verify: os.Getenv(envVerify) == "1",
		body:   jsonBody(size),
	}, nil
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.requests.Add(1)
	if u.verify && !u.authorized(r) {
		u.unauthorized.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(u.body)))
	_, _ = w.Write(u.body)
}

func (u *upstream) authorized(r *http.Request) bool {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	_, err := u.parser.Parse(raw, func(*jwt.Token) (any, error) { return u.key, nil })
	return err == nil
}

func (u *upstream) stats() map[string]int64 {
	return map[string]int64{"requests": u.requests.Load(), "unauthorized": u.unauthorized.Load()}
}

// jsonBody is a JSON list of items about size bytes long.
func jsonBody(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < size-40; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item %d","done":false}`, i, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// newBareProxy is the baseline every tokenrelay figure is compared with:
// what a careful engineer gets from the standard library in twenty lines.
// It has the connection pooling and copy-buffer pooling tokenrelay has (a
// proxy without them churns connections and allocates 32 KiB per response,
// which would flatter tokenrelay's ratio), and nothing else: no routing,
// sessions, header policy, metrics or access log.
func newBareProxy(target *url.URL) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			// tokenrelay's own upstream transport keeps 256 idle
			// connections per host; Go's default of 2 would reconnect
			// constantly at 64 clients.
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		},
		BufferPool: &bufferPool{},
	}
}

// bufferPool lends ReverseProxy its 32 KiB copy buffers.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// readKey reads a PKCS#8 PEM RSA private key.
func readKey(path string) (*rsa.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, errors.New(path + ": no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New(path + ": not an RSA key")
	}
	return rk, nil
}
