package bench

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// binaries holds the tokenrelay binaries built for this run, one per build
// variant ("" plain, "pprof" with the profiling overlay).
var binaries struct {
	mu    sync.Mutex
	dir   string
	built map[string]string
}

// relayBinary builds cmd/tokenrelay once per variant, as `make build` does
// (no race detector: this measures the binary users run). The pprof
// variant adds testdata/pprof_overlay.go to package main through
// `go build -overlay`, without touching cmd/: a pprof listener on
// BENCH_PPROF_ADDR, off when that variable is unset.
func relayBinary(b *testing.B, variant string) string {
	b.Helper()
	binaries.mu.Lock()
	defer binaries.mu.Unlock()
	if bin, ok := binaries.built[variant]; ok {
		return bin
	}
	if variant == "against" {
		bin, err := filepath.Abs(*flagAgainst)
		if err != nil {
			b.Fatal(err)
		}
		return bin
	}
	if binaries.dir == "" {
		dir, err := os.MkdirTemp("", "tokenrelay-bench-")
		if err != nil {
			b.Fatal(err)
		}
		binaries.dir, binaries.built = dir, map[string]string{}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(binaries.dir, "tokenrelay"+variant)
	args := []string{"build", "-trimpath", "-o", bin}
	if variant == "pprof" {
		overlay, err := writeOverlay(root, binaries.dir)
		if err != nil {
			b.Fatal(err)
		}
		args = append(args, "-overlay", overlay)
	}
	cmd := exec.Command("go", append(args, "./cmd/tokenrelay")...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
	}
	binaries.built[variant] = bin
	return bin
}

func writeOverlay(root, dir string) (string, error) {
	src, err := filepath.Abs(filepath.Join("testdata", "pprof_overlay.go"))
	if err != nil {
		return "", err
	}
	target := filepath.Join(root, "cmd", "tokenrelay", "zz_bench_pprof.go")
	path := filepath.Join(dir, "overlay.json")
	body := fmt.Sprintf(`{"Replace":{%q:%q}}`, target, src)
	return path, os.WriteFile(path, []byte(body), 0o600)
}

// removeBinaries deletes what relayBinary built; TestMain calls it.
func removeBinaries() {
	binaries.mu.Lock()
	defer binaries.mu.Unlock()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
}

// relayOptions describe one tokenrelay process.
type relayOptions struct {
	name      string
	variant   string // relayBinary variant: "", "pprof" or "against"
	store     string // memory | redis
	redisAddr string
	keyPrefix string
	issuer    string // the OP's issuer
	upstream  string // the upstream's base URL
	secret    string // hex server secret; replicas share one
	publicURL string // empty: its own URL
	noRetry   bool   // refresh.retry_on_401: false
	verify    bool   // forward_auth.listen on a free address
	logLevel  string // log.level; empty: -bench.relay.loglevel
	env       []string
	// policyRoute adds the /policy/ route (policyRouteYAML).
	policyRoute bool
}

// policyPath is a request path on the /policy/ route.
const policyPath = "/policy/items"

// policyRouteYAML is a route like /api/ with a policy of three CEL rules
// (a claim, the method, a header) and the default identity headers, so the
// steady state measures what the policy and identity stages add: the
// session read with its claims, the evaluation, the headers.
const policyRouteYAML = `  - path: /policy/
    upstream: %q
    policy:
      expression: 'claims.email.endsWith("@bench.example") && request.method in ["GET", "HEAD"] && request.headers["accept"] == "application/json"'
    identity: {}
`

// relay is a running tokenrelay process.
type relay struct {
	*child
	URL   string // traffic listener
	Admin string // admin listener (/metrics, /readyz)
	// Verify is the forward-auth listener ("" unless relayOptions.verify).
	Verify string
}

// startRelay writes a configuration for o and runs tokenrelay serve with
// it, waiting for /readyz.
func startRelay(b *testing.B, o relayOptions) *relay {
	b.Helper()
	listen, admin := freeAddr(b), freeAddr(b)
	r := &relay{URL: "http://" + listen, Admin: "http://" + admin}
	if o.publicURL == "" {
		o.publicURL = r.URL
	}
	var verify string
	if o.verify {
		verify = freeAddr(b)
		r.Verify = "http://" + verify
	}
	cfg := filepath.Join(b.TempDir(), o.name+".yaml")
	if err := os.WriteFile(cfg, []byte(relayConfig(o, listen, admin, verify)), 0o600); err != nil {
		b.Fatal(err)
	}
	logOut := relayLog(b, o.name)
	r.child = startChild(b, o.name, relayBinary(b, o.variant), []string{"serve", "-config", cfg}, o.env, logOut, logOut)
	waitOK(b, r.child, r.Admin+"/readyz")
	return r
}

// relayLog is where tokenrelay's output (the access log) goes, by
// -bench.relay.log: nil for a pipe the harness drains (as a container
// runtime reads a pod's stderr), a file in the benchmark's temporary
// directory, or /dev/null.
func relayLog(b *testing.B, name string) io.Writer {
	b.Helper()
	var f *os.File
	var err error
	switch *flagRelayLog {
	case "pipe":
		return nil
	case "file":
		path := filepath.Join(b.TempDir(), name+".log")
		f, err = os.Create(path)
		b.Logf("%s logs to %s", name, path)
	case "null":
		f, err = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	default:
		b.Fatalf("-bench.relay.log=%q: want pipe, file or null", *flagRelayLog)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

// relayConfig is what an operator would write: defaults everywhere except
// the addresses, the provider, the store and one API route (and the
// forward-auth listener on verify, unless ""). The access log stays on
// (log.level info, JSON, to stderr, which the harness reads through a pipe
// as a container runtime would) unless -bench.relay.loglevel says
// otherwise.
func relayConfig(o relayOptions, listen, admin, verify string) string {
	if o.logLevel == "" {
		o.logLevel = *flagLogLevel
	}
	store := "store: memory"
	if o.store == "redis" {
		store = fmt.Sprintf("store: redis\n  redis:\n    url: %q\n    key_prefix: %q", "redis://"+o.redisAddr+"/0", o.keyPrefix)
	}
	retry := ""
	if o.noRetry {
		retry = "refresh:\n  retry_on_401: false\n"
	}
	if verify != "" {
		retry += fmt.Sprintf("forward_auth:\n  listen: %q\n", verify)
	}
	policyRoute := ""
	if o.policyRoute {
		policyRoute = fmt.Sprintf(policyRouteYAML, o.upstream)
	}
	return fmt.Sprintf(`# written by the benchmark harness (bench/relay_test.go)
listen: %q
admin_listen: %q
public_url: %q
log:
  level: %s
provider:
  type: oidc
  issuer: %q
  client_id: %q
  client_secret: %q
  auth_method: client_secret_basic
session:
  %s
  secret: %q
%sroutes:
  - { path: /api/, upstream: %q, auth: required }
%s`, listen, admin, o.publicURL, o.logLevel, o.issuer, opClientID, opClientSecret, store, o.secret, retry, o.upstream, policyRoute)
}

// newSecret is a random server secret, hex.
func newSecret() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return hex.EncodeToString(k)
}

// Mallocs scrapes go_memstats_mallocs_total (heap objects allocated so far)
// from the admin listener. A scrape allocates too; see readCost.
func (r *relay) Mallocs() (uint64, error) {
	res, err := http.Get(r.Admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_mallocs_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return uint64(f), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no go_memstats_mallocs_total in /metrics")
}

// noRedirect is a client that returns redirects instead of following them,
// as the login steps need to see each one.
var noRedirect = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// login runs the authorization-code flow through tokenrelay at relayURL
// for user sub, with an access token that lives ttl seconds, and returns
// the session cookie ("name=value"). The OP approves at once; this client
// plays the browser, carrying the login-binding cookie by hand.
func login(relayURL, sub string, ttl int) (string, error) {
	res, err := noRedirect.Get(relayURL + "/.auth/login?return_to=/api/items")
	if err != nil {
		return "", err
	}
	res.Body.Close()
	authz, err := res.Location()
	if err != nil {
		return "", fmt.Errorf("login: %s, no redirect: %w", res.Status, err)
	}
	binding := cookiePairs(res)
	q := authz.Query()
	q.Set("bench_sub", sub)
	q.Set("bench_ttl", strconv.Itoa(ttl))
	authz.RawQuery = q.Encode()
	if res, err = noRedirect.Get(authz.String()); err != nil {
		return "", err
	}
	res.Body.Close()
	back, err := res.Location()
	if err != nil {
		return "", fmt.Errorf("authorize: %s, no redirect: %w", res.Status, err)
	}
	req, _ := http.NewRequest(http.MethodGet, back.String(), nil)
	req.Header.Set("Cookie", binding)
	if res, err = noRedirect.Do(req); err != nil {
		return "", err
	}
	res.Body.Close()
	for _, c := range res.Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			return c.Name + "=" + c.Value, nil
		}
	}
	return "", fmt.Errorf("callback: %s, no %s cookie", res.Status, sessionCookie)
}

// sessionCookie is tokenrelay's default session cookie name.
const sessionCookie = "__Host-tokenrelay"

// cookiePairs is the name=value pairs of res's Set-Cookie headers, as a
// Cookie header.
func cookiePairs(res *http.Response) string {
	var pairs []string
	for _, c := range res.Cookies() {
		pairs = append(pairs, c.Name+"="+c.Value)
	}
	return strings.Join(pairs, "; ")
}

// loginAll logs n users in through relays (user i through relays[i%len])
// with access tokens living ttl seconds, a few logins at a time.
func loginAll(relays []*relay, prefix string, n, ttl int) ([]string, error) {
	cookies := make([]string, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cookies[i], errs[i] = login(relays[i%len(relays)].URL, prefix+strconv.Itoa(i), ttl)
		})
	}
	wg.Wait()
	return cookies, errors.Join(errs...)
}
