package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name the Sentinel set monitors.
const MasterName = "mymaster"

// failoverTimeout bounds SentinelSet.Failover: sentinel needs a few seconds
// to elect itself leader and promote the replica.
const failoverTimeout = 60 * time.Second

// SentinelSet is a master, one replica and one sentinel that monitors them
// with quorum 1, so a failover can be triggered by hand.
type SentinelSet struct {
	Master   *Server
	Replica  *Server
	Sentinel *Server

	client *redis.Client // talks to the sentinel
}

// StartSentinel starts a Sentinel set and waits until the replica is in
// sync and the sentinel knows it, so Failover can promote it at once.
// Everything is stopped when the test ends.
func StartSentinel(tb testing.TB) *SentinelSet {
	tb.Helper()
	sentinelBin := binary(tb, "redis-sentinel")
	master := Start(tb, Options{Args: []string{"--repl-diskless-sync-delay", "0"}})
	replica := Start(tb, Options{Args: []string{
		"--replicaof", "127.0.0.1", fmt.Sprint(master.Port),
		"--repl-diskless-sync-delay", "0",
	}})

	dir := tb.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	sentinel, err := startOnFreePort(sentinelBin, dir, func(port int) ([]string, error) {
		// The sentinel rewrites its config file, so it gets its own copy
		// in its own directory.
		text := strings.Join([]string{
			"bind 127.0.0.1",
			fmt.Sprintf("port %d", port),
			"dir " + dir,
			"daemonize no",
			"logfile " + filepath.Join(dir, "redis.log"),
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1", MasterName, master.Port),
			"sentinel down-after-milliseconds " + MasterName + " 1000",
			"sentinel failover-timeout " + MasterName + " 5000",
			"",
		}, "\n")
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, fmt.Errorf("redistest: %w", err)
		}
		return []string{conf}, nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := sentinel.stop(); err != nil {
			tb.Error(err)
		}
	})

	s := &SentinelSet{Master: master, Replica: replica, Sentinel: sentinel}
	s.client = redis.NewClient(&redis.Options{Addr: sentinel.Addr})
	tb.Cleanup(func() { _ = s.client.Close() })

	ctx := context.Background()
	replicaClient := replica.Client(tb)
	err = waitFor(ctx, startTimeout, func(ctx context.Context) error {
		info, err := replicaClient.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("replica %s not in sync with %s", replica.Addr, master.Addr)
		}
		return s.replicaKnown(ctx)
	})
	if err != nil {
		tb.Fatalf("redistest: sentinel set not ready: %v\n%s", err, sentinel.Log())
	}
	return s
}

// replicaKnown reports whether the sentinel lists a healthy replica.
func (s *SentinelSet) replicaKnown(ctx context.Context) error {
	replicas, err := s.client.Do(ctx, "SENTINEL", "REPLICAS", MasterName).Slice()
	if err != nil {
		return err
	}
	for _, r := range replicas {
		fields := sentinelFields(r)
		if fields["flags"] == "slave" && fields["master-link-status"] == "ok" {
			return nil
		}
	}
	return fmt.Errorf("sentinel knows no healthy replica of %s yet", MasterName)
}

// sentinelFields reads one SENTINEL REPLICAS entry, which is a flat
// name/value list under RESP2 and a map under RESP3.
func sentinelFields(v any) map[string]string {
	out := map[string]string{}
	switch v := v.(type) {
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			out[fmt.Sprint(v[i])] = fmt.Sprint(v[i+1])
		}
	case map[any]any:
		for k, val := range v {
			out[fmt.Sprint(k)] = fmt.Sprint(val)
		}
	}
	return out
}

// SentinelAddrs returns the sentinel addresses, as a failover client wants
// them.
func (s *SentinelSet) SentinelAddrs() []string { return []string{s.Sentinel.Addr} }

// MasterAddr asks the sentinel which node is the master now.
func (s *SentinelSet) MasterAddr(tb testing.TB) string {
	tb.Helper()
	addr, err := s.masterAddr(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return addr
}

func (s *SentinelSet) masterAddr(ctx context.Context) (string, error) {
	hp, err := s.client.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterName).StringSlice()
	if err != nil {
		return "", fmt.Errorf("redistest: sentinel get-master-addr-by-name: %w", err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("redistest: sentinel get-master-addr-by-name answered %q", hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// Failover makes the sentinel promote the replica (SENTINEL FAILOVER) and
// waits until the sentinel names the new master and that node says it is a
// master. It returns the new master's address.
func (s *SentinelSet) Failover(tb testing.TB) string {
	tb.Helper()
	ctx := context.Background()
	old, err := s.masterAddr(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var newAddr string
	requested := false
	err = waitFor(ctx, failoverTimeout, func(ctx context.Context) error {
		if !requested {
			// NOGOODSLAVE can happen for a moment after a resync; ask
			// again until the sentinel accepts.
			if err := s.client.Do(ctx, "SENTINEL", "FAILOVER", MasterName).Err(); err != nil {
				return fmt.Errorf("SENTINEL FAILOVER: %w", err)
			}
			requested = true
		}
		addr, err := s.masterAddr(ctx)
		if err != nil {
			return err
		}
		if addr == old {
			return fmt.Errorf("sentinel still names %s as master", old)
		}
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		role, err := c.Do(ctx, "ROLE").Slice()
		if err != nil {
			return fmt.Errorf("ROLE on %s: %w", addr, err)
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("%s answers ROLE %v", addr, role)
		}
		newAddr = addr
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: failover of %s: %v\n%s", MasterName, err, s.Sentinel.Log())
	}
	return newAddr
}
