package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/valid"
)

// The forward-auth verify endpoint (docs/forward-auth.md). An ingress asks
// it about each request before forwarding the request to the app itself:
// nginx's auth_request, ingress-nginx's auth-url, Traefik's ForwardAuth
// and Caddy's forward_auth send GET <auth prefix>/verify with the original
// method and URI in headers; Envoy's ext_authz (HTTP service mode) sends
// the original method to <auth prefix>/verify<original path>.
//
// Verify is the request pipeline of proxy mode with another last stage
// (DESIGN.md, "The request pipeline"): the stages see the original request
// as the ingress describes it, and grant answers 200 with the headers the
// ingress copies onto the request to the app, where forward would proxy.
// Its answers carry access tokens, so it is served only on the
// forward-auth listener (ServeForwardAuth), never on the public one.

// Headers of verify answers, besides Authorization and Cookie.
const (
	// headerError carries the error code of a refusal, for an ingress that
	// cannot relay the JSON body (nginx).
	headerError = "X-Tokenrelay-Error"
	// headerLoginURL carries the login URL of a 401 or login redirect.
	headerLoginURL = "X-Tokenrelay-Login-Url"
)

// The headers that name the original request, by ingress.
const (
	hdrOriginalURI    = "X-Original-URI"     // nginx auth_request (set by its configuration)
	hdrOriginalURL    = "X-Original-URL"     // ingress-nginx: scheme://host/path?query
	hdrOriginalMethod = "X-Original-Method"  // nginx, ingress-nginx
	hdrForwardedURI   = "X-Forwarded-Uri"    // Traefik, Caddy
	hdrForwardedMeth  = "X-Forwarded-Method" // Traefik, Caddy
)

// Errors of the verify endpoint, mapped by classify.
var (
	// errNotVerify: a path of the forward-auth listener other than the
	// verify endpoint.
	errNotVerify = errors.New("proxy: the forward-auth listener serves only the verify endpoint")
	// errUnprotected: the ingress asked about a path no route serves.
	errUnprotected = errors.New("proxy: no route protects this path")
	// errCaptureForwarded: the ingress asked about a token capture route,
	// whose answer only tokenrelay's own proxying can take tokens out of.
	errCaptureForwarded = errors.New("proxy: a token capture route must go through tokenrelay's public listener")
)

// originalError says what is wrong with the original request an ingress
// described; it is answered 400 with its message.
type originalError struct{ msg string }

func (e *originalError) Error() string { return "proxy: forward-auth: " + e.msg }

// ServeForwardAuth serves the forward-auth listener: the verify endpoint
// and nothing else. It records metrics and an access log line per request
// as ServeHTTP does, under the route the original request falls under.
func (h *Handler) ServeForwardAuth(w http.ResponseWriter, r *http.Request) {
	h.handle(w, r, true)
}

// serveVerify answers one verify request: the original request goes down
// the proxy's pipeline, whose last stage is grant instead of forward.
func (h *Handler) serveVerify(w *responseRecorder, r *http.Request, st *requestState) {
	st.forwardAuth = true
	orig, statusOnly, err := originalRequest(r, h.authPrefix+"/verify")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	st.original, st.statusOnly = orig, statusOnly
	stages := pipeline()
	stages[len(stages)-1] = (*Handler).grant // forward-auth mode: answer, never forward
	for _, step := range stages {
		if !step(h, w, orig, st) {
			return
		}
	}
}

// grant is the last stage in forward-auth mode: 200 with what the ingress
// copies onto the request to the app. The route's access token when it has
// one, as forward would send it (Authorization, and a DPoP proof for a
// DPoP-bound token); the identity stage's headers (claims, assertion) when the route has
// them; the browser's cookies without tokenrelay's, whenever the browser
// sent cookies (empty when it sent only ours), so that the ingress
// replaces the Cookie header rather than pass the session cookie on.
func (h *Handler) grant(w *responseRecorder, r *http.Request, st *requestState) bool {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	if !st.token.IsZero() {
		// What the app sees is the browser's request to the ingress: a
		// DPoP proof names the public URL of the original path (no nonce:
		// tokenrelay never sees the app's answers to learn one).
		h.authorize(hdr, st.token, st.dpop, r.Method, h.publicOrigin+r.URL.EscapedPath(), "")
	}
	for k, v := range st.identity {
		hdr[k] = v
	}
	if lines := r.Header.Values("Cookie"); len(lines) > 0 {
		hdr.Set("Cookie", h.appCookies(lines))
	}
	w.WriteHeader(http.StatusOK)
	return true
}

// appCookies returns the Cookie header lines of a request as one line,
// without tokenrelay's own cookies.
func (h *Handler) appCookies(lines []string) string {
	c := http.Header{"Cookie": append([]string(nil), lines...)}
	h.cookie.StripCookie(c)
	return strings.Join(c["Cookie"], "; ")
}

// askLogin answers an ingress's question about a request that needs a
// login (none, an ended one, or a step-up): f's 401 JSON with the login
// URL, or, for a navigation the route sends to login (redirect), 302 to
// the login URL. An ingress that relays only 401 and 403 (statusOnly,
// nginx) gets the 401 with Location instead, and redirects on it. An ended
// session's cookie is cleared.
func (h *Handler) askLogin(w *responseRecorder, f failure, login string, redirect, statusOnly bool) {
	hdr := w.Header()
	hdr.Set(headerLoginURL, login)
	hdr.Set(headerError, f.Code)
	if f.ClearCookie {
		h.cookie.Clear(w)
	}
	if redirect {
		hdr.Set("Location", login)
		if !statusOnly {
			hdr.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusFound)
			return
		}
	}
	writeJSON(w, f.Status, loginAnswer{Error: f.Code, Message: f.Message, LoginURL: login})
}

