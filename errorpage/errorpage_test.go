package errorpage

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIsNavigation pins which requests see a page: navigations by Fetch
// Metadata, or, from a client without it, a GET or HEAD that accepts HTML
// and is not marked as XHR.
func TestIsNavigation(t *testing.T) {
	tests := []struct {
		name   string
		method string
		header map[string]string
		want   bool
	}{
		{"navigate", "GET", map[string]string{"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}, true},
		{"form post navigation", "POST", map[string]string{"Sec-Fetch-Mode": "navigate"}, true},
		{"fetch", "GET", map[string]string{"Sec-Fetch-Mode": "cors", "Accept": "text/html"}, false},
		{"same-origin fetch", "GET", map[string]string{"Sec-Fetch-Mode": "same-origin"}, false},
		{"image", "GET", map[string]string{"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}, false},
		{"old browser page", "GET", map[string]string{"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, true},
		{"old browser HEAD", "HEAD", map[string]string{"Accept": "TEXT/HTML"}, true},
		{"old browser post", "POST", map[string]string{"Accept": "text/html"}, false},
		{"XHR library", "GET", map[string]string{"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"}, false},
		{"partial fetch metadata", "GET", map[string]string{"Accept": "text/html", "Sec-Fetch-Site": "same-origin"}, false},
		{"curl", "GET", map[string]string{"Accept": "*/*"}, false},
		{"API client", "GET", map[string]string{"Accept": "application/json"}, false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, "/x", nil)
		for k, v := range tt.header {
			r.Header.Set(k, v)
		}
		if got := IsNavigation(r); got != tt.want {
			t.Errorf("%s: IsNavigation = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func navigation(method string) *http.Request {
	r := httptest.NewRequest(method, "/admin/", nil)
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	return r
}

// TestWritePicksHTMLOrJSON pins the two answers to one error: a page with
// the request id, the login link and safe headers for a navigation, the
// proxy's JSON body for a fetch.
func TestWritePicksHTMLOrJSON(t *testing.T) {
	p, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	pg := Page{Status: 403, Code: "forbidden", Message: "<script>alert(1)</script>", RequestID: "req-123", LoginURL: "/.auth/login?return_to=%2Fadmin%2F&x=1"}

	rec := httptest.NewRecorder()
	p.Write(rec, navigation("GET"), Forbidden, pg)
	body := rec.Body.String()
	wantHeaders := map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Cache-Control":           "no-store",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": contentSecurityPolicy,
	}
	if rec.Code != 403 {
		t.Errorf("navigation: status %d, want 403", rec.Code)
	}
	for k, v := range wantHeaders {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("navigation: %s = %q, want %q", k, got, v)
		}
	}
	for _, want := range []string{"<title>Access denied</title>", "req-123", `href="/.auth/login?return_to=%2Fadmin%2F&amp;x=1"`, "Log in again"} {
		if !strings.Contains(body, want) {
			t.Errorf("navigation: page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(strings.ToLower(body), "<script") {
		t.Errorf("navigation: page has a script:\n%s", body)
	}

	// The generic page shows the message, escaped.
	rec = httptest.NewRecorder()
	p.Write(rec, navigation("GET"), "no-such-template", Page{Status: 502, Code: "bad_gateway", Message: "<b>upstream</b> down"})
	if !strings.Contains(rec.Body.String(), "<title>502 Bad Gateway</title>") || !strings.Contains(rec.Body.String(), "&lt;b&gt;upstream&lt;/b&gt; down") {
		t.Errorf("generic page:\n%s", rec.Body)
	}
	if strings.Contains(rec.Body.String(), "Log in again") {
		t.Error("generic page without LoginURL shows a login link")
	}

	rec = httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/admin/", nil)
	r.Header.Set("Sec-Fetch-Mode", "cors")
	p.Write(rec, r, Forbidden, pg)
	if want := `{"error":"forbidden","message":"\u003cscript\u003ealert(1)\u003c/script\u003e"}` + "\n"; rec.Body.String() != want || rec.Code != 403 ||
		rec.Header().Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("fetch: %d %q %s, want 403 JSON %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body, want)
	}

	rec = httptest.NewRecorder()
	p.Write(rec, navigation("HEAD"), SessionExpired, Page{Status: 401})
	if rec.Code != 401 || rec.Body.Len() != 0 || rec.Header().Get("Content-Length") == "0" {
		t.Errorf("HEAD: %d, body %q, Content-Length %q", rec.Code, rec.Body, rec.Header().Get("Content-Length"))
	}
}

// TestEveryBuiltinPage pins that each built-in page renders its own title.
func TestEveryBuiltinPage(t *testing.T) {
	p, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	titles := map[string]string{Forbidden: "Access denied", LoginFailed: "Login failed", SessionExpired: "Session ended", Generic: "500 Internal Server Error"}
	for name, title := range titles {
		rec := httptest.NewRecorder()
		p.WriteHTML(rec, navigation("GET"), name, Page{Status: 500, RequestID: "r1"})
		if !strings.Contains(rec.Body.String(), "<title>"+title+"</title>") || !strings.Contains(rec.Body.String(), "r1") {
			t.Errorf("%s:\n%s", name, rec.Body)
		}
	}
}

// TestReplaceTemplates pins that a folder replaces templates by name, keeps
// the built-in ones it lacks, and that a broken replacement is a start-up
// problem naming the file.
func TestReplaceTemplates(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(Forbidden, `<!doctype html><p>Nope, {{.Code}} ({{.RequestID}})</p>`)
	write(Layout, `{{define "layout"}}<html><title>{{template "title" .}}</title><body class="ours">{{template "body" .}}</body></html>{{end}}`)
	p, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	render := func(name string) string {
		rec := httptest.NewRecorder()
		p.WriteHTML(rec, navigation("GET"), name, Page{Status: 403, Code: "forbidden", RequestID: "r9"})
		return rec.Body.String()
	}
	if got := render(Forbidden); got != "<!doctype html><p>Nope, forbidden (r9)</p>" {
		t.Errorf("replaced page = %q", got)
	}
	if got := render(SessionExpired); !strings.Contains(got, `<body class="ours">`) || !strings.Contains(got, "Session ended") {
		t.Errorf("built-in page in the replaced layout = %q", got)
	}

	tests := []struct{ file, body, want string }{
		{LoginFailed, `{{.Nope}}`, "errorpage: login_failed.html:"},
		{Generic, `{{if}}`, "errorpage: error.html:"},
	}
	for _, tt := range tests {
		bad := t.TempDir()
		if err := os.WriteFile(filepath.Join(bad, tt.file), []byte(tt.body), 0o600); err != nil {
			t.Fatal(err)
		}
		ps := Options{Dir: bad}.Validate()
		if len(ps) != 1 || ps[0].Path != "templates_dir" || !strings.HasPrefix(ps[0].Message, tt.want) {
			t.Errorf("%s %q: Validate = %v, want templates_dir: %s…", tt.file, tt.body, ps, tt.want)
		}
	}
	if ps := (Options{Dir: filepath.Join(dir, "missing")}).Validate(); len(ps) != 1 || !strings.Contains(ps[0].Message, "is not a readable folder") {
		t.Errorf("missing folder: Validate = %v", ps)
	}
	if ps := (Options{}).Validate(); len(ps) != 0 {
		t.Errorf("built-in templates: %v", ps)
	}
}
