package e2e

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// browser is a cookie-keeping HTTP client that follows redirects itself,
// so it sees (and records) every response a real browser would get.
type browser struct {
	client *http.Client

	mu   sync.Mutex
	seen []observed // guarded by mu
}

// observed is one response the browser received.
type observed struct {
	Method string
	URL    *url.URL
	Status int
	Header http.Header
	Body   []byte
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{client: &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// do sends one request (no redirect following), records the response and
// returns it with its body read.
func (b *browser) do(req *http.Request) (observed, error) {
	resp, err := b.client.Do(req)
	if err != nil {
		return observed{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return observed{}, fmt.Errorf("%s %s: read body: %w", req.Method, req.URL, err)
	}
	o := observed{Method: req.Method, URL: req.URL, Status: resp.StatusCode, Header: resp.Header.Clone(), Body: body}
	b.mu.Lock()
	b.seen = append(b.seen, o)
	b.mu.Unlock()
	return o, nil
}

// navigate performs a top-level navigation: it sends the request with the
// headers a browser sends, follows redirects (up to 20), and returns every
// hop's response in order.
func (b *browser) navigate(method, target string, form url.Values) ([]observed, error) {
	var hops []observed
	for range 20 {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, target, body)
		if err != nil {
			return hops, err
		}
		req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		req.Header.Set("Sec-Fetch-Dest", "document")
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			// A form posted by the provider's own page.
			req.Header.Set("Origin", req.URL.Scheme+"://"+req.URL.Host)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
		}
		o, err := b.do(req)
		if err != nil {
			return hops, err
		}
		hops = append(hops, o)
		switch o.Status {
		case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
			http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		default:
			return hops, nil
		}
		loc, err := o.URL.Parse(o.Header.Get("Location"))
		if err != nil {
			return hops, fmt.Errorf("bad Location %q: %w", o.Header.Get("Location"), err)
		}
		target = loc.String()
		if o.Status != http.StatusTemporaryRedirect && o.Status != http.StatusPermanentRedirect {
			method, form = http.MethodGet, nil
		}
	}
	return hops, fmt.Errorf("more than 20 redirects starting at %s", hops[0].URL)
}

// get sends a fetch()-style GET (no redirect following) with extra headers.
func (b *browser) get(t *testing.T, target string, header http.Header) observed {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range header {
		req.Header[k] = v
	}
	o, err := b.do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	return o
}

// responses returns a copy of everything received so far.
func (b *browser) responses() []observed {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]observed(nil), b.seen...)
}

// loginResult is what a login left behind.
type loginResult struct {
	// Hops are all responses of the login, in order.
	Hops []observed
	// Start is tokenrelay's answer to /.auth/login.
	Start observed
	// Callback is tokenrelay's answer to /.auth/callback.
	Callback observed
	// CallbackURL is the callback URL the provider redirected to.
	CallbackURL *url.URL
	// Final is the last response (after the redirect to return_to).
	Final observed
}

// login logs in through tokenrelay and the provider's own HTML pages:
// GET relay/.auth/login?return_to=… → the provider's login form (filled with
// user and any password) → its consent form → /.auth/callback → return_to.
// Forms are parsed generically (action and inputs), not by position.
func (b *browser) login(t *testing.T, relayURL, returnTo, user string) loginResult {
	t.Helper()
	return b.loginAt(t, relayURL, relayURL+"/.auth/login?return_to="+url.QueryEscape(returnTo), user)
}

// loginAt logs in as login does, starting at start: a login URL of the
// relay at relayURL, such as the one a step-up answer names.
func (b *browser) loginAt(t *testing.T, relayURL, start, user string) loginResult {
	t.Helper()
	relay, err := url.Parse(relayURL)
	if err != nil {
		t.Fatal(err)
	}
	hops, err := b.navigate(http.MethodGet, start, nil)
	var res loginResult
	res.Hops = append(res.Hops, hops...)
	for forms := 0; ; forms++ {
		if err != nil {
			t.Fatalf("login: %v (after %d forms)", err, forms)
		}
		last := res.Hops[len(res.Hops)-1]
		if last.URL.Host == relay.Host {
			break // back at tokenrelay
		}
		if forms == 4 {
			t.Fatalf("login: still at the provider after %d forms; last page %s:\n%s", forms, last.URL, last.Body)
		}
		f, ok := firstPostForm(last)
		if !ok {
			t.Fatalf("login: no form on %s (status %d):\n%s", last.URL, last.Status, last.Body)
		}
		for name := range f.Values {
			switch name {
			case "login", "username", "email":
				f.Values.Set(name, user)
			case "password":
				f.Values.Set(name, "any-password")
			}
		}
		hops, err = b.navigate(http.MethodPost, f.Action.String(), f.Values)
		res.Hops = append(res.Hops, hops...)
	}
	for _, h := range res.Hops {
		if h.URL.Host == relay.Host && h.URL.Path == "/.auth/callback" {
			res.Callback, res.CallbackURL = h, h.URL
		}
	}
	if res.CallbackURL == nil {
		t.Fatalf("login: never reached %s/.auth/callback; hops: %v", relayURL, hopURLs(res.Hops))
	}
	res.Start = res.Hops[0]
	res.Final = res.Hops[len(res.Hops)-1]
	return res
}

