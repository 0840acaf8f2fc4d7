package session

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/idptest"
	"github.com/tokenrelay/tokenrelay/internal/redistest"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session/redisstore"
)

// The Manager on a real Redis store. package redisstore imports this
// package's Backend contract only (session/storage), so these tests can use
// it.

// TestMain stops the package run's shared redis-server at the end.
func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// newTestRedisClient builds a client with redisstore.NewClient and closes
// it when the test ends.
func newTestRedisClient(t *testing.T, opts redisstore.Options) redis.UniversalClient {
	t.Helper()
	c, err := redisstore.NewClient(opts)
	if err != nil {
		t.Fatalf("redisstore.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestIndexPrunedAtLogin pins that the back-channel indexes do not keep the
// sessions the store expired (idle timeout): the next login of the same
// user drops them, on the memory store and on Redis alike.
func TestIndexPrunedAtLogin(t *testing.T) {
	ctx := context.Background()
	for name, backend := range map[string]func(t *testing.T, clock *manualClock) (Backend, func(key string)){
		"memory": func(t *testing.T, clock *manualClock) (Backend, func(string)) {
			return NewMemoryStore(clock.Now), func(string) { clock.Advance(2 * time.Hour) }
		},
		"redis": func(t *testing.T, _ *manualClock) (Backend, func(string)) {
			srv := redistest.Shared(t)
			c := newTestRedisClient(t, redisstore.Options{URL: "redis://" + srv.Addr})
			prefix := redistest.KeyPrefix(t)
			// What the idle timeout's expiry does to a record.
			return redisstore.New(c, redisstore.Options{KeyPrefix: prefix}, nil), func(key string) { c.Del(ctx, prefix+key) }
		},
	} {
		t.Run(name, func(t *testing.T) {
			clock := newManualClock()
			store, expire := backend(t, clock)
			m := newTestManager(t, store, clock.Now, idptest.NewTokenEndpoint(clock.Now, time.Hour), nil) // idle 1h
			login := func() Ticket {
				tk, err := m.Create(ctx, Record{AccessToken: "at", RefreshToken: "rt", AccessExpiry: clock.Now().Add(time.Hour), Subject: "ada", SID: "sid-1"}, ViaLogin)
				if err != nil {
					t.Fatal(err)
				}
				return tk
			}
			first := login()
			expire(sessionKey(first.ID))
			second := login()
			for _, ix := range []string{subIndexKey(m.issuer, "ada"), sidIndexKey(m.issuer, "sid-1")} {
				members, err := store.IndexMembers(ctx, ix)
				if err != nil || len(members) != 1 || members[0] != sessionKey(second.ID) {
					t.Errorf("index %s = %q, %v; want only the live session", ix, members, err)
				}
			}
		})
	}
}

// TestRedisMemoryPerSession measures what one session costs in Redis, every
// key counted (MEMORY USAGE): the record, refreshed once, and the sub and
// sid index sets of a user with one session. Together they stay within the
// 2 KiB a session may use.
func TestRedisMemoryPerSession(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Shared(t)
	c := newTestRedisClient(t, redisstore.Options{URL: "redis://" + srv.Addr})
	store := redisstore.New(c, redisstore.Options{}, nil) // the real key lengths
	prefix := (redisstore.Options{}).WithDefaults().KeyPrefix
	clock := newManualClock()
	rec := realisticRecord(t)
	m := newTestManager(t, store, clock.Now, funcRefresher(func(context.Context, secret.String) (*idp.Token, error) {
		return &idp.Token{AccessToken: rec.AccessToken, RefreshToken: "R8k2Pq9Xw3Lm8Nt4Vy1Za6Bc0De5Fg7Hj2Kl9Mn4Op5", Expiry: clock.Now().Add(5 * time.Minute)}, nil
	}), nil)
	tk, err := m.Create(ctx, *rec, ViaLogin)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(10 * time.Minute)
	if _, err := m.AccessToken(ctx, TokenRequest{Ticket: tk}); err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{
		"record":    prefix + sessionKey(tk.ID),
		"sub index": prefix + subIndexKey(m.issuer, rec.Subject),
		"sid index": prefix + sidIndexKey(m.issuer, rec.SID),
	}
	t.Cleanup(func() {
		for _, k := range keys {
			c.Del(ctx, k)
		}
	})
	var total int64
	for name, k := range keys {
		n, err := c.MemoryUsage(ctx, k, 0).Result()
		if err != nil {
			t.Fatalf("MEMORY USAGE %s: %v", name, err)
		}
		t.Logf("MEMORY USAGE %s: %d B", name, n)
		total += n
		if name == "record" && n > 2048 {
			t.Errorf("record after a refresh: %d B, want ≤ 2048", n)
		}
	}
	t.Logf("one session in Redis, every key: %d B", total)
	if total > 2048 {
		t.Errorf("one session in Redis, every key: %d B, want ≤ 2048", total)
	}
}
