package identity

import (
	"context"
	"net/http"
	"strconv"
	"testing"
)

// BenchmarkAssertion measures what the assertion adds to a request: signing
// a new one per request (ES256, EdDSA) against reusing the one cached for
// the session, and the identity headers alone for comparison.
func BenchmarkAssertion(b *testing.B) {
	u := User{Subject: "u-alice", Claims: map[string]any{"email": "alice@example.com", "groups": []any{"staff", "admins"}, "preferred_username": "alice"}}
	for _, bc := range []struct {
		name      string
		alg       string
		assertion bool
		cacheKey  string
	}{
		{"headers-only", "", false, ""},
		{"ES256-sign", "ES256", true, ""},
		{"EdDSA-sign", "EdDSA", true, ""},
		{"ES256-cached", "ES256", true, "session-hash"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			o := AssertionOptions{Algorithm: bc.alg}
			ring, err := NewKeyRing(context.Background(), KeyRingConfig{Options: o, Store: &MemoryKeyStore{}, Secret: testSecret})
			if err != nil {
				b.Fatal(err)
			}
			rt, err := NewRoute(Options{Assertion: bc.assertion}, testAudience, NewSigner(ring, testIssuer, o))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				h := make(http.Header, 8)
				if err := rt.Apply(ctx, h, u, "", bc.cacheKey); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAssertionCacheParallel measures the cache under concurrent
// sessions, for lock contention.
func BenchmarkAssertionCacheParallel(b *testing.B) {
	o := AssertionOptions{}
	ring, err := NewKeyRing(context.Background(), KeyRingConfig{Options: o, Store: &MemoryKeyStore{}, Secret: testSecret})
	if err != nil {
		b.Fatal(err)
	}
	rt, _ := NewRoute(Options{Assertion: true}, testAudience, NewSigner(ring, testIssuer, o))
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = "session-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			h := make(http.Header, 8)
			_ = rt.Apply(context.Background(), h, User{Subject: "u"}, "", keys[i%len(keys)])
			i++
		}
	})
}
