package proxy

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

var pxCaptureNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// xanoCapture mimics a custom provider's Capture: accessToken and
// refreshToken are the token fields, user.id the subject. Like
// idp.Provider.Capture it reports no tokens only for a body that provably
// holds none, and an error for one that may hold tokens it cannot use.
func xanoCapture(body []byte) (*idp.Captured, error) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		if strings.Contains(string(body), `"accessToken"`) || strings.Contains(string(body), `"refreshToken"`) {
			return nil, errors.New("capture: not a JSON object, but names a token field")
		}
		return nil, nil
	}
	at, _ := m["accessToken"].(string)
	rt, _ := m["refreshToken"].(string)
	if at == "" {
		if rt != "" {
			return nil, errors.New("capture: a refresh token without an access token")
		}
		return nil, nil
	}
	if at == "unparsable" {
		return nil, errors.New("capture: expires_in is not a number")
	}
	delete(m, "accessToken")
	delete(m, "refreshToken")
	stripped, _ := json.Marshal(m)
	sub := ""
	if u, ok := m["user"].(map[string]any); ok {
		sub = strconv.FormatFloat(u["id"].(float64), 'f', -1, 64)
	}
	tok := &idp.Token{AccessToken: secret.String(at), RefreshToken: secret.String(rt), Expiry: pxCaptureNow.Add(time.Hour)}
	return &idp.Captured{Token: tok, Identity: &idp.Identity{Issuer: "xano", Subject: sub, Claims: map[string]any{"sub": sub}}, Body: stripped}, nil
}

