package session

import (
	"net/http"
	"strings"
	"time"
)

// DefaultCookieName is the session cookie's default name. The __Host- prefix
// makes browsers accept it only with Secure, Path=/ and no Domain, so no
// subdomain can plant or overwrite it.
const DefaultCookieName = "__Host-tokenrelay"

// CookieOptions say how the session cookie is written. The cookie is always
// HttpOnly with Path=/ and no Domain.
type CookieOptions struct {
	// Name of the cookie; empty means DefaultCookieName.
	Name string
	// Secure marks the cookie Secure (required by the __Host- prefix).
	Secure bool
	// SameSite; the zero value (http.SameSiteDefaultMode) writes no
	// attribute. tokenrelay's default is http.SameSiteLaxMode.
	SameSite http.SameSite
}

func (o CookieOptions) name() string {
	if o.Name == "" {
		return DefaultCookieName
	}
	return o.Name
}

func (o CookieOptions) cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     o.name(),
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		Secure:   o.Secure,
		HttpOnly: true,
		SameSite: o.SameSite,
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

// Ticket reads the session ticket from r. With several cookies of that name
// (a stale one on a parent path, one planted by a sibling host) the first
// that parses wins. No cookie, or none that parses, is ErrNoSession.
func (o CookieOptions) Ticket(r *http.Request) (Ticket, error) {
	for _, c := range r.CookiesNamed(o.name()) {
		if t, err := ParseTicket(c.Value); err == nil {
			return t, nil
		}
	}
	return Ticket{}, ErrNoSession
}

// StripCookie removes every cookie of our name from each Cookie header line
// of h, so the session ticket never reaches an upstream. A line without our
// cookie stays untouched; in a line with it, the other cookies stay byte for
// byte as the browser sent them, joined by "; ". A line left empty is
// dropped, and the header is deleted when no line remains.
func (o CookieOptions) StripCookie(h http.Header) {
	lines := h.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	name := o.name()
	kept := make([]string, 0, len(lines))
	for _, line := range lines {
		if !strings.Contains(line, name) {
			kept = append(kept, line)
			continue
		}
		var parts []string
		removed := false
		for part := range strings.SplitSeq(line, ";") {
			p := strings.TrimSpace(part)
			if n, _, _ := strings.Cut(p, "="); strings.TrimSpace(n) == name {
				removed = true
				continue
			}
			if p != "" {
				parts = append(parts, p)
			}
		}
		switch {
		case !removed:
			kept = append(kept, line)
		case len(parts) > 0:
			kept = append(kept, strings.Join(parts, "; "))
		}
	}
	if len(kept) == 0 {
		h.Del("Cookie")
		return
	}
	h["Cookie"] = kept
}
