package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// regexpAPIReady matches the sample API's ready line and captures its URL.
var regexpAPIReady = regexp.MustCompile(`api ready"? url=(http://\S+)`)

// redisKeyPrefix is session.redis.key_prefix in the configuration a stack
// on Redis writes (the default, spelled out so the tests can SCAN it).
const redisKeyPrefix = "tokenrelay:"

// stackOptions shape one demo stack: OP, API, tap, and one or more
// tokenrelay replicas. The zero value is one replica on the memory store.
type stackOptions struct {
	// AccessTTL is the OP's access token lifetime (default 30s).
	AccessTTL time.Duration
	// RefreshAhead is tokenrelay's refresh.ahead (default 1s).
	RefreshAhead time.Duration
	// IdleTimeout is tokenrelay's session.idle_timeout (default 1h).
	IdleTimeout time.Duration
	// PublicHost is the host of tokenrelay's public URL (default
	// 127.0.0.1). Browsers treat http://localhost as a secure context, so
	// they keep the Secure, __Host- session cookie there and not on
	// http://127.0.0.1. tokenrelay listens on 127.0.0.1 either way.
	PublicHost string
	// Replicas is the number of tokenrelay processes (default 1). They
	// share one session secret; more than one needs RedisAddr.
	Replicas int
	// RedisAddr is the host:port of a redis-server for session.store
	// redis; "" means the memory store.
	RedisAddr string
	// RedisOpTimeout is session.redis.op_timeout (default: tokenrelay's,
	// 2s). Storm tests that prove exactly-once refreshes raise it, so that
	// a CI machine too busy to answer within 2 s fails no request of
	// theirs: they test correctness, not latency.
	RedisOpTimeout time.Duration
	// SharedPublicURL gives every replica replica 0's public URL, as
	// behind a load balancer; otherwise each replica's public URL is its
	// own address. Either way the OP knows only replica 0's URLs.
	SharedPublicURL bool
	// PublicURL, when set, is the URL browsers use: an ingress in front of
	// tokenrelay serves it (forward-auth). Every replica's public_url and
	// the OP's redirect URIs name it, and the stack's RelayURL is it.
	PublicURL string
	// PostLogoutRedirect sets logout.post_logout_redirect_uri to replica
	// 0's public URL + "/".
	PostLogoutRedirect bool
	// DirectAPI routes /api/ straight to the API instead of through the
	// tap; the stack's Tap is then nil.
	DirectAPI bool
	// LogLevel is tokenrelay's log.level (default debug).
	LogLevel string
	// Env is added to each replica's environment (e.g. GOGC).
	Env []string
	// AllowInvalidGrant turns off the end-of-test check that the OP never
	// answered invalid_grant, saw a refresh token twice or had a
	// back-channel logout refused (for tests that provoke one on purpose,
	// or assert the OP's counters themselves).
	AllowInvalidGrant bool
	// Configure, when set, edits replica i's generated configuration
	// (YAML text) before it is written; the OP and the API are running.
	Configure func(s *stack, i int, yaml string) string
	// OPArgs are more flags of the OP (its test-only features).
	OPArgs []string
}

// relay is one running tokenrelay replica.
type relay struct {
	// URL is the replica's own public address (http://PublicHost:port).
	URL string
	// AdminURL is its admin listener (/readyz, /metrics).
	AdminURL string
	Proc     *process
	// ConfigPath is its generated configuration file.
	ConfigPath string
	// listen is the address it listens on (always 127.0.0.1).
	listen string
}

// stack is a running demo stack. The browser reaches only the replicas;
// /api/ goes through the tap (which records what the API received) to the
// API, and / goes to the API directly. RelayURL, AdminURL, Relay and
// ConfigPath are replica 0's.
type stack struct {
	OP       *op
	APIURL   string
	Tap      *tap
	Relays   []*relay
	RelayURL string
	AdminURL string
	Relay    *process
	// ConfigPath is replica 0's generated configuration file.
	ConfigPath string
}

// relayURLs returns every replica's URL, replica 0 first.
func (s *stack) relayURLs() []string {
	urls := make([]string, len(s.Relays))
	for i, r := range s.Relays {
		urls[i] = r.URL
	}
	return urls
}

