package session

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/idptest"
)

// TestOpenThenAccessToken pins the request path of a route that judges the
// user: Open reads the session once, claims included, without sliding the
// idle timeout; AccessToken given that read hands out the token without
// reading the store again, and slides the idle timeout as it always does;
// the cache key is the same for every read of one session and differs
// between sessions.
func TestOpenThenAccessToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := newFaultyBackend(NewMemoryStore(time.Now))
		m := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), nil)
		rec := testRecord()
		rec.Claims = map[string]any{"name": "Ada", "groups": []any{"admins"}}
		rec.AccessExpiry = time.Now().Add(2 * time.Hour)
		tk, err := m.Create(ctx, rec, ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		other, err := m.Create(ctx, rec, ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Minute) // half the idle timeout: the next use slides it
		store.resetCounts()

		o, err := m.Open(ctx, tk)
		if err != nil {
			t.Fatal(err)
		}
		if got := o.Record(); got.Subject != "user-1" || got.Claims["name"] != "Ada" || len(got.Claims["groups"].([]any)) != 1 {
			t.Errorf("Open: record %q with claims %v, want user-1's with name and groups", got.Subject, got.Claims)
		}
		if gets, touches := store.count(opGet), store.count(opTouch); gets != 1 || touches != 0 {
			t.Errorf("Open: %d Gets and %d Touches, want 1 and 0", gets, touches)
		}
		tok, err := m.AccessToken(ctx, TokenRequest{Ticket: tk, Opened: o})
		if err != nil || tok.Value != "at-0" {
			t.Fatalf("AccessToken(Opened) = %v, %v; want at-0", tok.Value, err)
		}
		if gets, touches := store.count(opGet), store.count(opTouch); gets != 1 || touches != 1 {
			t.Errorf("Open then AccessToken: %d Gets and %d Touches, want 1 and 1", gets, touches)
		}

		o2, err := m.Open(ctx, tk)
		if err != nil {
			t.Fatal(err)
		}
		o3, err := m.Open(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		if o.CacheKey() != o2.CacheKey() || o.CacheKey() == o3.CacheKey() {
			t.Errorf("cache keys %q, %q (same session) and %q (another); want equal, then different", o.CacheKey(), o2.CacheKey(), o3.CacheKey())
		}

		if _, err := m.End(ctx, tk, ReasonLogout); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Open(ctx, tk); !errors.Is(err, ErrNoSession) {
			t.Errorf("Open after End = %v, want ErrNoSession", err)
		}
	})
}
