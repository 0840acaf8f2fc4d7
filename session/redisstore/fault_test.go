package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/redistest"
	"github.com/tokenrelay/tokenrelay/session/storetest"
)

// pauseRedis stops srv with SIGSTOP (a stall: connections stay open, nothing
// answers) and returns the function that resumes it; the test's cleanup
// resumes it too.
func pauseRedis(t *testing.T, srv *redistest.Server) (resume func()) {
	t.Helper()
	pid := srv.PID()
	if pid == 0 {
		t.Fatal("redis-server is not running")
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %d: %v", pid, err)
	}
	var once sync.Once
	resume = func() {
		once.Do(func() {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT %d: %v", pid, err)
			}
		})
	}
	t.Cleanup(resume)
	return resume
}

// TestRedisStallBoundedPerOperation pins the store's bound on a stalled
// Redis (the process paused, its connections open): every operation, a Get
// queued behind a batched pipeline included, fails with the operation's own
// deadline (OpTimeout), long before go-redis's read timeout and retries
// would end it; once Redis resumes, the same store works and the data is
// intact.
func TestRedisStallBoundedPerOperation(t *testing.T) {
	const (
		readTimeout = 5 * time.Second // go-redis alone: 3 attempts of 5s
		opTimeout   = 200 * time.Millisecond
	)
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{})
	c := newTestRedisClient(t, Options{URL: "redis://" + srv.Addr, ReadTimeout: readTimeout, WriteTimeout: readTimeout})
	s := New(c, Options{KeyPrefix: redistest.KeyPrefix(t), OpTimeout: opTimeout}, nil)
	key := storetest.SessionKey(t)
	if err := s.Create(ctx, key, []byte("sealed"), time.Hour); err != nil {
		t.Fatal(err)
	}

	resume := pauseRedis(t, srv)
	ops := map[string]func() error{
		"update": func() error { _, err := s.Update(ctx, key, 1, []byte("x"), time.Hour); return err },
		"lock":   func() error { _, err := s.TryLock(ctx, storetest.LockKey(key), "owner", time.Second); return err },
		"touch":  func() error { return s.Touch(ctx, key, time.Hour) },
		"ping":   func() error { return s.Ping(ctx) },
	}
	for i := range 8 { // concurrent Gets: one direct, the others batched behind it
		ops["get "+string(rune('a'+i))] = func() error { _, err := s.Get(ctx, key); return err }
	}
	type result struct {
		err  error
		took time.Duration
	}
	var mu sync.Mutex
	results := map[string]result{}
	var wg sync.WaitGroup
	for name, op := range ops {
		wg.Go(func() {
			start := time.Now()
			err := op()
			mu.Lock()
			results[name] = result{err, time.Since(start)}
			mu.Unlock()
		})
	}
	wg.Wait()
	resume()
	var longest time.Duration
	for name, r := range results {
		longest = max(longest, r.took)
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("%s on a stalled Redis: %v, want the operation's deadline (context.DeadlineExceeded)", name, r.err)
		}
		if r.took >= readTimeout {
			t.Errorf("%s on a stalled Redis took %s: go-redis's read timeout ended it, not OpTimeout %s", name, r.took, opTimeout)
		}
	}
	t.Logf("%d operations on a stalled Redis, OpTimeout %s, read timeout %s: longest %s", len(results), opTimeout, readTimeout, longest)

	e, err := s.Get(ctx, key)
	if err != nil || string(e.Data) != "sealed" || e.Version != 1 {
		t.Errorf("Get after the stall = %q v%d, %v; want the entry as written", e.Data, e.Version, err)
	}
}

// TestRouteRedisLogs pins that go-redis's own log lines go to the slog
// logger as structured records, not as plain text on stderr.
func TestRouteRedisLogs(t *testing.T) {
	var buf syncBuffer
	RouteLogs(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(func() { RouteLogs(slog.New(slog.DiscardHandler)) })

	c := newTestRedisClient(t, Options{URL: "redis://127.0.0.1:1"}) // nothing listens
	_ = c.Ping(context.Background()).Err()

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	found := false
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if rec["component"] == "go-redis" && rec["level"] == "WARN" && strings.Contains(rec["msg"].(string), "dial") {
			found = true
		}
	}
	if !found {
		t.Errorf("no go-redis dial failure in the JSON log: %q", lines)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