// startStack starts a full stack for one test, stopped when the test ends.
// Unless o.AllowInvalidGrant, at the end it checks that the OP never saw a
// refresh token twice and never had a back-channel logout refused.
func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	requireBinaries(t)
	if o.RefreshAhead == 0 {
		o.RefreshAhead = time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = time.Hour
	}
	if o.PublicHost == "" {
		o.PublicHost = "127.0.0.1"
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.LogLevel == "" {
		o.LogLevel = "debug"
	}
	if o.Replicas > 1 && o.RedisAddr == "" {
		t.Fatal("startStack: replicas need a shared Redis")
	}
	s := &stack{}
	for range o.Replicas {
		relayPort, adminPort := freePort(t), freePort(t)
		s.Relays = append(s.Relays, &relay{
			URL:      fmt.Sprintf("http://%s:%d", o.PublicHost, relayPort),
			AdminURL: fmt.Sprintf("http://127.0.0.1:%d", adminPort),
			listen:   fmt.Sprintf("127.0.0.1:%d", relayPort),
		})
	}
	s.RelayURL, s.AdminURL = s.Relays[0].URL, s.Relays[0].AdminURL
	if o.PublicURL != "" {
		s.RelayURL, o.SharedPublicURL = o.PublicURL, true
	}
	s.OP = startOP(t, opOptions{RelayURL: s.RelayURL, AccessTTL: o.AccessTTL, Args: o.OPArgs})
	if !o.AllowInvalidGrant {
		// Registered after the OP started, so it runs before the OP stops.
		t.Cleanup(func() {
			if st := s.OP.Stats(t); st.InvalidGrant != 0 || st.RefreshReused != 0 || st.BackchannelError != 0 {
				t.Errorf("the OP counted invalid_grant %d, reused refresh tokens %d, back-channel logout errors %d; want 0 each (a refresh token was spent twice, or a logout token refused)",
					st.InvalidGrant, st.RefreshReused, st.BackchannelError)
			}
		})
	}

	api := startProcess(t, "api", bins.root, nil, bins.api, "-listen=127.0.0.1:0", "-issuer="+s.OP.Issuer, "-audience="+apiResource, "-metrics-url="+s.AdminURL+"/metrics")
	s.APIURL = api.waitOutput(t, regexpAPIReady, 30*time.Second)[1]
	waitReady(t, api, s.APIURL+"/healthz", 10*time.Second)

	upstream := s.APIURL
	if !o.DirectAPI {
		s.Tap = newTap(t, s.APIURL)
		upstream = s.Tap.URL
	}

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	secret := hex.EncodeToString(key)
	dir := t.TempDir()
	for i, r := range s.Relays {
		name := "tokenrelay"
		if o.Replicas > 1 {
			name = fmt.Sprintf("tokenrelay-%c", 'a'+i)
		}
		r.ConfigPath = filepath.Join(dir, name+".yaml")
		cfg := relayConfig(s, r, secret, upstream, o)
		if o.Configure != nil {
			cfg = o.Configure(s, i, cfg)
		}
		if err := os.WriteFile(r.ConfigPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		r.Proc = startProcess(t, name, bins.root, append([]string{"GORACE=halt_on_error=0"}, o.Env...), bins.tokenrelay, "serve", "-config", r.ConfigPath)
	}
	for _, r := range s.Relays {
		waitReady(t, r.Proc, r.AdminURL+"/readyz", 60*time.Second)
	}
	s.Relay, s.ConfigPath = s.Relays[0].Proc, s.Relays[0].ConfigPath
	return s
}

// relayConfig is replica r's configuration: its own listeners, and the
// stack's OP, session secret and store, and routes (/api/ to upstream).
func relayConfig(s *stack, r *relay, secret, upstream string, o stackOptions) string {
	publicURL := r.URL
	if o.SharedPublicURL {
		publicURL = s.RelayURL
	}
	store := "store: memory"
	if o.RedisAddr != "" {
		store = fmt.Sprintf("store: redis\n  redis:\n    url: %q\n    key_prefix: %q", "redis://"+o.RedisAddr+"/0", redisKeyPrefix)
		if o.RedisOpTimeout > 0 {
			store += fmt.Sprintf("\n    op_timeout: %s", o.RedisOpTimeout)
		}
	}
	var logout string
	if o.PostLogoutRedirect {
		logout = fmt.Sprintf("logout:\n  post_logout_redirect_uri: %q\n", s.RelayURL+"/")
	}
	return fmt.Sprintf(`# generated by the e2e harness
listen: %q
admin_listen: %q
public_url: %q
log:
  level: %s
  format: text
provider:
  type: oidc
  issuer: %q
  client_id: %q
  client_secret: %q
  auth_method: client_secret_basic
  scopes: [openid, offline_access, profile, email, api:read]
  auth_params:
    prompt: consent
session:
  %s
  secret: %q
  idle_timeout: %s
  login_state_ttl: %s
  max_lifetime: %s
%srefresh:
  ahead: %s
  timeout: 10s
routes:
  - path: /api/
    upstream: %q
    auth: required
  - path: /
    upstream: %q
    auth: none
`, r.listen, strings.TrimPrefix(r.AdminURL, "http://"), publicURL, o.LogLevel,
		s.OP.Issuer, opClientID, opClientSecret, store, secret, o.IdleTimeout, loginStateTTL, sessionMaxAge,
		logout, o.RefreshAhead, upstream, s.APIURL)
}

// tap sits between tokenrelay and the API and records what tokenrelay sent
// upstream, so tests can check the exact Authorization header.
type tap struct {
	URL string

	mu   sync.Mutex
	seen []tapped // guarded by mu
}

// tapped is one request as the upstream received it.
type tapped struct {
	Method        string
	Path          string
	Authorization string
	Cookie        string
	Traceparent   string
	Status        int
	Header        http.Header
}

func newTap(t *testing.T, apiURL string) *tap {
	t.Helper()
	target, err := url.Parse(apiURL)
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		method, header := r.Method, r.Header.Clone()
		authz, cookie, parent := r.Header.Get("Authorization"), r.Header.Get("Cookie"), r.Header.Get("Traceparent")
		rp.ServeHTTP(rec, r)
		tp.mu.Lock()
		tp.seen = append(tp.seen, tapped{Method: method, Path: r.URL.Path, Authorization: authz, Cookie: cookie, Traceparent: parent, Status: rec.status, Header: header})
		tp.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	tp.URL = srv.URL
	return tp
}

// Requests returns what the upstream received so far.
func (tp *tap) Requests() []tapped {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]tapped(nil), tp.seen...)
}

// Last returns the last request the upstream received.
func (tp *tap) Last(t *testing.T) tapped {
	t.Helper()
	r := tp.Requests()
	if len(r) == 0 {
		t.Fatal("the upstream received no request")
	}
	return r[len(r)-1]
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// bearerToken returns the token of an "Authorization: Bearer" value.
func bearerToken(t *testing.T, authz string) string {
	t.Helper()
	tok, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok || tok == "" {
		t.Fatalf("Authorization = %q, want \"Bearer <token>\"", authz)
	}
	return tok
}
