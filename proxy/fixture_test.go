package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

// Test doubles and fixtures of the request path. Names start with px so
// they do not collide with the auth endpoints' tests in this package.

// pxAccessCall is one call of Sessions.AccessToken.
type pxAccessCall struct {
	Ticket   session.Ticket
	Rejected secret.String
}

// pxSessions is a fake Sessions: a map from ticket to its current token.
// A call with rejected equal to the current token rotates to the next token
// in next, as the real manager refreshes.
type pxSessions struct {
	mu      sync.Mutex
	tokens  map[session.Ticket]secret.String
	next    map[session.Ticket][]secret.String
	calls   []pxAccessCall
	errs    []error // returned by AccessToken calls, in order, before looking at tokens
	created []session.Record
	via     []string
	ended   []session.Ticket
	reasons []string
	// createErr fails Create.
	createErr error
}

func newPxSessions() *pxSessions {
	return &pxSessions{tokens: map[session.Ticket]secret.String{}, next: map[session.Ticket][]secret.String{}}
}

// add starts a session holding token, rotating to next on rejection.
func (f *pxSessions) add(t *testing.T, token secret.String, next ...secret.String) session.Ticket {
	t.Helper()
	tk, err := session.NewTicket()
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[tk] = token
	f.next[tk] = next
	return tk
}

func (f *pxSessions) Create(ctx context.Context, rec session.Record, via string) (session.Ticket, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.createErr != nil {
		return session.Ticket{}, f.createErr
	}
	tk, err := session.NewTicket()
	if err != nil {
		return session.Ticket{}, err
	}
	f.created = append(f.created, rec)
	f.via = append(f.via, via)
	f.tokens[tk] = rec.AccessToken
	return tk, nil
}

func (f *pxSessions) Load(ctx context.Context, t session.Ticket) (*session.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tok, ok := f.tokens[t]
	if !ok {
		return nil, session.ErrNoSession
	}
	return &session.Session{Record: session.Record{AccessToken: tok}}, nil
}

func (f *pxSessions) AccessToken(ctx context.Context, t session.Ticket, rejected secret.String) (session.AccessToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, pxAccessCall{t, rejected})
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		if err != nil {
			return session.AccessToken{}, err
		}
	}
	tok, ok := f.tokens[t]
	if !ok {
		return session.AccessToken{}, session.ErrNoSession
	}
	refreshed := false
	if !rejected.IsZero() && rejected == tok && len(f.next[t]) > 0 {
		tok, f.next[t] = f.next[t][0], f.next[t][1:]
		f.tokens[t] = tok
		refreshed = true
	}
	return session.AccessToken{Value: tok, Expiry: time.Now().Add(time.Hour), Refreshed: refreshed}, nil
}

func (f *pxSessions) End(ctx context.Context, t session.Ticket, reason string) (*session.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ended = append(f.ended, t)
	f.reasons = append(f.reasons, reason)
	tok, ok := f.tokens[t]
	if !ok {
		return nil, session.ErrNoSession
	}
	delete(f.tokens, t)
	return &session.Record{AccessToken: tok}, nil
}

func (f *pxSessions) EndBySID(ctx context.Context, sid string) (int, error)     { return 0, nil }
func (f *pxSessions) EndBySubject(ctx context.Context, sub string) (int, error) { return 0, nil }
func (f *pxSessions) SaveLoginState(ctx context.Context, st session.LoginState) error {
	return errors.New("pxSessions: no login states")
}
func (f *pxSessions) TakeLoginState(ctx context.Context, state string) (*session.LoginState, error) {
	return nil, session.ErrUnknownState
}

func (f *pxSessions) accessCalls() []pxAccessCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]pxAccessCall(nil), f.calls...)
}

// pxProvider is a fake Provider; only Capture does anything.
type pxProvider struct {
	capture func(body []byte) (*idp.Token, *idp.Identity, []byte, bool, error)
}

func (p *pxProvider) AuthCodeURL(state, nonce, verifier string) string {
	return "https://op.example/authorize?state=" + url.QueryEscape(state)
}
func (p *pxProvider) Exchange(ctx context.Context, code, verifier string) (*idp.Token, error) {
	return nil, errors.New("pxProvider: no exchange")
}
func (p *pxProvider) Identify(ctx context.Context, tok *idp.Token, nonce string) (*idp.Identity, error) {
	return nil, errors.New("pxProvider: no identify")
}
func (p *pxProvider) Revoke(ctx context.Context, refreshToken secret.String) error {
	return idp.ErrNotSupported
}
func (p *pxProvider) EndSessionURL(idTokenHint secret.String, postLogoutRedirectURI, state string) string {
	return ""
}
func (p *pxProvider) VerifyLogoutToken(ctx context.Context, raw string) (*idp.LogoutToken, error) {
	return nil, errors.New("pxProvider: no logout tokens")
}
func (p *pxProvider) Capture(body []byte) (*idp.Token, *idp.Identity, []byte, bool, error) {
	if p.capture == nil {
		return nil, nil, body, false, nil
	}
	return p.capture(body)
}

// pxCookie is the cookie configuration of the tests.
var pxCookie = session.CookieOptions{Secure: true, SameSite: http.SameSiteLaxMode}

// pxClearedCookie is the exact Set-Cookie that ends the session cookie.
const pxClearedCookie = "__Host-tokenrelay=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax"

// pxSeen is what an upstream received.
type pxSeen struct {
	Method, Path, RawPath, RawQuery, Host string
	Header                                http.Header
	Body                                  []byte
}

// pxUpstream is an httptest upstream that records every request and
// answers with reply (default: 200 "ok <name>").
type pxUpstream struct {
	name  string
	srv   *httptest.Server
	mu    sync.Mutex
	seen  []pxSeen
	reply func(w http.ResponseWriter, r *http.Request, body []byte)
}

func newPxUpstream(t *testing.T, name string, reply func(w http.ResponseWriter, r *http.Request, body []byte)) *pxUpstream {
	t.Helper()
	u := &pxUpstream{name: name, reply: reply}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.seen = append(u.seen, pxSeen{r.Method, r.URL.Path, r.URL.RawPath, r.URL.RawQuery, r.Host, r.Header.Clone(), body})
		u.mu.Unlock()
		if u.reply != nil {
			u.reply(w, r, body)
			return
		}
		_, _ = io.WriteString(w, "ok "+name)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *pxUpstream) url() *url.URL {
	v, _ := url.Parse(u.srv.URL)
	return v
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

// pxEnv is a Handler behind a real HTTP server.
type pxEnv struct {
	h        *Handler
	srv      *httptest.Server
	reg      *prometheus.Registry
	logs     *pxLogs
	sessions *pxSessions
	provider *pxProvider
}

// newPxEnv builds a Handler with opts (Sessions, Provider, Cookie,
// Registerer and Logger are filled in unless set) and serves it.
func newPxEnv(t *testing.T, o Options) *pxEnv {
	t.Helper()
	e := &pxEnv{reg: prometheus.NewRegistry(), logs: newPxLogs(), sessions: newPxSessions(), provider: &pxProvider{}}
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
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

// do sends r through a client that follows no redirects and returns the
// answer with its body read, once the Handler has logged the request (so
// metrics are final).
func (e *pxEnv) do(t *testing.T, r *http.Request) (*http.Response, string) {
	t.Helper()
	before := len(e.logs.accessLines(t))
	defer e.logs.waitAccess(t, before+1)
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
