package proxy

import (
	"strings"
	"testing"
)

func TestSafeReturnTo(t *testing.T) {
	long := "/" + strings.Repeat("a", maxReturnTo-1)
	tests := []struct {
		name string
		raw  string
		want string
	}{
		// Refused: everything a browser or a decoding server might send to
		// another origin, or that is not a plain path.
		{"empty", "", "/"},
		{"protocol relative", "//evil.com", "/"},
		{"slash backslash", `/\evil.com`, "/"},
		{"encoded slashes after slash", "/%2F%2Fevil.com", "/"},
		{"encoded slashes", "%2F%2Fevil.com", "/"},
		{"absolute https", "https://evil.com", "/"},
		{"absolute http path", "http://evil.com/a", "/"},
		{"javascript", "javascript:alert(1)", "/"},
		{"data", "data:text/html,hi", "/"},
		{"tab", "/\t/evil", "/"},
		{"encoded backslash", "/%5Cevil", "/"},
		{"encoded tab", "/%09/evil", "/"},
		{"leading space", " /evil", "/"},
		{"backslash later", `/a\b`, "/"},
		{"backslash in query", `/a?x=\`, "/"},
		{"space in path", "/a b", "/"},
		{"newline", "/a\r\nLocation: //evil", "/"},
		{"encoded newline", "/a%0d%0aSet-Cookie:x", "/"},
		{"unicode space", "/a\u2028b", "/"},
		{"bad escape", "/%zz", "/"},
		{"invalid utf-8", "/\xff", "/"},
		{"relative no slash", "evil.com", "/"},
		{"too long", long + "b", "/"},
		{"triple slash", "///evil.com", "/"},
		// Kept as sent.
		{"root", "/", "/"},
		{"path", "/dashboard", "/dashboard"},
		{"query kept", "/search?q=go&page=2", "/search?q=go&page=2"},
		{"fragment kept", "/docs#install", "/docs#install"},
		{"query and fragment", "/a/b?x=1#top", "/a/b?x=1#top"},
		{"encoded query", "/s?next=%2F%2Fevil&q=a%20b", "/s?next=%2F%2Fevil&q=a%20b"},
		{"encoded path char", "/files/a%2Fb", "/files/a%2Fb"},
		{"colon in path", "/a:b", "/a:b"},
		{"max length", long, long},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := safeReturnTo(tt.raw); got != tt.want {
				t.Errorf("safeReturnTo(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}
