package problem

import (
	"slices"
	"testing"
)

func TestJoin(t *testing.T) {
	tests := []struct{ prefix, path, want string }{
		{"", "issuer", "issuer"},
		{"provider", "", "provider"},
		{"provider", "issuer", "provider.issuer"},
		{"session", "redis.url", "session.redis.url"},
		{"routes", "[2].path", "routes[2].path"},
		{"routes[2]", "policy.emails[0]", "routes[2].policy.emails[0]"},
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := Join(tt.prefix, tt.path); got != tt.want {
			t.Errorf("Join(%q, %q) = %q, want %q", tt.prefix, tt.path, got, tt.want)
		}
	}
}

func TestListUnderAndSeverities(t *testing.T) {
	var inner List
	inner.Add("url", "must be a %s URL", "redis://")
	inner.Warn("", "ignored with store %s", "memory")
	var l List
	l.Add("", "whole file")
	l.Append("session.redis", inner)
	l.Append("session", nil)

	got := make([]string, len(l))
	for i, p := range l {
		got[i] = p.String()
	}
	want := []string{"whole file", "session.redis.url: must be a redis:// URL", "session.redis: ignored with store memory"}
	if !slices.Equal(got, want) {
		t.Errorf("problems = %q, want %q", got, want)
	}
	if errs := l.Errors(); len(errs) != 2 || errs[1].Path != "session.redis.url" {
		t.Errorf("Errors() = %v, want the two errors", errs)
	}
	if ws := l.Warnings(); len(ws) != 1 || ws[0].Severity != Warning || ws[0].Path != "session.redis" {
		t.Errorf("Warnings() = %v, want the one warning", ws)
	}
	if inner[0].Path != "url" {
		t.Errorf("Append changed the problems it was given: %v", inner)
	}
}
