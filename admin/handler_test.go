package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

const testToken = "0123456789abcdef0123456789abcdef"

type fakeSessions struct {
	infos    []session.SessionInfo
	ended    []session.EndedSession // what EndSubjectSessions returns
	err      error
	calls    []string // "sub/id" of each end call
	killedAt time.Time
}

func (f *fakeSessions) SubjectSessions(_ context.Context, sub string) ([]session.SessionInfo, error) {
	return f.infos, f.err
}

func (f *fakeSessions) EndSubjectSessions(_ context.Context, sub, id string) ([]session.EndedSession, error) {
	f.calls = append(f.calls, sub+"/"+id)
	return f.ended, f.err
}

func (f *fakeSessions) EndAll(context.Context) (time.Time, error) { return f.killedAt, f.err }

type fakeRevoker struct{ revoked []string }

func (r *fakeRevoker) Revoke(_ context.Context, rt secret.String) error {
	if rt.Reveal() == "rt-fails" {
		return errors.New("provider said no")
	}
	r.revoked = append(r.revoked, rt.Reveal())
	return nil
}

func serve(h http.Handler, method, target, authz string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	r.Header.Set("X-Admin-Actor", "ops:ada\n")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestAdminAuth pins that every path needs exactly the configured bearer
// token: none, another one, a prefix of it or another scheme is 401 with
// WWW-Authenticate, and the session manager is never called.
func TestAdminAuth(t *testing.T) {
	fs := &fakeSessions{}
	h := New(Options{Token: testToken}, fs, &fakeRevoker{}, nil)
	for _, authz := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer " + testToken[:31], "Basic " + testToken, "bearer " + testToken, "Bearer " + testToken + "x"} {
		for _, c := range []struct{ method, target string }{
			{"GET", "/admin/sessions?sub=alice"}, {"DELETE", "/admin/sessions?sub=alice"},
			{"DELETE", "/admin/sessions/abc?sub=alice"}, {"POST", "/admin/sessions/end-all"}, {"GET", "/admin/nothing"},
		} {
			w := serve(h, c.method, c.target, authz)
			if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with Authorization %q = %d (WWW-Authenticate %q), want 401", c.method, c.target, authz, w.Code, w.Header().Get("WWW-Authenticate"))
			}
		}
	}
	if len(fs.calls) != 0 {
		t.Errorf("unauthorised calls ended sessions: %q", fs.calls)
	}
}

// TestAdminCalls pins each call's answer, the revocations (only of the
// sessions whose keys were escrowed: the others are counted not
// revocable) and the audit lines, which name the caller and the counts
// and never a token.
func TestAdminCalls(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	fs := &fakeSessions{
		infos: []session.SessionInfo{{ID: "abcdefghijklmnop", CreatedAt: at, LastUsed: at.Add(time.Minute), ExpiresAt: at.Add(time.Hour), UserAgent: "Chrome 131 on Linux"}},
		ended: []session.EndedSession{
			{ID: "a", Escrowed: true, RefreshToken: "rt-1"},
			{ID: "b", Escrowed: true, RefreshToken: "rt-fails"},
			{ID: "c", Escrowed: true},
			{ID: "d"},
		},
		killedAt: at,
	}
	rv := &fakeRevoker{}
	var log bytes.Buffer
	h := New(Options{Token: testToken}, fs, rv, slog.New(slog.NewJSONHandler(&log, nil)))
	bearer := "Bearer " + testToken

	w := serve(h, "GET", "/admin/sessions?sub=alice", bearer)
	want := `{"subject":"alice","sessions":[{"id":"abcdefghijklmnop","created_at":"2030-01-02T03:04:05Z","last_used":"2030-01-02T03:05:05Z","expires_at":"2030-01-02T04:04:05Z","user_agent":"Chrome 131 on Linux"}]}`
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != want {
		t.Errorf("list = %d %s, want 200 %s", w.Code, w.Body, want)
	}
	w = serve(h, "DELETE", "/admin/sessions/abcdefghijklmnop?sub=alice", bearer)
	if got, want := strings.TrimSpace(w.Body.String()), `{"ended":4,"revoked":1,"revoke_failed":1,"not_revocable":1}`; w.Code != 200 || got != want {
		t.Errorf("end one = %d %s, want 200 %s", w.Code, got, want)
	}
	w = serve(h, "DELETE", "/admin/sessions?sub=alice", bearer)
	if w.Code != 200 {
		t.Errorf("end all of alice = %d %s", w.Code, w.Body)
	}
	if got, want := fmt.Sprint(fs.calls), "[alice/abcdefghijklmnop alice/]"; got != want {
		t.Errorf("end calls %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(rv.revoked), "[rt-1 rt-1]"; got != want {
		t.Errorf("revoked %s, want %s", got, want)
	}
	w = serve(h, "POST", "/admin/sessions/end-all", bearer)
	if got, want := strings.TrimSpace(w.Body.String()), `{"ended_sessions_created_before":"2030-01-02T03:04:05Z"}`; w.Code != 200 || got != want {
		t.Errorf("end-all = %d %s, want 200 %s", w.Code, got, want)
	}
	for _, c := range []struct{ method, target string }{{"GET", "/admin/sessions"}, {"DELETE", "/admin/sessions?sub="}} {
		if w := serve(h, c.method, c.target, bearer); w.Code != http.StatusBadRequest {
			t.Errorf("%s %s without sub = %d, want 400", c.method, c.target, w.Code)
		}
	}

	var audits []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(log.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["audit"] == true {
			audits = append(audits, m)
		}
		if strings.Contains(line, "rt-1") || strings.Contains(line, testToken) {
			t.Errorf("a log line holds a token: %s", line)
		}
	}
	if len(audits) != 3 {
		t.Fatalf("%d audit lines, want 3:\n%s", len(audits), log.String())
	}
	first := audits[0]
	for k, v := range map[string]any{"action": "end_session", "actor": "ops:ada", "subject": "alice", "session": "abcdefghijklmnop", "ended": 4.0, "revoked": 1.0, "revoke_failed": 1.0, "not_revocable": 1.0} {
		if first[k] != v {
			t.Errorf("audit %s = %v, want %v", k, first[k], v)
		}
	}
	if audits[2]["action"] != "end_all_sessions" {
		t.Errorf("third audit action = %v, want end_all_sessions", audits[2]["action"])
	}
}

// TestAdminErrors pins the answers to the session manager's failures.
func TestAdminErrors(t *testing.T) {
	for _, tt := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("x: %w", session.ErrNoSession), 404, "not_found"},
		{fmt.Errorf("x: %w", session.ErrStoreUnavailable), 503, "store_unavailable"},
		{errors.New("provider not loaded"), 503, "unavailable"},
	} {
		h := New(Options{Token: testToken}, &fakeSessions{err: tt.err}, &fakeRevoker{}, nil)
		w := serve(h, "DELETE", "/admin/sessions/x?sub=alice", "Bearer "+testToken)
		var e struct{ Error string }
		_ = json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != tt.status || e.Error != tt.code {
			t.Errorf("%v: answer %d %s, want %d %s", tt.err, w.Code, w.Body, tt.status, tt.code)
		}
	}
}
