package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// testEpoch is a fixed instant for records and login states, and where
// manual clocks start.
var testEpoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// manualClock is a clock tests move by hand, for the tests that run
// against a real redis-server: a testing/synctest bubble cannot hold their
// network I/O, so they cannot use its fake time. Every other time-based
// test uses synctest. Safe for concurrent use.
type manualClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newManualClock() *manualClock { return &manualClock{t: testEpoch} }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// faultyBackend wraps a Backend, counts calls per operation, and fails the
// operations named in fail.
type faultyBackend struct {
	Backend
	mu    sync.Mutex
	calls map[string]int
	fail  map[string]error
}

func newFaultyBackend(b Backend) *faultyBackend {
	return &faultyBackend{Backend: b, calls: map[string]int{}, fail: map[string]error{}}
}

func (f *faultyBackend) op(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[name]++
	return f.fail[name]
}

func (f *faultyBackend) setFail(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, name)
	} else {
		f.fail[name] = err
	}
}

func (f *faultyBackend) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

func (f *faultyBackend) resetCounts() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.calls)
}

func (f *faultyBackend) Get(ctx context.Context, key string) (Entry, error) {
	if err := f.op(opGet); err != nil {
		return Entry{}, err
	}
	return f.Backend.Get(ctx, key)
}

func (f *faultyBackend) Create(ctx context.Context, key string, data []byte, ttl time.Duration) error {
	if err := f.op(opCreate); err != nil {
		return err
	}
	return f.Backend.Create(ctx, key, data, ttl)
}

func (f *faultyBackend) Update(ctx context.Context, key string, version uint64, data []byte, ttl time.Duration) (uint64, error) {
	if err := f.op(opUpdate); err != nil {
		return 0, err
	}
	return f.Backend.Update(ctx, key, version, data, ttl)
}

func (f *faultyBackend) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := f.op(opTouch); err != nil {
		return err
	}
	return f.Backend.Touch(ctx, key, ttl)
}

func (f *faultyBackend) Delete(ctx context.Context, key string) error {
	if err := f.op(opDelete); err != nil {
		return err
	}
	return f.Backend.Delete(ctx, key)
}

func (f *faultyBackend) TryLock(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if err := f.op(opLock); err != nil {
		return false, err
	}
	return f.Backend.TryLock(ctx, key, owner, ttl)
}

func (f *faultyBackend) Unlock(ctx context.Context, key, owner string) error {
	if err := f.op(opUnlock); err != nil {
		return err
	}
	return f.Backend.Unlock(ctx, key, owner)
}

func (f *faultyBackend) Claimed(ctx context.Context, key string) (bool, error) {
	if err := f.op(opClaim); err != nil {
		return false, err
	}
	return f.Backend.Claimed(ctx, key)
}

func (f *faultyBackend) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := f.op(opClaim); err != nil {
		return false, err
	}
	return f.Backend.Claim(ctx, key, ttl)
}

func (f *faultyBackend) AddToIndex(ctx context.Context, index, member string, ttl time.Duration) error {
	if err := f.op(opIndexAdd); err != nil {
		return err
	}
	return f.Backend.AddToIndex(ctx, index, member, ttl)
}

func (f *faultyBackend) IndexMembers(ctx context.Context, index string) ([]string, error) {
	if err := f.op(opIndexList); err != nil {
		return nil, err
	}
	return f.Backend.IndexMembers(ctx, index)
}

func (f *faultyBackend) RemoveFromIndex(ctx context.Context, index string, members ...string) error {
	if err := f.op(opIndexRemove); err != nil {
		return err
	}
	return f.Backend.RemoveFromIndex(ctx, index, members...)
}

func (f *faultyBackend) Ping(ctx context.Context) error {
	if err := f.op(opPing); err != nil {
		return err
	}
	return f.Backend.Ping(ctx)
}

// testSecret is a fixed 32-byte server secret.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// newTestManager builds a Manager on b with the given clock and refresher;
// edit adjusts the options.
func newTestManager(t testing.TB, b Backend, now func() time.Time, r Refresher, edit func(*ManagerOptions)) *Manager {
	t.Helper()
	opts := ManagerOptions{
		Backend:    b,
		Secret:     testSecret,
		Refresher:  r,
		Issuer:     "https://issuer.example",
		Now:        now,
		Registerer: prometheus.NewRegistry(),
		LifetimeOptions: LifetimeOptions{
			IdleTimeout:   time.Hour,
			MaxLifetime:   24 * time.Hour,
			LoginStateTTL: 10 * time.Minute,
		},
		RefreshOptions: RefreshOptions{
			Ahead:          time.Minute,
			Timeout:        10 * time.Second,
			FailureBackoff: 5 * time.Second,
		},
	}
	if edit != nil {
		edit(&opts)
	}
	m, err := NewManager(opts)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	return m
}

// fakeJWT builds a JWT-shaped string of about size bytes with an RS256-sized
// random signature and realistic, mostly random claims.
func fakeJWT(tb testing.TB, size int, claims map[string]any) string {
	tb.Helper()
	rnd := func(n int) string {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			tb.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT","kid":"` + rnd(12) + `"}`))
	sig := rnd(256)
	for i := 0; ; i++ {
		payload, err := json.Marshal(claims)
		if err != nil {
			tb.Fatal(err)
		}
		s := head + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + sig
		if len(s) >= size {
			return s
		}
		claims[fmt.Sprintf("c%d", i)] = rnd(6)
	}
}

func decodeB64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