// returnLoginURL is the login URL of an ingress's question: back to the
// original URI when it is a safe same-origin path, asking the provider
// for req.
func (h *Handler) returnLoginURL(r *http.Request, req idp.LoginRequest) string {
	return h.loginURL(safeReturnTo(r.URL.RequestURI()), req)
}

// loginAnswer is the body of a verify 401.
type loginAnswer struct {
	Error    string `json:"error"`
	Message  string `json:"message"`
	LoginURL string `json:"login_url"`
}

// originalRequest rebuilds the request an ingress asks about from a verify
// request to verifyPath: its method and request URI, from the path after
// verifyPath (Envoy, with the verify request's own method) or from the
// headers each ingress sends. Every source present must agree: an ingress
// sets its own header, and a client may slip in another family's, which
// must not decide the route. The result shares r's headers (the cookie,
// Origin, Sec-Fetch-*) and context, and has no body. statusOnly reports
// that the URI came in nginx's headers: nginx relays only 401 and 403
// from its subrequest.
func originalRequest(r *http.Request, verifyPath string) (orig *http.Request, statusOnly bool, err error) {
	// The path as sent (escapes kept) and query, also from a request in
	// absolute form.
	rest, ok := strings.CutPrefix(r.URL.RequestURI(), verifyPath)
	if !ok || (rest != "" && rest[0] != '/' && rest[0] != '?') {
		return nil, false, errNotVerify
	}
	var q question
	if rest != "" && rest[0] == '/' {
		// Envoy: the original path and query follow the prefix.
		q.uri.add("the path after "+verifyPath, rest)
		q.method.add("the verify request's method", r.Method)
	}
	// Anything after "?" on the plain form is the verify request's own
	// query (Caddy copies the original one there); it says nothing.
	for _, v := range r.Header.Values(hdrOriginalURI) {
		q.uri.add(hdrOriginalURI, v)
		statusOnly = true
	}
	for _, v := range r.Header.Values(hdrOriginalURL) {
		q.uri.add(hdrOriginalURL, requestURIOf(v))
		statusOnly = true
	}
	for _, v := range r.Header.Values(hdrForwardedURI) {
		q.uri.add(hdrForwardedURI, v)
	}
	for _, v := range r.Header.Values(hdrOriginalMethod) {
		q.method.add(hdrOriginalMethod, v)
	}
	for _, v := range r.Header.Values(hdrForwardedMeth) {
		q.method.add(hdrForwardedMeth, v)
	}
	if rest != "" && rest[0] == '/' {
		statusOnly = false
	}
	orig, err = q.request(r)
	return orig, statusOnly, err
}

// question collects what a verify request says about the original one.
type question struct {
	uri, method agreed
}

// agreed is one value several sources must agree on.
type agreed struct {
	value, from string
	// conflict names the first source that disagreed.
	conflict string
}

func (a *agreed) add(from, v string) {
	switch {
	case a.from == "":
		a.value, a.from = v, from
	case v != a.value && a.conflict == "":
		a.conflict = from
	}
}

// request checks the collected values and builds the original request.
func (q *question) request(r *http.Request) (*http.Request, error) {
	switch {
	case q.uri.from == "":
		return nil, &originalError{"no original URI: the ingress must send " + hdrOriginalURI + " (nginx), " + hdrOriginalURL + " (ingress-nginx) or " + hdrForwardedURI + " (Traefik, Caddy), or ask for <verify path><original path> (Envoy)"}
	case q.uri.conflict != "":
		return nil, &originalError{q.uri.from + " and " + q.uri.conflict + " disagree on the original URI (the ingress sets one; the other came from the client)"}
	case q.method.from == "":
		return nil, &originalError{"no original method: the ingress must send " + hdrOriginalMethod + " (nginx, ingress-nginx) or " + hdrForwardedMeth + " (Traefik, Caddy)"}
	case q.method.conflict != "":
		return nil, &originalError{q.method.from + " and " + q.method.conflict + " disagree on the original method (the ingress sets one; the other came from the client)"}
	case !valid.Token(q.method.value):
		return nil, &originalError{"the original method in " + q.method.from + " is not an HTTP method"}
	}
	u, err := url.ParseRequestURI(q.uri.value)
	if err != nil || !strings.HasPrefix(q.uri.value, "/") {
		return nil, &originalError{"the original URI in " + q.uri.from + " is not a path"}
	}
	orig := new(http.Request)
	*orig = *r
	orig.Method = q.method.value
	orig.URL = u
	orig.RequestURI = q.uri.value
	orig.Body = http.NoBody
	orig.ContentLength = 0
	orig.GetBody = nil
	return orig, nil
}

// requestURIOf returns the path and query of an absolute URL as it was
// spelled (ingress-nginx's X-Original-URL is scheme://host + the request
// URI), or v itself when it is not absolute.
func requestURIOf(v string) string {
	_, afterScheme, ok := strings.Cut(v, "://")
	if !ok {
		return v
	}
	if i := strings.IndexAny(afterScheme, "/?"); i >= 0 {
		if afterScheme[i] == '?' {
			return "/" + afterScheme[i:]
		}
		return afterScheme[i:]
	}
	return "/"
}

// origin is u's scheme://host, or "" without u.
func origin(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
