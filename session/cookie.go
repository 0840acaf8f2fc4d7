package session

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"
)

// DefaultCookieName is the session cookie's default name. The __Host- prefix
// makes browsers accept it only with Secure, Path=/ and no Domain, so no
// subdomain can plant or overwrite it.
const DefaultCookieName = "__Host-tokenrelay"

// LoginCookiePrefix starts the name of every login-binding cookie, after
// "__Host-" when the cookie is secure: __Host-tokenrelay-login-<id>, where
// <id> is the start of the login's state. The cookie holds the sealed login
// state (see Manager.SealLogin).
const LoginCookiePrefix = "tokenrelay-login-"

// loginCookieIDChars is how much of the state names its binding cookie:
// enough to keep the concurrent logins of one browser apart.
const loginCookieIDChars = 16

// maxTickets bounds how many session cookies of one request are tried
// against the store, so a request stuffed with cookies costs a few lookups
// at most.
const maxTickets = 4

func (o CookieOptions) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     o.name(),
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		Secure:   o.secure(),
		HttpOnly: true,
		SameSite: o.sameSite(),
	}
}

// Set writes the cookie carrying t with Max-Age rounded up to whole seconds.
// A maxAge of zero or less writes a browser-session cookie (no Max-Age).
func (o CookieOptions) Set(w http.ResponseWriter, t Ticket, maxAge time.Duration) {
	secs := 0
	if maxAge > 0 {
		secs = int((maxAge + time.Second - 1) / time.Second)
	}
	http.SetCookie(w, o.cookie(t.Encode(), secs))
}

// Clear expires the cookie (Max-Age=0 and an Expires in 1970) with the same
// name, path and attributes Set uses, so the browser matches and drops it.
func (o CookieOptions) Clear(w http.ResponseWriter) {
	c := o.cookie("", -1)
	c.Expires = time.Unix(0, 0)
	http.SetCookie(w, c)
}

// Ticket reads the session ticket from r: the first cookie of our name that
// parses. No cookie, or none that parses, is ErrNoSession. Callers that
// open the session should use Tickets, since the first ticket may not be
// the browser's own (a cookie tossed by a sibling host).
func (o CookieOptions) Ticket(r *http.Request) (Ticket, error) {
	for _, c := range r.CookiesNamed(o.name()) {
		if t, err := ParseTicket(c.Value); err == nil {
			return t, nil
		}
	}
	return Ticket{}, ErrNoSession
}

// Tickets returns the distinct tickets of r's session cookies that parse, in
// the order the browser sent them and at most maxTickets of them, and how
// many cookies of our name r carries, parsing or not. With more than one
// cookie the browser's own may be any of them (a sibling host can toss a
// cookie of the same name when the cookie is not __Host-), so the caller
// uses the first ticket that opens a session and never clears the cookie on
// that ambiguity: clearing would hit the browser's real session.
//
// It reads the Cookie lines as Request.CookiesNamed does (the same
// splitting, trimming, quotes and value check), without building a
// http.Cookie for every cookie of the request: it runs on every request.
func (o CookieOptions) Tickets(r *http.Request) (tickets []Ticket, cookies int) {
	name := o.name()
	for _, line := range r.Header["Cookie"] {
		for rest := line; rest != ""; {
			var part string
			part, rest, _ = strings.Cut(rest, ";")
			n, v, _ := strings.Cut(textproto.TrimString(part), "=")
			if textproto.TrimString(n) != name {
				continue
			}
			v, ok := cookieValue(v)
			if !ok {
				continue
			}
			cookies++
			t, err := ParseTicket(v)
			if err != nil || len(tickets) == maxTickets || slices.Contains(tickets, t) {
				continue
			}
			tickets = append(tickets, t)
		}
	}
	return tickets, cookies
}

// cookieValue is a cookie's value as net/http reads it from a Cookie line:
// without surrounding double quotes, and only if every byte is one a
// cookie value may hold.
func cookieValue(raw string) (string, bool) {
	if len(raw) > 1 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	for i := 0; i < len(raw); i++ {
		if b := raw[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return "", false
		}
	}
	return raw, true
}

