package proxy

import (
	"strings"

	"github.com/tokenrelay/tokenrelay/session"
)

// ownCookies recognises tokenrelay's own cookie names in an upstream's
// Set-Cookie lines, so an upstream can neither plant a session (fixation)
// nor delete or shadow the user's: the session cookie's name with or
// without a __Host- or __Secure- prefix, and every login-binding cookie.
// Names are compared without regard to case (browsers match the prefixes
// that way, and no application needs a cookie differing from ours only by
// case). Safe for concurrent use.
type ownCookies struct {
	// base is the session cookie's name without its prefix.
	base string
}

func newOwnCookies(c session.CookieOptions) ownCookies {
	name := c.Name
	if name == "" {
		name = session.DefaultCookieName
	}
	return ownCookies{base: trimCookiePrefix(name)}
}

// trimCookiePrefix removes a __Host- or __Secure- prefix, in any case.
func trimCookiePrefix(name string) string {
	for _, p := range [...]string{"__Host-", "__Secure-"} {
		if len(name) >= len(p) && strings.EqualFold(name[:len(p)], p) {
			return name[len(p):]
		}
	}
	return name
}

// filter removes from lines the Set-Cookie lines that set one of our
// cookies, in place, and returns the lines kept and the name of the first
// one dropped ("" when none was). A line that sets no cookie a browser
// would keep (no name-value pair) is dropped too: it cannot be proved not
// to be ours and the browser would ignore it anyway.
func (o ownCookies) filter(lines []string) (kept []string, dropped string) {
	kept = lines[:0]
	for _, line := range lines {
		name, ok := setCookieName(line)
		if !ok || o.owns(name) {
			if dropped == "" {
				dropped = name
				if !ok {
					dropped = "(none)"
				}
			}
			continue
		}
		kept = append(kept, line)
	}
	return kept, dropped
}

// owns reports whether a cookie name is one of tokenrelay's.
func (o ownCookies) owns(name string) bool {
	base := trimCookiePrefix(name)
	return strings.EqualFold(base, o.base) ||
		(len(base) >= len(session.LoginCookiePrefix) && strings.EqualFold(base[:len(session.LoginCookiePrefix)], session.LoginCookiePrefix))
}

// setCookieName returns the name under which a browser stores the cookie
// of one Set-Cookie line, read as RFC 6265bis §5.6 reads it: the
// name-value pair ends at the first ";", the name at its first "=", both
// trimmed of spaces and tabs. A pair without "=" or with an empty name is
// a nameless cookie whose value the browser sends back bare, so the name
// it would pass for on the way back (the value up to its own "=") is
// returned. ok is false for a line with an empty name-value pair, which a
// browser ignores.
func setCookieName(line string) (name string, ok bool) {
	pair, _, _ := strings.Cut(line, ";")
	name, value, found := strings.Cut(pair, "=")
	name = strings.Trim(name, " \t")
	if !found || name == "" {
		if !found {
			value = name
		}
		// A nameless cookie: the browser sends back the value alone,
		// which a server reads as name=value.
		name, _, _ = strings.Cut(strings.Trim(value, " \t"), "=")
		name = strings.Trim(name, " \t")
	}
	return name, name != ""
}
