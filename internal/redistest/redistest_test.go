package redistest

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestStartStopRestartKeepsAppendOnlyData(t *testing.T) {
	ctx := context.Background()
	s := Start(t, Options{AppendOnly: true})
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	pid := s.PID()
	if pid == 0 {
		t.Fatal("PID() = 0 for a running server")
	}

	s.Stop(t)
	if got := s.PID(); got != 0 {
		t.Errorf("PID() after Stop = %d, want 0", got)
	}
	if err := rawPing(s.Addr); err == nil {
		t.Errorf("PING %s after Stop succeeded, want an error", s.Addr)
	}
	s.Stop(t) // stopping twice is a no-op

	s.Restart(t)
	if got := s.PID(); got == 0 || got == pid {
		t.Errorf("PID() after Restart = %d, want a new running process (old %d)", got, pid)
	}
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Errorf("GET k after Restart = %q, %v; want \"v\", nil", got, err)
	}
}

func TestSharedIsOneServer(t *testing.T) {
	a, b := Shared(t), Shared(t)
	if a != b {
		t.Fatalf("Shared returned %p and %p, want one server", a, b)
	}
	if err := rawPing(a.Addr); err != nil {
		t.Fatalf("PING shared server: %v", err)
	}
}

func TestKeyPrefixUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		p := KeyPrefix(t)
		if seen[p] {
			t.Fatalf("KeyPrefix returned %q twice", p)
		}
		seen[p] = true
		if !strings.HasSuffix(p, ":TestKeyPrefixUnique:") {
			t.Errorf("KeyPrefix = %q, want the test name in it", p)
		}
	}
}

// recorder stands in for a test to see whether a helper skips or fails it.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestMissingBinary(t *testing.T) {
	tests := []struct {
		ci                    string
		wantSkip, wantFailure bool
	}{
		{ci: "", wantSkip: true},
		{ci: "false", wantSkip: true},
		{ci: "true", wantFailure: true},
	}
	for _, tt := range tests {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				binary(r, "tokenrelay-no-such-redis-server")
			}()
			<-done
			if r.skipped != tt.wantSkip || r.failed != tt.wantFailure {
				t.Errorf("skipped, failed = %v, %v; want %v, %v", r.skipped, r.failed, tt.wantSkip, tt.wantFailure)
			}
			if !strings.Contains(r.msg, "apt-get install redis-server") {
				t.Errorf("message %q does not say how to install Redis", r.msg)
			}
		})
	}
}

func TestSentinelFailover(t *testing.T) {
	s := StartSentinel(t)
	if got, want := s.MasterAddr(t), s.Master.Addr; got != want {
		t.Fatalf("MasterAddr() = %s, want %s", got, want)
	}
	if got, want := s.Failover(t), s.Replica.Addr; got != want {
		t.Errorf("Failover() = %s, want the replica %s", got, want)
	}
	if got, want := s.MasterAddr(t), s.Replica.Addr; got != want {
		t.Errorf("MasterAddr() after failover = %s, want %s", got, want)
	}
}

func TestClusterServesEverySlot(t *testing.T) {
	c := StartCluster(t)
	ctx := context.Background()
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer client.Close()

	// Keys spread over the slots land on all three nodes.
	var nodeClients []*redis.Client
	for _, n := range c.Nodes {
		nodeClients = append(nodeClients, n.Client(t))
	}
	nodes := map[int]bool{}
	for i := range 30 {
		key := fmt.Sprintf("key-%d", i)
		if err := client.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		for j, nc := range nodeClients {
			if nc.Exists(ctx, key).Val() == 1 {
				nodes[j] = true
			}
		}
	}
	if got := len(nodes); got != 3 {
		t.Errorf("30 keys landed on %d nodes, want 3", got)
	}
}