func hopURLs(hops []observed) []string {
	var s []string
	for _, h := range hops {
		s = append(s, fmt.Sprintf("%d %s", h.Status, h.URL.Redacted()))
	}
	return s
}

// form is an HTML form: where it posts and the values it would send.
type form struct {
	Method string
	Action *url.URL
	Values url.Values
}

var (
	formRE  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	inputRE = regexp.MustCompile(`(?is)<(?:input|button)\b([^>]*)>`)
	attrRE  = regexp.MustCompile(`(?s)([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>` + "`" + `]+))`)
)

// parseForms finds the forms of an HTML page. It is deliberately small:
// enough for the provider's generated login and consent pages, which are
// well-formed.
func parseForms(page observed) []form {
	var forms []form
	for _, m := range formRE.FindAllStringSubmatch(string(page.Body), -1) {
		attrs := parseAttrs(m[1])
		action, err := page.URL.Parse(attrs["action"])
		if err != nil {
			continue
		}
		f := form{Method: strings.ToUpper(attrs["method"]), Action: action, Values: url.Values{}}
		if f.Method == "" {
			f.Method = http.MethodGet
		}
		submitted := false
		for _, in := range inputRE.FindAllStringSubmatch(m[2], -1) {
			a := parseAttrs(in[1])
			name, ok := a["name"]
			if !ok || name == "" {
				continue
			}
			isButton := strings.HasPrefix(strings.ToLower(in[0]), "<button")
			switch typ := strings.ToLower(a["type"]); {
			case typ == "button" || typ == "reset":
				continue
			case typ == "submit" || (isButton && typ == ""):
				// A user clicks the first named submit button (the
				// provider's "yes"): its name and value are sent.
				if !submitted {
					f.Values.Add(name, a["value"])
					submitted = true
				}
				continue
			}
			f.Values.Add(name, a["value"])
		}
		forms = append(forms, f)
	}
	return forms
}

func firstPostForm(page observed) (form, bool) {
	for _, f := range parseForms(page) {
		if f.Method == http.MethodPost {
			return f, true
		}
	}
	return form{}, false
}

func parseAttrs(s string) map[string]string {
	attrs := map[string]string{}
	for _, m := range attrRE.FindAllStringSubmatch(s, -1) {
		attrs[strings.ToLower(m[1])] = html.UnescapeString(m[2] + m[3] + m[4])
	}
	return attrs
}

// jwtRE matches anything shaped like a compact JWS (header.payload.sig,
// with a JSON header and payload).
var jwtRE = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+`)

// leaks reports where, in the responses, any of secrets or anything shaped
// like a JWT appears: status line, any header (Set-Cookie and Location
// included), or body.
func leaks(responses []observed, secrets ...string) []string {
	var found []string
	check := func(where, s string) {
		for _, sec := range secrets {
			if sec != "" && strings.Contains(s, sec) {
				found = append(found, where+": contains a token value")
			}
		}
		if jwtRE.MatchString(s) {
			found = append(found, where+": contains a JWT")
		}
	}
	for _, o := range responses {
		at := fmt.Sprintf("%s %s (%d)", o.Method, o.URL.Redacted(), o.Status)
		for k, vs := range o.Header {
			for _, v := range vs {
				check(at+" header "+k, v)
			}
		}
		check(at+" body", string(bytes.ToValidUTF8(o.Body, nil)))
	}
	return found
}

// burst sends n GET requests for url through b, released together, each
// with header, and returns each one's status and error and how long the
// burst took from its release.
func (b *browser) burst(url string, n int, header http.Header) (statuses []int, errs []error, elapsed time.Duration) {
	statuses, errs = make([]int, n), make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			req, err := http.NewRequest(http.MethodGet, url, nil)
			if err != nil {
				errs[i] = err
				return
			}
			req.Header = header.Clone()
			o, err := b.do(req)
			statuses[i], errs[i] = o.Status, err
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	return statuses, errs, time.Since(began)
}
