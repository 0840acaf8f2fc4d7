// Package valid holds the checks of single values that more than one
// options type makes: HTTP tokens (header and cookie names, methods), URLs
// that must be https except on loopback, ports and clean paths. Each
// function only answers yes or no; the caller words the problem.
package valid

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Token reports whether s is an RFC 9110 token: a header name, a cookie
// name or a method.
func Token(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// SecureURL reports whether raw is an absolute https URL, or http to a
// loopback host (localhost, 127.0.0.0/8, ::1).
func SecureURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && Secure(u)
}

// Secure reports whether u is an absolute https URL, or http to a loopback
// host.
func Secure(u *url.URL) bool {
	if u.Host == "" || u.Opaque != "" {
		return false
	}
	return u.Scheme == "https" || (u.Scheme == "http" && LoopbackHost(u.Hostname()))
}

// LoopbackHost reports whether host (without port or brackets) is
// localhost or a loopback IP address.
func LoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

// Port reports whether port is a decimal port number, 0 to 65535, written
// without leading zeros.
func Port(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535 && strconv.Itoa(n) == port
}

// CleanPath reports whether p has no query, fragment, spaces or control
// characters.
func CleanPath(p string) bool {
	return !strings.ContainsFunc(p, func(r rune) bool {
		return r == '?' || r == '#' || r <= ' ' || r == 0x7f
	})
}
