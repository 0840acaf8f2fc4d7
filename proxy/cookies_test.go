package proxy

import (
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tokenrelay/tokenrelay/session"
)

// TestUpstreamCannotSetOwnCookies: an upstream's Set-Cookie for one of
// tokenrelay's own cookies (the session cookie under any prefix, the
// login-binding cookies) never reaches the browser, however the name is
// spelled; the upstream's other cookies pass byte for byte, and each route
// warns once, not once per answer.
func TestUpstreamCannotSetOwnCookies(t *testing.T) {
	planted := []string{
		"__Host-tokenrelay=planted; Path=/; Secure; HttpOnly",
		"tokenrelay=planted",
		"__Secure-tokenrelay=planted; Secure",
		"__host-TokenRelay=planted; Path=/; Secure",
		" tokenrelay =planted",
		"\ttokenrelay\t=planted",
		"=tokenrelay=planted",                           // nameless: the browser sends "tokenrelay=planted"
		"tokenrelay",                                    // nameless, no value: sent as "tokenrelay"
		"__Host-tokenrelay=; Max-Age=0; Path=/; Secure", // deletion
		"__Host-tokenrelay-login-0123456789abcdef=planted; Path=/; Secure",
		"__Secure-tokenrelay-login-x=planted; Path=/.auth/callback; Secure",
		"tokenrelay-login-x=planted",
		"TOKENRELAY-LOGIN-x=planted",
		"",         // no name-value pair: browsers ignore it
		"; Path=/", // no name-value pair either
	}
	kept := []string{
		"app=1; Path=/; HttpOnly",
		"tokenrelayx=1",
		"my-tokenrelay=1",
		"tokenrelay-loginx=1",
		"__Host-app=1; Path=/; Secure",
		"prefs=tokenrelay=1", // a value that mentions the name
	}
	var sent []string
	sent = append(sent, kept[:3]...)
	sent = append(sent, planted...)
	sent = append(sent, kept[3:]...)
	up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header()["Set-Cookie"] = sent
		_, _ = io.WriteString(w, "ok")
	})
	e := newPxEnv(t, Options{Routes: []Route{
		{Name: "api", Path: "/api/", Upstream: up.url().String()},
		{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone},
	}})
	tk := e.sessions.addToken(t, pxToken)

	for _, req := range []*http.Request{
		withTicket(e.req(t, http.MethodGet, "/api/x", nil), tk),
		withTicket(e.req(t, http.MethodGet, "/api/y", nil), tk),
		e.req(t, http.MethodGet, "/pub", nil),
		e.req(t, http.MethodGet, "/pub", nil),
	} {
		res, body := e.do(t, req)
		if res.StatusCode != http.StatusOK || body != "ok" {
			t.Fatalf("GET %s = %d %q, want 200 ok", req.URL.Path, res.StatusCode, body)
		}
		if got := res.Header.Values("Set-Cookie"); !slices.Equal(got, kept) {
			t.Errorf("GET %s: Set-Cookie =\n%q\nwant\n%q", req.URL.Path, got, kept)
		}
	}
	warns := map[string]int{}
	for _, l := range e.logs.lines(t) {
		if l["level"] == "WARN" && strings.Contains(l["msg"].(string), "Set-Cookie") {
			warns[l["route"].(string)]++
			if strings.Contains(l["cookie"].(string), "planted") {
				t.Errorf("warning quotes a cookie value: %v", l)
			}
		}
	}
	if want := map[string]int{"api": 1, "pub": 1}; !maps.Equal(warns, want) {
		t.Errorf("warnings per route = %v, want %v", warns, want)
	}
}

// TestUpstreamCannotSetConfiguredCookie: with a configured cookie name, that
// name under every prefix is tokenrelay's, and a token-capture answer keeps
// only the session cookie tokenrelay set.
func TestUpstreamCannotSetConfiguredCookie(t *testing.T) {
	up := newPxUpstream(t, "up", func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header()["Set-Cookie"] = []string{"sid=planted", "__Host-sid=planted; Path=/; Secure", "__Secure-SID=planted", "app=1"}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"accessToken":"at-CAPTURED","user":{"id":7}}`)
	})
	e := newPxEnv(t, Options{
		Cookie:        session.CookieOptions{Name: "sid", Secure: new(false), SameSite: session.SameSiteLax},
		Routes:        []Route{{Name: "pub", Path: "/", Upstream: up.url().String(), Auth: AuthNone}},
		CaptureRoutes: []CaptureRoute{{Path: "/auth/login"}},
	})
	e.provider.capture = xanoCapture
	for path, want := range map[string]int{"/other": 1, "/auth/login": 2} {
		res, _ := e.do(t, e.req(t, http.MethodPost, path, strings.NewReader("{}")))
		got := res.Header.Values("Set-Cookie")
		if len(got) != want || got[0] != "app=1" {
			t.Errorf("POST %s: Set-Cookie = %q, want app=1 (and the captured session's cookie)", path, got)
		}
		if want == 2 && !strings.HasPrefix(got[1], "sid=") || strings.Contains(strings.Join(got, "|"), "planted") {
			t.Errorf("POST %s: Set-Cookie = %q, want no planted cookie", path, got)
		}
	}
}

// TestSetCookieName: a Set-Cookie line's name is read as a browser reads
// it, so the check cannot be dodged by spelling.
func TestSetCookieName(t *testing.T) {
	tests := []struct {
		line   string
		want   string
		wantOK bool
	}{
		{"a=1; Path=/", "a", true},
		{" a =1", "a", true},
		{"\ta\t=1", "a", true},
		{"a=", "a", true},
		{"a=b=c", "a", true},
		{"=a=1", "a", true},   // nameless: sent back as "a=1"
		{"= a =1", "a", true}, // nameless, spaced
		{"a", "a", true},      // nameless, no "=": sent back as "a"
		{"a; Path=/", "a", true},
		{"", "", false},
		{"; Path=/", "", false},
		{"=", "", false},
		{" = ; Secure", "", false},
	}
	for _, tt := range tests {
		if got, ok := setCookieName(tt.line); got != tt.want || ok != tt.wantOK {
			t.Errorf("setCookieName(%q) = %q, %v; want %q, %v", tt.line, got, ok, tt.want, tt.wantOK)
		}
	}
	own := newOwnCookies(session.CookieOptions{Secure: new(false)})
	for name, want := range map[string]bool{
		"__Host-tokenrelay": true, "tokenrelay": true, "__Secure-tokenrelay": true, "__HOST-TOKENRELAY": true,
		"__Host-tokenrelay-login-ab": true, "tokenrelay-login-": true, "__secure-Tokenrelay-Login-x": true,
		"tokenrelay2": false, "__Host-app": false, "tokenrelay-log": false, "x-tokenrelay": false, "__Host-": false,
	} {
		if got := own.owns(name); got != want {
			t.Errorf("owns(%q) = %v, want %v", name, got, want)
		}
	}
}
