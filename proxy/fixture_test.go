package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenrelay/tokenrelay/session"
)

// Fixtures of the request path: a Handler behind a real HTTP server over
// the fakes of fakes_test.go, an upstream that records what it received,
// and a log collector. Names start with px.

// pxCookie is the cookie configuration of the tests.
var pxCookie = session.CookieOptions{Secure: new(true), SameSite: session.SameSiteLax}

// pxClearedCookie is the exact Set-Cookie that ends the session cookie.
const pxClearedCookie = "__Host-tokenrelay=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax"

// pxSeen is what an upstream received.
type pxSeen struct {
	Method, Path, RawPath, RawQuery, Host string
	Header                                http.Header
	Body                                  []byte
}

// pxUpstream is an upstream that records every request and answers with
// reply (default: 200 "ok <name>"): an httptest server, or, in process, a
// handler reached through transport().
type pxUpstream struct {
	name    string
	srv     *httptest.Server // nil in process
	handler http.HandlerFunc
	mu      sync.Mutex
	seen    []pxSeen
	reply   func(w http.ResponseWriter, r *http.Request, body []byte)
}

func newPxUpstream(t *testing.T, name string, reply func(w http.ResponseWriter, r *http.Request, body []byte)) *pxUpstream {
	t.Helper()
	u := newPxUpstreamInProcess(name, reply)
	u.srv = httptest.NewServer(u.handler)
	t.Cleanup(u.srv.Close)
	return u
}

// newPxUpstreamInProcess is an upstream without a server, for a test in a
// synctest bubble, which network I/O would keep from ever being idle: the
// Handler reaches it through Options.Transport = u.transport().
func newPxUpstreamInProcess(name string, reply func(w http.ResponseWriter, r *http.Request, body []byte)) *pxUpstream {
	u := &pxUpstream{name: name, reply: reply}
	u.handler = func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, pxSeen{r.Method, r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Host, r.Header.Clone(), body})
		u.mu.Unlock()
		if u.reply != nil {
			u.reply(w, r, body)
			return
		}
		_, _ = io.WriteString(w, "ok "+name)
	}
	return u
}

func (u *pxUpstream) url() *url.URL {
	if u.srv == nil {
		return &url.URL{Scheme: "http", Host: u.name + ".upstream.test"}
	}
	v, _ := url.Parse(u.srv.URL)
	return v
}

// transport reaches the upstream's handler in process.
func (u *pxUpstream) transport() http.RoundTripper { return handlerTransport{u.handler} }

// handlerTransport answers requests with an http.Handler in the process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	in := r.Clone(r.Context()) // as a server would see it
	if in.Body == nil {
		in.Body = http.NoBody
	}
	if in.Host == "" {
		in.Host = in.URL.Host
	}
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, in)
	res := w.Result()
	res.Request = r
	return res, nil
}

func (u *pxUpstream) requests() []pxSeen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]pxSeen(nil), u.seen...)
}

// pxLogs collects log output for assertions.
type pxLogs struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // signalled after each write
}

func newPxLogs() *pxLogs { return &pxLogs{changed: make(chan struct{}, 1)} }

func (l *pxLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.buf.Write(p)
	select {
	case l.changed <- struct{}{}:
	default:
	}
	return n, err
}

// waitAccess waits until n access log lines were written, or fails after
// a deadline.
func (l *pxLogs) waitAccess(t *testing.T, n int) []map[string]any {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if lines := l.accessLines(t); len(lines) >= n {
			return lines
		}
		select {
		case <-l.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %d access log lines:\n%s", n, l.String())
		}
	}
}

func (l *pxLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the JSON log records.
func (l *pxLogs) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// accessLines returns the access log records.
func (l *pxLogs) accessLines(t *testing.T) []map[string]any {
	var out []map[string]any
	for _, m := range l.lines(t) {
		if m["msg"] == "request" {
			out = append(out, m)
		}
	}
	return out
}

// pxEnv is a Handler behind a real HTTP server, or in process (srv nil).
type pxEnv struct {
	h        *Handler
	srv      *httptest.Server
	reg      *prometheus.Registry
	logs     *pxLogs
	sessions *fakeSessions
	provider *fakeProvider
}

// newPxEnv builds a Handler with opts (Sessions, Provider, Cookie,
// Registerer and Logger are filled in unless set) and serves it.
func newPxEnv(t *testing.T, o Options) *pxEnv {
	t.Helper()
	e := newPxEnvInProcess(t, o)
	e.srv = httptest.NewServer(e.h)
	t.Cleanup(e.srv.Close)
	return e
}

// newPxEnvInProcess builds the Handler as newPxEnv does, without a server:
// e.do calls it directly, so a test can run in a synctest bubble.
func newPxEnvInProcess(t *testing.T, o Options) *pxEnv {
	t.Helper()
	e := &pxEnv{reg: prometheus.NewRegistry(), logs: newPxLogs(), sessions: newFakeSessions(), provider: &fakeProvider{}}
	if o.Sessions == nil {
		o.Sessions = e.sessions
	}
	if o.Provider == nil {
		o.Provider = e.provider
	}
	if o.Cookie == (session.CookieOptions{}) {
		o.Cookie = pxCookie
	}
	o.Registerer = e.reg
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.h = h
	return e
}

// do sends r through a client that follows no redirects and returns the
// answer with its body read, once the Handler has logged the request (so
// metrics are final).
func (e *pxEnv) do(t *testing.T, r *http.Request) (*http.Response, string) {
	t.Helper()
	before := len(e.logs.accessLines(t))
	defer e.logs.waitAccess(t, before+1)
	if e.srv == nil {
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		return w.Result(), w.Body.String()
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return res, string(b)
}

// req builds a request to the proxy.
func (e *pxEnv) req(t *testing.T, method, path string, body io.Reader) *http.Request {
	t.Helper()
	if e.srv == nil {
		return httptest.NewRequest(method, "http://relay.test"+path, body)
	}
	r, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// raw writes a raw HTTP/1.1 request to the proxy and reads the answer.
func (e *pxEnv) raw(t *testing.T, text string) (*http.Response, string) {
	t.Helper()
	before := len(e.logs.accessLines(t))
	defer e.logs.waitAccess(t, before+1)
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, text); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// counter reads tokenrelay_requests_total{route,code}.
func (e *pxEnv) requests(route, code string) float64 {
	return testutil.ToFloat64(e.h.metrics.requests.WithLabelValues(route, code))
}

func (e *pxEnv) retries(route string) float64 {
	return testutil.ToFloat64(e.h.metrics.retries.WithLabelValues(route))
}

// withTicket adds our cookie carrying tk between two other cookies.
func withTicket(r *http.Request, tk session.Ticket) *http.Request {
	r.Header.Set("Cookie", "a=1; "+session.DefaultCookieName+"="+tk.Encode()+"; b=2")
	return r
}

// decodeError reads an apiError body.
func decodeError(t *testing.T, body string) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