func TestTokenCapture(t *testing.T) {
	const login = `{"accessToken":"at-CAPTURED","refreshToken":"rt-CAPTURED","user":{"id":7,"name":"Ada"}}`
	tests := []struct {
		name        string
		path        string
		status      int
		contentType string
		encoding    string
		body        string
		oldSession  bool
		wantStatus  int
		wantBody    string
		wantSession bool
		wantError   string
	}{
		{name: "login answer captured", path: "/auth/login", status: 200, contentType: "application/json; charset=utf-8", body: login,
			wantStatus: 200, wantBody: `{"user":{"id":7,"name":"Ada"}}`, wantSession: true},
		{name: "signup 201 captured, previous session replaced", path: "/auth/signup", status: 201, contentType: "application/json", body: login, oldSession: true,
			wantStatus: 201, wantBody: `{"user":{"id":7,"name":"Ada"}}`, wantSession: true},
		{name: "error answer without tokens untouched", path: "/auth/login", status: 401, contentType: "application/json", body: `{"message":"bad password"}`,
			wantStatus: 401, wantBody: `{"message":"bad password"}`},
		{name: "error answer with a token refused", path: "/auth/login", status: 401, contentType: "application/json", body: `{"message":"bad password","accessToken":"x"}`,
			wantStatus: 502, wantError: "token_capture_failed"},
		{name: "text/plain login answer captured", path: "/auth/login", status: 200, contentType: "text/plain", body: login,
			wantStatus: 200, wantBody: `{"user":{"id":7,"name":"Ada"}}`, wantSession: true},
		{name: "HTML untouched", path: "/auth/login", status: 200, contentType: "text/html", body: `<p>check your mail</p>`,
			wantStatus: 200, wantBody: `<p>check your mail</p>`},
		{name: "JSON without tokens untouched", path: "/auth/login", status: 200, contentType: "application/json", body: `{"user":{"id":7}}`,
			wantStatus: 200, wantBody: `{"user":{"id":7}}`},
		{name: "unparsable token answer refused", path: "/auth/login", status: 200, contentType: "application/json", body: `{"accessToken":"unparsable","refreshToken":"rt-CAPTURED"}`,
			wantStatus: 502, wantError: "token_capture_failed"},
		{name: "compressed answer refused", path: "/auth/login", status: 200, contentType: "application/json", encoding: "br", body: login,
			wantStatus: 502, wantError: "token_capture_failed"},
		{name: "other path not captured", path: "/auth/me", status: 200, contentType: "application/json", body: login,
			wantStatus: 200, wantBody: login},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, body []byte) {
				w.Header().Set("Content-Type", tt.contentType)
				w.Header().Set("X-Upstream", "kept")
				w.Header().Set("ETag", `"v1"`)
				if tt.encoding != "" {
					w.Header().Set("Content-Encoding", tt.encoding)
				}
				w.Header().Set("Content-Length", strconv.Itoa(len(tt.body)))
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			e := newPxEnv(t, Options{
				Now:           func() time.Time { return pxCaptureNow },
				Session:       session.LifetimeOptions{MaxLifetime: 720 * time.Hour},
				Routes:        []Route{{Name: "auth_api", Path: "/auth/", Upstream: up.url().String(), Auth: AuthNone}},
				CaptureRoutes: []CaptureRoute{{Method: "POST", Path: "/auth/login"}, {Path: "/auth/signup"}},
			})
			e.provider.capture = xanoCapture
			r := e.req(t, http.MethodPost, tt.path, strings.NewReader(`{"email":"a@b","password":"pw"}`))
			r.Header.Set("Accept-Encoding", "gzip, br")
			var old session.Ticket
			if tt.oldSession {
				old = e.sessions.addToken(t, "at-OLD")
				r = withTicket(r, old)
			}
			res, body := e.do(t, r)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d %s, want %d", res.StatusCode, body, tt.wantStatus)
			}
			if tt.wantError != "" {
				if got := decodeError(t, body).Error; got != tt.wantError {
					t.Errorf("error = %q, want %q", got, tt.wantError)
				}
			} else if body != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
			if strings.Contains(body, "CAPTURED") && tt.wantSession {
				t.Errorf("body %q still carries a token", body)
			}
			if tt.wantError == "" {
				if got, want := res.Header.Get("Content-Length"), strconv.Itoa(len(tt.wantBody)); got != want {
					t.Errorf("Content-Length = %q, want %q", got, want)
				}
				if got := res.Header.Get("X-Upstream"); got != "kept" {
					t.Errorf("X-Upstream = %q, want kept", got)
				}
			}
			if got := up.requests()[0].Header.Get("Accept-Encoding"); tt.path != "/auth/me" && got != "identity" {
				t.Errorf("upstream Accept-Encoding = %q, want identity", got)
			}

			e.sessions.mu.Lock()
			created, via, ended, reasons := slices.Clone(e.sessions.created), slices.Clone(e.sessions.via), slices.Clone(e.sessions.ended), slices.Clone(e.sessions.reasons)
			e.sessions.mu.Unlock()
			if !tt.wantSession {
				if len(created) != 0 || len(res.Header.Values("Set-Cookie")) != 0 {
					t.Errorf("created %d sessions, Set-Cookie %q; want none", len(created), res.Header.Values("Set-Cookie"))
				}
				return
			}
			if len(created) != 1 || !slices.Equal(via, []string{"capture"}) {
				t.Fatalf("Create calls = %d via %q, want 1 via capture", len(created), via)
			}
			rec := created[0]
			if rec.AccessToken != "at-CAPTURED" || rec.RefreshToken != "rt-CAPTURED" || !rec.AccessExpiry.Equal(pxCaptureNow.Add(time.Hour)) ||
				rec.Issuer != "xano" || rec.Subject != "7" || !rec.CreatedAt.Equal(pxCaptureNow) {
				t.Errorf("record = %+v, want the captured tokens, subject 7, created now", rec)
			}
			cookies := res.Header.Values("Set-Cookie")
			if len(cookies) != 1 {
				t.Fatalf("Set-Cookie = %q, want one", cookies)
			}
			value, attrs, _ := strings.Cut(cookies[0], "; ")
			if attrs != "Path=/; Max-Age=2592000; HttpOnly; Secure; SameSite=Lax" {
				t.Errorf("cookie attributes = %q", attrs)
			}
			tk, err := session.ParseTicket(strings.TrimPrefix(value, session.DefaultCookieName+"="))
			if err != nil {
				t.Fatalf("cookie value: %v", err)
			}
			if tk == old {
				t.Error("the new session reuses the old ticket")
			}
			if got := e.sessions.token(tk); got != "at-CAPTURED" {
				t.Errorf("cookie ticket opens a session with %q, want the captured one", got.Reveal())
			}
			if got := res.Header.Get("ETag"); got != "" {
				t.Errorf("ETag = %q, want none (the body changed)", got)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			wantEnded := []session.Ticket(nil)
			wantReasons := []string(nil)
			if tt.oldSession {
				wantEnded, wantReasons = []session.Ticket{old}, []string{"replaced"}
			}
			if !slices.Equal(ended, wantEnded) || !slices.Equal(reasons, wantReasons) {
				t.Errorf("End calls = %d %q, want %d %q", len(ended), reasons, len(wantEnded), wantReasons)
			}
		})
	}
}