// LoginCookieName is the name of the binding cookie of the login whose
// state is state. It is "" when state cannot name a cookie (a value no
// login of ours produced).
func (o CookieOptions) LoginCookieName(state string) string {
	name := LoginCookiePrefix + state[:min(len(state), loginCookieIDChars)]
	if o.secure() {
		name = "__Host-" + name
	}
	if state == "" || (&http.Cookie{Name: name, Value: "x"}).Valid() != nil {
		return ""
	}
	return name
}

// IsLoginCookie reports whether name is a login-binding cookie as these
// options write it.
func (o CookieOptions) IsLoginCookie(name string) bool {
	if o.secure() {
		var ok bool
		if name, ok = strings.CutPrefix(name, "__Host-"); !ok {
			return false
		}
	}
	return len(name) == len(LoginCookiePrefix)+loginCookieIDChars && strings.HasPrefix(name, LoginCookiePrefix)
}

// IsOwnCookie reports whether name is a cookie tokenrelay itself sets: the
// session cookie, or a login-binding cookie with or without a cookie
// prefix. Such cookies never go to an upstream, and an upstream must not
// set them.
func (o CookieOptions) IsOwnCookie(name string) bool {
	if name == o.name() {
		return true
	}
	name, _ = strings.CutPrefix(name, "__Host-")
	name, _ = strings.CutPrefix(name, "__Secure-")
	return strings.HasPrefix(name, LoginCookiePrefix)
}

// SetLogin writes the binding cookie of a login: HttpOnly, Path=/, Secure
// (and so __Host-) when the options are, SameSite=Lax whatever the session
// cookie's setting, since the provider's redirect back is a cross-site
// top-level GET that Strict would strip it from. maxAge is rounded up to
// whole seconds.
func (o CookieOptions) SetLogin(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, o.loginCookie(name, value, int((maxAge+time.Second-1)/time.Second)))
}

// ClearLogin expires the login-binding cookie called name.
func (o CookieOptions) ClearLogin(w http.ResponseWriter, name string) {
	c := o.loginCookie(name, "", -1)
	c.Expires = time.Unix(0, 0)
	http.SetCookie(w, c)
}

func (o CookieOptions) loginCookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		Secure:   o.secure(),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// StripCookie removes every cookie tokenrelay owns (IsOwnCookie: the
// session cookie and the login-binding cookies) from each Cookie header line
// of h, so neither the session ticket nor a sealed login state ever reaches
// an upstream. A line without our cookie stays untouched; in a line with
// it, the other cookies stay byte for byte as the browser sent them, joined
// by "; ". A line left empty is dropped, and the header is deleted when no
// line remains. It edits h's Cookie values in place, so h must own them (as
// the clone of a request's header that a proxy sends does).
func (o CookieOptions) StripCookie(h http.Header) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	name := o.name()
	n := 0
	for _, line := range lines {
		if strings.Contains(line, name) || strings.Contains(line, LoginCookiePrefix) {
			var removed bool
			if line, removed = o.stripLine(line); removed && line == "" {
				continue
			}
		}
		lines[n] = line
		n++
	}
	clear(lines[n:])
	if n == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = lines[:n]
}

// stripLine removes our cookies from one Cookie line, and reports whether
// it found any; line comes back untouched when it did not. The kept cookies
// are joined by "; ", a single one is returned as a slice of line.
func (o CookieOptions) stripLine(line string) (string, bool) {
	var b strings.Builder
	first, kept, removed := "", 0, false
	for rest, more := line, true; more; {
		var part string
		part, rest, more = strings.Cut(rest, ";")
		p := strings.TrimSpace(part)
		if n, _, _ := strings.Cut(p, "="); o.IsOwnCookie(strings.TrimSpace(n)) {
			removed = true
			continue
		}
		if p == "" {
			continue
		}
		if kept++; kept == 1 {
			first = p
			continue
		}
		if kept == 2 {
			b.Grow(len(line))
			b.WriteString(first)
		}
		b.WriteString("; ")
		b.WriteString(p)
	}
	switch {
	case !removed:
		return line, false
	case kept <= 1:
		return first, true
	}
	return b.String(), true
}
