package e2e

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/redistest"
)

// Bounds of the login-start flood: as fast as floodWorkers clients can go,
// for floodFor or floodMax requests, whichever comes first.
const (
	floodFor     = 5 * time.Second
	floodWorkers = 8
	floodMax     = 200_000
)

// floodLogins sends GET /.auth/login?return_to=/ from floodWorkers clients
// that keep no cookies, as fast as tokenrelay answers, and returns how many
// were answered 302 (and how many anything else).
func floodLogins(t *testing.T, relayURL string) (started, other int64) {
	t.Helper()
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{MaxIdleConnsPerHost: floodWorkers},
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), floodFor)
	defer cancel()
	var sent, ok, bad atomic.Int64
	var wg sync.WaitGroup
	for range floodWorkers {
		wg.Go(func() {
			for ctx.Err() == nil && sent.Add(1) <= floodMax {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, relayURL+"/.auth/login?return_to=/", nil)
				resp, err := client.Do(req)
				if err != nil {
					continue // the deadline cut the request short
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusFound {
					ok.Add(1)
				} else {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return ok.Load(), bad.Load()
}

// TestLoginFloodCostsNothing: a login that never comes back from the
// provider costs the server nothing. Five seconds of login starts at the
// highest rate the clients reach grow Redis by fewer than 2,000 keys (the
// state lives sealed in each answer's cookie, not in the store) and the
// memory store's heap by less than 20 MB, and a normal login through the
// real OP works right after. It runs alone (not parallel), so the flood
// does not slow the other end-to-end tests.
func TestLoginFloodCostsNothing(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		rdb := redistest.Start(t, redistest.Options{})
		s := startStack(t, stackOptions{AccessTTL: 60 * time.Second, RedisAddr: rdb.Addr, LogLevel: "info"})
		client := rdb.Client(t)
		before, err := client.DBSize(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		started, other := floodLogins(t, s.RelayURL)
		after, err := client.DBSize(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("redis: %d login starts (%d other answers) in %s: %d → %d keys", started, other, floodFor, before, after)
		if started < 1000 || other != 0 {
			t.Fatalf("the flood started %d logins and got %d other answers; want at least 1,000 and none", started, other)
		}
		if grew := after - before; grew >= 2000 {
			t.Errorf("Redis grew by %d keys during %d login starts, want fewer than 2,000", grew, started)
		}
		loginAfterFlood(t, s)
	})
	t.Run("memory", func(t *testing.T) {
		// GOGC=5 keeps the garbage in the heap figure within 5% of the
		// live heap, so what the heap gains is what the flood left behind.
		s := startStack(t, stackOptions{AccessTTL: 60 * time.Second, LogLevel: "info", Env: []string{"GOGC=5"}})
		heap := func() float64 {
			return redisMetrics(t, s.AdminURL, "go_memstats_heap_alloc_bytes")["go_memstats_heap_alloc_bytes"]
		}
		before := heap()
		started, other := floodLogins(t, s.RelayURL)
		after := heap()
		grew := after - before
		t.Logf("memory: %d login starts (%d other answers) in %s: heap %.1f → %.1f MB", started, other, floodFor, before/1e6, after/1e6)
		if started < 1000 || other != 0 {
			t.Fatalf("the flood started %d logins and got %d other answers; want at least 1,000 and none", started, other)
		}
		if grew >= 20e6 {
			t.Errorf("the heap grew by %.1f MB during %d login starts, want less than 20 MB", grew/1e6, started)
		}
		// However slow the machine, a login start may leave at most
		// floodBytesPerLogin behind, beyond floodGCSlack for the collector.
		if limit := floodGCSlack + floodBytesPerLogin*float64(started); grew >= limit {
			t.Errorf("the heap grew by %.1f MB (%.0f bytes per login start), want less than %.1f MB", grew/1e6, grew/float64(started), limit/1e6)
		}
		loginAfterFlood(t, s)
	})
}

// With GOGC=5, the heap figure holds at most a few hundred KB of garbage;
// a login start that stored anything (a sealed state is about 300 bytes
// with its map entry) exceeds floodBytesPerLogin.
const (
	floodGCSlack       = 1e6
	floodBytesPerLogin = 64
)

// loginAfterFlood logs a user in through the real OP and calls the API.
func loginAfterFlood(t *testing.T, s *stack) {
	t.Helper()
	b := newBrowser(t)
	res := b.login(t, s.RelayURL, "/api/whoami", "after-flood")
	if got := decodeWhoami(t, res.Final); got.Sub != "after-flood" {
		t.Errorf("login after the flood: whoami sub = %q, want after-flood", got.Sub)
	}
}
