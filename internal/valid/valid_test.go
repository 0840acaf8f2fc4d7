package valid

import "testing"

func TestChecks(t *testing.T) {
	for _, tt := range []struct {
		name string
		got  bool
		want bool
	}{
		{"Token(X-CSRF)", Token("X-CSRF"), true},
		{"Token(empty)", Token(""), false},
		{"Token(with space)", Token("Bad Header"), false},
		{"Token(__Host-x)", Token("__Host-x"), true},
		{"SecureURL(https)", SecureURL("https://id.example.com"), true},
		{"SecureURL(http loopback)", SecureURL("http://127.0.0.2:9000"), true},
		{"SecureURL(http ::1)", SecureURL("http://[::1]:9000"), true},
		{"SecureURL(http localhost)", SecureURL("http://LocalHost:8080"), true},
		{"SecureURL(http public)", SecureURL("http://id.example.com"), false},
		{"SecureURL(no scheme)", SecureURL("id.example.com"), false},
		{"SecureURL(ftp)", SecureURL("ftp://127.0.0.1/"), false},
		{"Port(0)", Port("0"), true},
		{"Port(65535)", Port("65535"), true},
		{"Port(65536)", Port("65536"), false},
		{"Port(08)", Port("08"), false},
		{"CleanPath(/a/b)", CleanPath("/a/b"), true},
		{"CleanPath(query)", CleanPath("/a?b"), false},
		{"CleanPath(space)", CleanPath("/a b"), false},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestLoopbackHost(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"LOCALHOST", true},
		{"127.0.0.1", true},
		{"127.255.0.9", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"128.0.0.1", false},
		{"localhost.example.com", false},
		{"app.localhost", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := LoopbackHost(tt.host); got != tt.want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}
