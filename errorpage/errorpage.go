// Package errorpage answers errors the way the client can read them: a
// small HTML page for a browser's navigation (no script, the request id, a
// "log in again" link) and the JSON {"error","message"} body for API calls.
//
// The pages are html/template files embedded in the binary; any of them
// can be replaced by a file of the same name in Options.Dir:
//
//	layout.html           the frame every page below uses (defines "layout")
//	forbidden.html        403: the policy refused the user
//	login_failed.html     the login could not complete (at the callback)
//	session_expired.html  401: the session ended or there is none
//	error.html            any other error
//
// Each gets a Page. A page file defines "title" and "body" and executes
// "layout"; a replacement may also be a whole document of its own.
package errorpage

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tokenrelay/tokenrelay/internal/problem"
)

// Template names.
const (
	Layout         = "layout.html"
	Forbidden      = "forbidden.html"
	LoginFailed    = "login_failed.html"
	SessionExpired = "session_expired.html"
	Generic        = "error.html"
)

// pageNames are the templates a client can be shown (all but Layout).
var pageNames = []string{Forbidden, LoginFailed, SessionExpired, Generic}

//go:embed templates/*.html
var builtin embed.FS

// Page is the data a template gets.
type Page struct {
	// Status is the HTTP status (403) and StatusText its text
	// ("Forbidden"); Write fills StatusText when empty.
	Status     int
	StatusText string
	// Code is the error code the JSON answer carries ("forbidden").
	Code string
	// Message is a sentence for a person. It must not hold anything
	// secret: the JSON answer carries it too.
	Message string
	// RequestID is the request's id (also in the X-Request-Id header).
	RequestID string
	// LoginURL, when set, is where "Log in again" leads (the login
	// endpoint with a return_to).
	LoginURL string
}

// Options configure the pages (key `error_pages`).
type Options struct {
	// Folder of templates that replace the built-in error pages, by file
	// name (see [policy](policy.md#error-pages)).
	//
	// Names it lacks keep the built-in template.
	Dir string `yaml:"templates_dir"`
}

// Validate parses and test-renders every template, so a broken replacement
// is reported at check-config rather than shown to a user. Paths are
// relative to the options.
func (o Options) Validate() []problem.Problem {
	if _, err := New(o); err != nil {
		return []problem.Problem{{Path: "templates_dir", Message: err.Error()}}
	}
	return nil
}

// Pages renders the error pages. It is safe for concurrent use.
type Pages struct {
	pages map[string]*template.Template
}

// New parses the templates: Dir's where present, the built-in ones
// otherwise. Each page is rendered once with sample data, so a template
// that names a missing field fails here, not at a user's error.
func New(o Options) (*Pages, error) {
	if o.Dir != "" {
		if fi, err := os.Stat(o.Dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("errorpage: %s is not a readable folder", o.Dir)
		}
	}
	src := func(name string) ([]byte, error) {
		if o.Dir != "" {
			b, err := os.ReadFile(filepath.Join(o.Dir, name))
			if err == nil || !errors.Is(err, fs.ErrNotExist) {
				return b, err
			}
		}
		return builtin.ReadFile("templates/" + name)
	}
	layout, err := src(Layout)
	if err != nil {
		return nil, err
	}
	p := &Pages{pages: map[string]*template.Template{}}
	for _, name := range pageNames {
		body, err := src(name)
		if err != nil {
			return nil, err
		}
		t, err := template.New(name).Parse(string(body))
		if err == nil {
			_, err = t.New(Layout).Parse(string(layout))
		}
		if err == nil {
			err = t.ExecuteTemplate(io.Discard, name, samplePage)
		}
		if err != nil {
			return nil, fmt.Errorf("errorpage: %s: %w", name, err)
		}
		p.pages[name] = t
	}
	return p, nil
}

// samplePage is what New renders each template with.
var samplePage = Page{Status: 403, StatusText: "Forbidden", Code: "forbidden", Message: "sample", RequestID: "sample", LoginURL: "/.auth/login"}

// contentSecurityPolicy lets a page have inline style and images of its
// own origin, and nothing else: no script, no form, no framing.
const contentSecurityPolicy = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Write answers with the page named name (one of the template names) for a
// navigation, and with JSON {"error": Code, "message": Message} otherwise.
func (p *Pages) Write(w http.ResponseWriter, r *http.Request, name string, pg Page) {
	if IsNavigation(r) {
		p.WriteHTML(w, r, name, pg)
		return
	}
	WriteJSON(w, pg.Status, pg.Code, pg.Message)
}

// WriteHTML answers with the page named name; an unknown name gets
// Generic.
func (p *Pages) WriteHTML(w http.ResponseWriter, r *http.Request, name string, pg Page) {
	if pg.StatusText == "" {
		pg.StatusText = http.StatusText(pg.Status)
	}
	t, ok := p.pages[name]
	if !ok {
		t, name = p.pages[Generic], Generic
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, pg); err != nil {
		// Rendered once at start; a failure now is a template that
		// depends on data. Plain text still tells the user something.
		buf.Reset()
		buf.WriteString(strconv.Itoa(pg.Status) + " " + pg.StatusText + "\nRequest id: " + pg.RequestID + "\n")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(pg.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// apiError is the JSON body of an error, the same as the proxy's.
type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// WriteJSON answers with {"error": code, "message": message}.
func WriteJSON(w http.ResponseWriter, status int, code, message string) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(apiError{Error: code, Message: message})
}

// IsNavigation reports whether r is a browser navigation, which should see
// a page rather than JSON:
//
//   - with Fetch Metadata (every current browser): Sec-Fetch-Mode is
//     navigate;
//   - without it: no Sec-Fetch-* header at all, no X-Requested-With (set
//     by XHR libraries), a GET or HEAD, and an Accept naming text/html.
//
// It is the proxy's isNavigation plus the X-Requested-With and HEAD cases
// and a case-insensitive Accept, so the proxy can use it for its login
// redirects too.
func IsNavigation(r *http.Request) bool {
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	if r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Sec-Fetch-Dest") != "" {
		return false
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(v), "text/html") {
			return true
		}
	}
	return false
}
