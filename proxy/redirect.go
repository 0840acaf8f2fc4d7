package proxy

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxReturnTo bounds the length of a return_to value. Longer values are
// refused rather than truncated, since a truncated path is a different page.
const maxReturnTo = 2048

// safeReturnTo returns raw when it is a same-origin relative path that is
// safe to put in a Location header after login, and "/" otherwise. It is the
// only defence against open redirects through return_to, so it accepts
// little:
//
//   - the value starts with exactly one "/" ("//host" and "/\host" are
//     protocol-relative to some browsers);
//   - it holds no backslash, control character or whitespace anywhere, and
//     is valid UTF-8 of at most 2048 bytes;
//   - it parses as a URL with neither scheme nor host;
//   - its path, percent-decoded once, passes the same checks again, so
//     "/%2F%2Fevil.com" and "/%5Cevil" are refused for servers or
//     frameworks that decode before redirecting.
//
// The query and fragment are kept as they were sent.
func safeReturnTo(raw string) string {
	if !safeRelativePath(raw) {
		return "/"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || u.User != nil {
		return "/"
	}
	path := raw
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	decoded, err := url.PathUnescape(path)
	if err != nil || !safeRelativePath(decoded) {
		return "/"
	}
	return raw
}

// safeRelativePath reports whether s starts with exactly one slash and
// holds nothing a browser could read as another origin.
func safeRelativePath(s string) bool {
	if len(s) == 0 || len(s) > maxReturnTo || !utf8.ValidString(s) {
		return false
	}
	if s[0] != '/' || (len(s) > 1 && (s[1] == '/' || s[1] == '\\')) {
		return false
	}
	for _, r := range s {
		if r == '\\' || unicode.IsControl(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}