func TestTokenCaptureStoreDown(t *testing.T) {
	up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"accessToken":"at-CAPTURED","refreshToken":"rt-CAPTURED"}`)
	})
	e := newPxEnv(t, Options{
		Routes:        []Route{{Name: "auth_api", Path: "/auth/", Upstream: up.url().String(), Auth: AuthNone}},
		CaptureRoutes: []CaptureRoute{{Path: "/auth/login"}},
	})
	e.provider.capture = xanoCapture
	e.sessions.err["Create"] = session.ErrStoreUnavailable
	res, body := e.do(t, e.req(t, http.MethodPost, "/auth/login", strings.NewReader("{}")))
	if res.StatusCode != http.StatusServiceUnavailable || decodeError(t, body).Error != "store_unavailable" {
		t.Errorf("answer = %d %s, want 503 store_unavailable", res.StatusCode, body)
	}
	if strings.Contains(body, "CAPTURED") {
		t.Errorf("body %q carries a token", body)
	}
}

// TestTokenCaptureLargeAnswerRefused: a 2xx JSON login answer over the
// capture limit may hold tokens that were not read: it is refused with 502
// token_capture_failed, never handed to the browser as it is, whether its
// size is declared or found while reading.
func TestTokenCaptureLargeAnswerRefused(t *testing.T) {
	big := `{"accessToken":"at-CAPTURED","pad":"` + strings.Repeat("x", maxCaptureBody) + `"}`
	tests := []struct {
		name     string
		declared bool
	}{
		{"Content-Length declared", true},
		{"size found while reading", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, body []byte) {
				w.Header().Set("Content-Type", "application/json")
				if tt.declared {
					w.Header().Set("Content-Length", strconv.Itoa(len(big)))
				} else {
					w.(http.Flusher).Flush() // chunked: no Content-Length
				}
				_, _ = io.WriteString(w, big)
			})
			e := newPxEnv(t, Options{
				Routes:        []Route{{Name: "auth_api", Path: "/auth/", Upstream: up.url().String(), Auth: AuthNone}},
				CaptureRoutes: []CaptureRoute{{Path: "/auth/login"}},
			})
			calls := 0
			e.provider.capture = func(b []byte) (*idp.Captured, error) {
				calls++
				return xanoCapture(b)
			}
			res, body := e.do(t, e.req(t, http.MethodPost, "/auth/login", strings.NewReader("{}")))
			if res.StatusCode != http.StatusBadGateway || decodeError(t, body).Error != "token_capture_failed" {
				t.Errorf("answer = %d (%d bytes), want 502 token_capture_failed", res.StatusCode, len(body))
			}
			if strings.Contains(body, "CAPTURED") || len(res.Header.Values("Set-Cookie")) != 0 {
				t.Errorf("answer carries a token or a cookie: Set-Cookie %q", res.Header.Values("Set-Cookie"))
			}
			if calls != 0 {
				t.Errorf("Capture calls = %d, want 0", calls)
			}
		})
	}
}

// TestTokenCaptureWhateverTheTypeAndStatus: on a capture route, an answer
// whose body is a JSON object holding a token field never reaches the
// browser as it is, whatever its Content-Type and status: a 2xx answer
// becomes a session and loses the token fields, any other answer is
// refused with 502 token_capture_failed. An answer without tokens passes
// untouched.
func TestTokenCaptureWhateverTheTypeAndStatus(t *testing.T) {
	const (
		login    = `{"accessToken":"at-CAPTURED","refreshToken":"rt-CAPTURED","user":{"id":7}}`
		refresh  = `{"refreshToken":"rt-CAPTURED","user":{"id":7}}`
		noTokens = `{"message":"see you","user":{"id":7}}`
		stripped = `{"user":{"id":7}}`
	)
	contentTypes := []string{
		"application/json",
		"application/json; charset=utf-8",
		"text/plain; charset=utf-8",
		"text/json",
		"", // no Content-Type at all
		"application/json;;charset",
		"application/problem+json",
		"text/html",
		"application/octet-stream",
	}
	statuses := []int{200, 201, 302, 400, 401, 500}

	var reply struct {
		sync.Mutex
		contentType string
		status      int
		body        string
	}
	up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, _ []byte) {
		reply.Lock()
		ct, status, body := reply.contentType, reply.status, reply.body
		reply.Unlock()
		if ct == "" {
			w.Header()["Content-Type"] = nil // no sniffing either
		} else {
			w.Header().Set("Content-Type", ct)
		}
		if status == http.StatusFound {
			w.Header().Set("Location", "/home")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
	e := newPxEnv(t, Options{
		Now:           func() time.Time { return pxCaptureNow },
		Routes:        []Route{{Name: "auth_api", Path: "/auth/", Upstream: up.url().String(), Auth: AuthNone}},
		CaptureRoutes: []CaptureRoute{{Path: "/auth/login"}},
	})
	e.provider.capture = xanoCapture

	for _, body := range []string{login, refresh, noTokens} {
		for _, status := range statuses {
			for _, ct := range contentTypes {
				name := fmt.Sprintf("%s/%d/%q", body[:14], status, ct)
				t.Run(name, func(t *testing.T) {
					reply.Lock()
					reply.contentType, reply.status, reply.body = ct, status, body
					reply.Unlock()
					e.sessions.mu.Lock()
					createdBefore := len(e.sessions.created)
					e.sessions.mu.Unlock()

					res, got := e.do(t, e.req(t, http.MethodPost, "/auth/login", strings.NewReader("{}")))
					if strings.Contains(got, "CAPTURED") {
						t.Fatalf("answer %d %q relays a token", res.StatusCode, got)
					}
					e.sessions.mu.Lock()
					created := len(e.sessions.created) - createdBefore
					e.sessions.mu.Unlock()
					cookies := res.Header.Values("Set-Cookie")
					switch {
					case body == noTokens:
						if res.StatusCode != status || got != body || created != 0 || len(cookies) != 0 {
							t.Errorf("answer = %d %q, %d sessions, Set-Cookie %q; want %d untouched, no session", res.StatusCode, got, created, cookies, status)
						}
					case body == login && status < 300:
						if res.StatusCode != status || got != stripped || created != 1 || len(cookies) != 1 {
							t.Errorf("answer = %d %q, %d sessions, Set-Cookie %q; want %d %q and one session", res.StatusCode, got, created, cookies, status, stripped)
						}
					default:
						if res.StatusCode != http.StatusBadGateway || decodeError(t, got).Error != "token_capture_failed" || created != 0 || len(cookies) != 0 {
							t.Errorf("answer = %d %q, %d sessions, Set-Cookie %q; want 502 token_capture_failed, no session", res.StatusCode, got, created, cookies)
						}
					}
				})
			}
		}
	}
}

// TestTokenCaptureBodyShapes: what a capture route does with answers it
// cannot or need not inspect: a compressed body is refused whatever its
// status (the upstream was asked for identity), a body over the capture
// limit is refused whatever its type, a chunked body is read like any
// other, and answers without a body pass.
func TestTokenCaptureBodyShapes(t *testing.T) {
	const login = `{"accessToken":"at-CAPTURED","refreshToken":"rt-CAPTURED","user":{"id":7}}`
	gz := func(s string) string {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = io.WriteString(zw, s)
		_ = zw.Close()
		return b.String()
	}
	tests := []struct {
		name        string
		status      int
		contentType string
		encoding    string
		chunked     bool
		body        string

		wantStatus int
		wantBody   string // "" with wantError
		wantError  string
		wantCookie bool
	}{
		{name: "gzip 200 login", status: 200, contentType: "application/json", encoding: "gzip", body: gz(login),
			wantStatus: 502, wantError: "token_capture_failed"},
		{name: "gzip 400 login", status: 400, contentType: "application/json", encoding: "gzip", body: gz(login),
			wantStatus: 502, wantError: "token_capture_failed"},
		{name: "gzip 500 text", status: 500, contentType: "text/plain", encoding: "gzip", body: gz(login),
			wantStatus: 502, wantError: "token_capture_failed"},
		{name: "Content-Encoding identity is plain", status: 200, contentType: "application/json", encoding: "identity", body: login,
			wantStatus: 200, wantBody: `{"user":{"id":7}}`, wantCookie: true},
		{name: "chunked login captured", status: 200, contentType: "text/plain", chunked: true, body: login,
			wantStatus: 200, wantBody: `{"user":{"id":7}}`, wantCookie: true},
		{name: "chunked 400 with tokens refused", status: 400, contentType: "text/plain", chunked: true, body: login,
			wantStatus: 502, wantError: "token_capture_failed"},
		{name: "large HTML refused", status: 200, contentType: "text/html", body: "<p>" + strings.Repeat("x", maxCaptureBody) + "</p>",
			wantStatus: 502, wantError: "token_capture_failed"},
		{name: "large chunked text refused", status: 400, contentType: "text/plain", chunked: true, body: strings.Repeat("x", maxCaptureBody+1),
			wantStatus: 502, wantError: "token_capture_failed"},
		{name: "array holding a login refused", status: 200, contentType: "application/json", body: "[" + login + "]",
			wantStatus: 502, wantError: "token_capture_failed"},
		{name: "XSSI-prefixed login refused", status: 200, contentType: "application/json", body: ")]}',\n" + login,
			wantStatus: 502, wantError: "token_capture_failed"},
		{name: "204 passes", status: 204, wantStatus: 204},
		{name: "empty 200 passes", status: 200, contentType: "application/json", wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, _ []byte) {
				if tt.contentType != "" {
					w.Header().Set("Content-Type", tt.contentType)
				}
				if tt.encoding != "" {
					w.Header().Set("Content-Encoding", tt.encoding)
				}
				if !tt.chunked && tt.status != http.StatusNoContent {
					w.Header().Set("Content-Length", strconv.Itoa(len(tt.body)))
				}
				w.WriteHeader(tt.status)
				if tt.chunked {
					http.NewResponseController(w).Flush()
				}
				_, _ = io.WriteString(w, tt.body)
			})
			e := newPxEnv(t, Options{
				Now:           func() time.Time { return pxCaptureNow },
				Routes:        []Route{{Name: "auth_api", Path: "/auth/", Upstream: up.url().String(), Auth: AuthNone}},
				CaptureRoutes: []CaptureRoute{{Path: "/auth/login"}},
			})
			e.provider.capture = xanoCapture
			r := e.req(t, http.MethodPost, "/auth/login", strings.NewReader("{}"))
			r.Header.Set("Accept-Encoding", "gzip") // the transport must not decode for us
			res, body := e.do(t, r)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d (%d bytes), want %d", res.StatusCode, len(body), tt.wantStatus)
			}
			if tt.wantError != "" {
				if got := decodeError(t, body).Error; got != tt.wantError {
					t.Errorf("error = %q, want %q", got, tt.wantError)
				}
			} else if body != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
			if got := len(res.Header.Values("Set-Cookie")); got != map[bool]int{true: 1}[tt.wantCookie] {
				t.Errorf("Set-Cookie lines = %d, want session cookie %v", got, tt.wantCookie)
			}
			if got := up.requests()[0].Header.Get("Accept-Encoding"); got != "identity" {
				t.Errorf("upstream Accept-Encoding = %q, want identity", got)
			}
		})
	}
}
