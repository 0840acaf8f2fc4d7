package redisstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/redistest"
	"github.com/tokenrelay/tokenrelay/session/storage"
	"github.com/tokenrelay/tokenrelay/session/storetest"
)

// TestMain stops the package run's shared redis-server at the end.
func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

// newTestRedisClient builds a client with NewClient and closes it when
// the test ends.
func newTestRedisClient(t *testing.T, opts Options) redis.UniversalClient {
	t.Helper()
	c, err := NewClient(opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newSharedRedisStore returns a store on the package's shared redis-server
// with a key prefix of the test's own, and the client under it.
func newSharedRedisStore(t *testing.T) (*Store, redis.UniversalClient) {
	t.Helper()
	srv := redistest.Shared(t)
	c := newTestRedisClient(t, Options{URL: "redis://" + srv.Addr})
	s := New(c, Options{KeyPrefix: redistest.KeyPrefix(t)}, nil)
	t.Cleanup(func() { _ = s.Close() })
	return s, c
}

func TestRedisStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Backend {
		s, _ := newSharedRedisStore(t)
		return s
	})
}

func TestRedisCluster(t *testing.T) {
	cluster := redistest.StartCluster(t)
	client := newTestRedisClient(t, Options{Addresses: cluster.Addrs()})
	if _, ok := client.(*redis.ClusterClient); !ok {
		t.Fatalf("NewClient with %d addresses built %T, want *redis.ClusterClient", len(cluster.Addrs()), client)
	}

	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) storage.Backend {
			return New(client, Options{KeyPrefix: redistest.KeyPrefix(t)}, nil)
		})
	})

	t.Run("SessionAndLockShareSlot", func(t *testing.T) {
		ctx := context.Background()
		store := New(client, Options{}, nil)
		slots := map[int64]bool{}
		for range 20 {
			key := storetest.SessionKey(t)
			sessSlot, err := client.ClusterKeySlot(ctx, store.key(key)).Result()
			if err != nil {
				t.Fatalf("CLUSTER KEYSLOT: %v", err)
			}
			lockSlot, err := client.ClusterKeySlot(ctx, store.key(storetest.LockKey(key))).Result()
			if err != nil {
				t.Fatalf("CLUSTER KEYSLOT: %v", err)
			}
			if sessSlot != lockSlot {
				t.Errorf("CLUSTER KEYSLOT %s = %d, of its lock %s = %d; want equal",
					store.key(key), sessSlot, store.key(storetest.LockKey(key)), lockSlot)
			}
			slots[sessSlot] = true
		}
		// The prefix is outside the hash tag: sessions spread over slots
		// rather than all landing in the prefix's.
		if len(slots) < 10 {
			t.Errorf("20 sessions used %d slots, want them spread", len(slots))
		}
	})

	// Concurrent Gets are sent in shared pipelines; on a cluster the
	// client splits each pipeline by node. Every caller must still get its
	// own key's entry, whichever node holds it.
	t.Run("ConcurrentGetsAcrossNodes", func(t *testing.T) {
		ctx := context.Background()
		store := New(client, Options{KeyPrefix: redistest.KeyPrefix(t)}, nil)
		t.Cleanup(func() { store.Close() })
		const sessions, readers = 40, 400
		keys := make([]string, sessions)
		for i := range keys {
			keys[i] = storetest.SessionKey(t)
			if err := store.Create(ctx, keys[i], []byte(fmt.Sprintf("data-%d", i)), time.Minute); err != nil {
				t.Fatalf("Create: %v", err)
			}
			if i%2 == 0 {
				if _, err := store.Update(ctx, keys[i], 1, []byte(fmt.Sprintf("data-%d-v2", i)), time.Minute); err != nil {
					t.Fatalf("Update: %v", err)
				}
			}
		}
		missing := storetest.SessionKey(t)
		// Hold the first Get's pipeline until every other Get has queued
		// behind it, so the rest go out in shared, cross-node pipelines.
		gate := newPipelineGate(1)
		client.AddHook(gate)
		var wg sync.WaitGroup
		errs := make(chan error, readers)
		for r := range readers {
			if r == 1 {
				<-gate.entered[1]
			}
			if r == readers-1 {
				waitQueued(t, store.gets, readers-2)
				close(gate.release[1])
			}
			wg.Go(func() {
				if r%10 == 9 {
					if _, err := store.Get(ctx, missing); !errors.Is(err, storage.ErrNotFound) {
						errs <- fmt.Errorf("Get(missing) = %v, want storage.ErrNotFound", err)
					}
					return
				}
				i := r % sessions
				want, wantVersion := fmt.Sprintf("data-%d", i), uint64(1)
				if i%2 == 0 {
					want, wantVersion = want+"-v2", 2
				}
				e, err := store.Get(ctx, keys[i])
				switch {
				case err != nil:
					errs <- fmt.Errorf("Get(%d): %v", i, err)
				case string(e.Data) != want || e.Version != wantVersion || e.TTL <= 0 || e.TTL > time.Minute:
					errs <- fmt.Errorf("Get(%d) = %q v%d ttl %s, want %q v%d ttl in (0, 1m]", i, e.Data, e.Version, e.TTL, want, wantVersion)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		batched := 0
		for _, p := range gate.recorded(redistest.KeyPrefix(t)) {
			batched = max(batched, len(p))
		}
		if batched < 2 {
			t.Errorf("largest pipeline held %d Gets, want the queued Gets sent together", batched)
		}
	})
}

// TestRedisStoreLayout checks what the store writes: one prefixed string
// per session holding "<version>:<data>", with the ttl as PX.
func TestRedisStoreLayout(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Shared(t)
	raw := srv.Client(t)
	c := newTestRedisClient(t, Options{URL: "redis://" + srv.Addr})
	key := storetest.SessionKey(t)
	lock := storetest.LockKey(key)

	tests := []struct {
		name, prefix, wantPrefix string
	}{
		{"default prefix", "", "tokenrelay:"},
		{"own prefix", "app1:", "app1:"},
	}
	for _, tt := range tests {
		s := New(c, Options{KeyPrefix: tt.prefix}, nil)
		t.Cleanup(func() { raw.Del(ctx, tt.wantPrefix+key, tt.wantPrefix+lock) })
		if err := s.Create(ctx, key, []byte("sealed"), time.Hour); err != nil {
			t.Fatalf("%s: Create: %v", tt.name, err)
		}
		if _, err := s.Update(ctx, key, 1, []byte("resealed"), 2*time.Hour); err != nil {
			t.Fatalf("%s: Update: %v", tt.name, err)
		}
		if ok, err := s.TryLock(ctx, lock, "owner-1", time.Minute); !ok || err != nil {
			t.Fatalf("%s: TryLock = %v, %v", tt.name, ok, err)
		}

		rawKey := tt.wantPrefix + key
		if got, err := raw.Type(ctx, rawKey).Result(); err != nil || got != "string" {
			t.Errorf("%s: TYPE %s = %q, %v; want string", tt.name, rawKey, got, err)
		}
		if got, err := raw.Get(ctx, rawKey).Result(); err != nil || got != "2:resealed" {
			t.Errorf("%s: GET %s = %q, %v; want \"2:resealed\"", tt.name, rawKey, got, err)
		}
		if got, err := raw.PTTL(ctx, rawKey).Result(); err != nil || got <= time.Hour || got > 2*time.Hour {
			t.Errorf("%s: PTTL %s = %s, %v; want in (1h, 2h]", tt.name, rawKey, got, err)
		}
		if got, err := raw.Get(ctx, tt.wantPrefix+lock).Result(); err != nil || got != "owner-1" {
			t.Errorf("%s: GET lock = %q, %v; want \"owner-1\"", tt.name, got, err)
		}
	}
}

func TestNewRedisStoreWarnsOfBracesInPrefix(t *testing.T) {
	tests := []struct {
		prefix   string
		wantWarn bool
	}{
		{"", false},
		{"app:", false},
		{"app{1}:", true},
		{"app{", true},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		s := New(nil, Options{KeyPrefix: tt.prefix}, slog.New(slog.NewTextHandler(&buf, nil)))
		if got := strings.Contains(buf.String(), "level=WARN"); got != tt.wantWarn {
			t.Errorf("New(KeyPrefix %q) warned %v, want %v (log %q)", tt.prefix, got, tt.wantWarn, buf.String())
		}
		if want := cmp.Or(tt.prefix, (Options{}).WithDefaults().KeyPrefix) + "s:{x}"; s.key("s:{x}") != want {
			t.Errorf("key = %q, want %q", s.key("s:{x}"), want)
		}
	}
}

// TestRedisStoreScriptsReload checks the EVALSHA → EVAL fallback: after
// SCRIPT FLUSH (as after a restart or a failover to a fresh node) every
// scripted operation still works.
func TestRedisStoreScriptsReload(t *testing.T) {
	ctx := context.Background()
	s, c := newSharedRedisStore(t)
	key := storetest.SessionKey(t)
	if err := s.Create(ctx, key, []byte("v1"), time.Hour); err != nil {
		t.Fatalf("Create: %v", err)
	}
	ops := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := s.Get(ctx, key); return err }},
		{"Update", func() error { _, err := s.Update(ctx, key, 1, []byte("v2"), time.Hour); return err }},
		{"Unlock", func() error { return s.Unlock(ctx, storetest.LockKey(key), "o") }},
		{"AddToIndex", func() error { return s.AddToIndex(ctx, "ix:sid:test", key, time.Hour) }},
	}
	for _, op := range ops {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatalf("SCRIPT FLUSH: %v", err)
		}
		if err := op.call(); err != nil {
			t.Errorf("%s after SCRIPT FLUSH: %v", op.name, err)
		}
	}
	if e, err := s.Get(ctx, key); err != nil || string(e.Data) != "v2" || e.Version != 2 {
		t.Errorf("Get = %q v%d, %v; want \"v2\" v2", e.Data, e.Version, err)
	}
}

// TestRedisStoreForeignValue: a value this store did not write is an error,
// never a panic or a bogus entry.
func TestRedisStoreForeignValue(t *testing.T) {
	ctx := context.Background()
	s, c := newSharedRedisStore(t)
	tests := []struct {
		value      string
		wantUpdate error
	}{
		{"no separator", storage.ErrConflict},
		{":no version", storage.ErrConflict},
		{"x1:letters", storage.ErrConflict},
		{"99999999999999999999999:too big", storage.ErrConflict},
	}
	for _, tt := range tests {
		key := storetest.SessionKey(t)
		if err := c.Set(ctx, s.key(key), tt.value, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if e, err := s.Get(ctx, key); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Get of %q = %+v, %v; want an error", tt.value, e, err)
		}
		if _, err := s.Update(ctx, key, 1, []byte("x"), time.Hour); !errors.Is(err, tt.wantUpdate) {
			t.Errorf("Update of %q = %v, want %v", tt.value, err, tt.wantUpdate)
		}
	}
}

// TestRedisEntryMemoryUsage measures what one entry costs in Redis
// (MEMORY USAGE: key, value, object header and dict entry) around the size
// of a sealed record. What a realistic session costs, record and indexes,
// is measured by package session's TestRedisMemoryPerSession.
func TestRedisEntryMemoryUsage(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Shared(t)
	c := newTestRedisClient(t, Options{URL: "redis://" + srv.Addr})
	s := New(c, Options{}, nil) // the real key length

	// jemalloc rounds the value up to its size class (1792, then 2048
	// bytes); key, object header and dict entry add about 100 bytes.
	const overhead = 320
	tests := []struct {
		name     string
		blob     []byte
		maxUsage int64
	}{
		{"1.7 KiB sealed blob", storetest.Blob(t, 1741), 2048},
		{"1.75 KiB sealed blob", storetest.Blob(t, 1780), 2048},
		{"1.8 KiB sealed blob", storetest.Blob(t, 1843), 1843 + overhead},
	}
	for _, tt := range tests {
		key := storetest.SessionKey(t)
		t.Cleanup(func() { _ = s.Delete(ctx, key) })
		if err := s.Create(ctx, key, tt.blob, 24*time.Hour); err != nil {
			t.Fatalf("Create: %v", err)
		}
		if _, err := s.Update(ctx, key, 1, tt.blob, 24*time.Hour); err != nil {
			t.Fatalf("Update: %v", err)
		}
		got, err := c.MemoryUsage(ctx, s.key(key), 0).Result()
		if err != nil {
			t.Fatalf("MEMORY USAGE: %v", err)
		}
		t.Logf("MEMORY USAGE, %s of %d bytes (key %d bytes): %d bytes", tt.name, len(tt.blob), len(s.key(key)), got)
		if got > tt.maxUsage {
			t.Errorf("%s: MEMORY USAGE = %d bytes, want ≤ %d", tt.name, got, tt.maxUsage)
		}
	}
}

// TestRedisStoreDownAndBack stops redis-server under a store, checks that
// every operation fails fast with an error the manager maps to
// ErrStoreUnavailable, starts it again on the same port and checks the
// session written before is back.
func TestRedisStoreDownAndBack(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	c := newTestRedisClient(t, Options{URL: "redis://" + srv.Addr})
	s := New(c, Options{}, nil)
	key := storetest.SessionKey(t)
	data := storetest.Blob(t, 1843)
	if err := s.Create(ctx, key, data, time.Hour); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := s.Update(ctx, key, 1, data, time.Hour); err != nil {
		t.Fatalf("Update: %v", err)
	}

	srv.Stop(t)

	// Worst case for a refused connection: every attempt fails at once,
	// plus go-redis's retry backoff (at most 512ms per retry).
	const bound = 3 * time.Second
	other := storetest.SessionKey(t)
	ops := []struct {
		name string
		call func(context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, key); return err }},
		{"Create", func(ctx context.Context) error { return s.Create(ctx, other, data, time.Hour) }},
		{"Update", func(ctx context.Context) error { _, err := s.Update(ctx, key, 2, data, time.Hour); return err }},
		{"Touch", func(ctx context.Context) error { return s.Touch(ctx, key, time.Hour) }},
		{"Delete", func(ctx context.Context) error { return s.Delete(ctx, other) }},
		{"TryLock", func(ctx context.Context) error {
			_, err := s.TryLock(ctx, storetest.LockKey(key), "o", time.Second)
			return err
		}},
		{"Unlock", func(ctx context.Context) error { return s.Unlock(ctx, storetest.LockKey(key), "o") }},
		{"Claim", func(ctx context.Context) error { _, err := s.Claim(ctx, "us:test", time.Minute); return err }},
		{"Claimed", func(ctx context.Context) error { _, err := s.Claimed(ctx, "us:test"); return err }},
		{"AddToIndex", func(ctx context.Context) error { return s.AddToIndex(ctx, "ix:sid:test", key, time.Hour) }},
		{"IndexMembers", func(ctx context.Context) error { _, err := s.IndexMembers(ctx, "ix:sid:test"); return err }},
		{"RemoveFromIndex", func(ctx context.Context) error { return s.RemoveFromIndex(ctx, "ix:sid:test", key) }},
		{"Ping", func(ctx context.Context) error { return s.Ping(ctx) }},
	}
	var slowest time.Duration
	for _, op := range ops {
		start := time.Now()
		err := op.call(ctx)
		took := time.Since(start)
		slowest = max(slowest, took)
		if err == nil || errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrConflict) {
			t.Errorf("%s with Redis down = %v, want a store error", op.name, err)
		} else if !strings.HasPrefix(err.Error(), "redisstore: ") {
			t.Errorf("%s with Redis down = %q, want it prefixed \"redisstore: \"", op.name, err)
		}
		if took > bound {
			t.Errorf("%s with Redis down took %s, want ≤ %s", op.name, took, bound)
		}
	}
	t.Logf("with Redis down, the slowest of %d operations failed after %s", len(ops), slowest)

	srv.Restart(t)
	start := time.Now()
	var got storage.Entry
	redisWaitUntil(t, 15*time.Second, "session readable after restart", func() (err error) {
		got, err = s.Get(ctx, key)
		return err
	})
	t.Logf("after restart, the store answered again within %s", time.Since(start).Round(time.Millisecond))
	if string(got.Data) != string(data) || got.Version != 2 {
		t.Errorf("Get after restart = %d bytes v%d, want the %d bytes written before, v2", len(got.Data), got.Version, len(data))
	}
	if v, err := s.Update(ctx, key, 2, []byte("after"), time.Hour); err != nil || v != 3 {
		t.Errorf("Update after restart = %d, %v; want 3, nil", v, err)
	}
	if err := s.Create(ctx, other, data, time.Hour); err != nil {
		t.Errorf("Create after restart = %v", err)
	}
}

// redisWaitUntil polls f until it returns nil, failing the test with f's last
// error after timeout.
func redisWaitUntil(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		<-tick.C
	}
}

// TestRedisSentinelFailover writes sessions through a Sentinel client,
// fails the master over to the replica, stops the old master, and checks
// the sessions are read from the new master and writes work again.
func TestRedisSentinelFailover(t *testing.T) {
	ctx := context.Background()
	set := redistest.StartSentinel(t)
	client := newTestRedisClient(t, Options{
		Addresses:  set.SentinelAddrs(),
		MasterName: redistest.MasterName,
	})
	s := New(client, Options{}, nil)

	keys := make([]string, 20)
	for i := range keys {
		keys[i] = storetest.SessionKey(t)
		if err := s.Create(ctx, keys[i], fmt.Appendf(nil, "session %d", i), time.Hour); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	if _, err := s.Update(ctx, keys[0], 1, []byte("session 0 v2"), time.Hour); err != nil {
		t.Fatalf("Update: %v", err)
	}
	// WAIT makes sure the replica has every write before the failover.
	if n, err := client.Do(ctx, "WAIT", 1, 5000).Int64(); err != nil || n < 1 {
		t.Fatalf("WAIT 1 5000 = %d, %v; want ≥ 1 replica", n, err)
	}

	start := time.Now()
	if got, want := set.Failover(t), set.Replica.Addr; got != want {
		t.Fatalf("new master = %s, want the replica %s", got, want)
	}
	set.Master.Stop(t) // from now on only the new master can answer

	newKey := storetest.SessionKey(t)
	redisWaitUntil(t, 30*time.Second, "writes through the failover client", func() error {
		return s.Create(ctx, newKey, []byte("after failover"), time.Hour)
	})
	t.Logf("writes succeeded again %s after SENTINEL FAILOVER", time.Since(start).Round(time.Millisecond))

	for i, k := range keys {
		want, wantVersion := fmt.Sprintf("session %d", i), uint64(1)
		if i == 0 {
			want, wantVersion = "session 0 v2", 2
		}
		e, err := s.Get(ctx, k)
		if err != nil || string(e.Data) != want || e.Version != wantVersion {
			t.Errorf("Get session %d after failover = %q v%d, %v; want %q v%d", i, e.Data, e.Version, err, want, wantVersion)
		}
	}
	if v, err := s.Update(ctx, keys[0], 2, []byte("session 0 v3"), time.Hour); err != nil || v != 3 {
		t.Errorf("Update after failover = %d, %v; want 3, nil", v, err)
	}
	if ok, err := s.TryLock(ctx, storetest.LockKey(keys[1]), "o", time.Minute); !ok || err != nil {
		t.Errorf("TryLock after failover = %v, %v; want true", ok, err)
	}
}

func TestOptions(t *testing.T) {
	pki := newRedisTestPKI(t)
	tests := []struct {
		name         string
		opts         Options
		wantErr      string // substring; "" for success
		wantTopology string
		wantAddrs    []string
		wantDB       int
		wantUser     string
		wantPassword string
		wantTLS      bool
	}{
		{name: "url", opts: Options{URL: "redis://redis.internal:6380/2"},
			wantTopology: "standalone", wantAddrs: []string{"redis.internal:6380"}, wantDB: 2},
		{name: "url default port", opts: Options{URL: "redis://redis.internal"},
			wantTopology: "standalone", wantAddrs: []string{"redis.internal:6379"}},
		{name: "url credentials", opts: Options{URL: "redis://app:s3cret@redis:6379"},
			wantTopology: "standalone", wantAddrs: []string{"redis:6379"}, wantUser: "app", wantPassword: "s3cret"},
		{name: "acl fields", opts: Options{URL: "redis://redis:6379", Username: "app", Password: "pw", DB: 3},
			wantTopology: "standalone", wantAddrs: []string{"redis:6379"}, wantUser: "app", wantPassword: "pw", wantDB: 3},
		{name: "rediss", opts: Options{URL: "rediss://redis:6379", CAFile: pki.ca},
			wantTopology: "standalone", wantAddrs: []string{"redis:6379"}, wantTLS: true},
		{name: "one address", opts: Options{Addresses: []string{"redis:6379"}, DB: 1},
			wantTopology: "standalone", wantAddrs: []string{"redis:6379"}, wantDB: 1},
		{name: "sentinel", opts: Options{Addresses: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster", SentinelPassword: "sp", DB: 1},
			wantTopology: "sentinel", wantAddrs: []string{"s1:26379", "s2:26379"}, wantDB: 1},
		{name: "cluster by count", opts: Options{Addresses: []string{"n1:6379", "n2:6379"}},
			wantTopology: "cluster", wantAddrs: []string{"n1:6379", "n2:6379"}},
		{name: "cluster by flag", opts: Options{Addresses: []string{"cfg:6379"}, Cluster: true, TLS: true, CertFile: pki.clientCert, KeyFile: pki.clientKey, ServerName: "redis.example"},
			wantTopology: "cluster", wantAddrs: []string{"cfg:6379"}, wantTLS: true},

		{name: "nothing", opts: Options{}, wantErr: "url: required with store redis (or session.redis.addresses)"},
		{name: "url and addresses", opts: Options{URL: "redis://a:1", Addresses: []string{"b:2"}}, wantErr: "set url or addresses, not both"},
		{name: "sentinel and cluster", opts: Options{Addresses: []string{"a:1"}, MasterName: "m", Cluster: true}, wantErr: "cluster: cannot be combined with master_name"},
		{name: "url and master name", opts: Options{URL: "redis://a:1", MasterName: "m"}, wantErr: "master_name: requires session.redis.addresses (the sentinels)"},
		{name: "url and cluster", opts: Options{URL: "redis://a:1", Cluster: true}, wantErr: "cluster: needs session.redis.addresses (the cluster nodes), not url"},
		{name: "sentinel password alone", opts: Options{URL: "redis://a:1", SentinelPassword: "x"}, wantErr: "sentinel_password: only used with master_name"},
		{name: "bad address", opts: Options{Addresses: []string{"no-port"}}, wantErr: "addresses[0]: must be host:port"},
		{name: "cluster db", opts: Options{Addresses: []string{"a:1", "b:2"}, DB: 2}, wantErr: "db: must be 0 with a cluster"},
		{name: "negative db", opts: Options{URL: "redis://a:1", DB: -1}, wantErr: "db: must not be negative"},
		{name: "negative timeout", opts: Options{URL: "redis://a:1", ReadTimeout: -time.Second}, wantErr: "read_timeout: must be a positive duration"},
		{name: "negative pool", opts: Options{URL: "redis://a:1", PoolSize: -1}, wantErr: "pool_size: must not be negative"},
		{name: "cert without key", opts: Options{URL: "rediss://a:1", CertFile: pki.clientCert}, wantErr: "cert_file: cert_file and key_file go together"},
		{name: "tls file without tls", opts: Options{Addresses: []string{"a:1"}, CAFile: pki.ca}, wantErr: "ca_file: is set but TLS is off"},
		{name: "tls with redis url", opts: Options{URL: "redis://a:1", TLS: true}, wantErr: "tls: is set but url is redis://; use rediss://"},
		{name: "scheme", opts: Options{URL: "http://a:1"}, wantErr: "url: must be a redis:// or rediss:// URL"},
		{name: "query", opts: Options{URL: "redis://a:1?dial_timeout=3"}, wantErr: "url: must not have query parameters"},
		{name: "no host", opts: Options{URL: "redis:///0"}, wantErr: "url: must be a redis:// or rediss:// URL"},
		{name: "bad db path", opts: Options{URL: "redis://a:1/x"}, wantErr: "invalid database number"},
		{name: "db twice", opts: Options{URL: "redis://a:1/2", DB: 3}, wantErr: "db: is 3 but url selects db 2"},
		{name: "credentials twice", opts: Options{URL: "redis://u:p@a:1", Password: "q"}, wantErr: "url: carries credentials, and so do username or password"},
		{name: "missing ca file", opts: Options{URL: "rediss://a:1", CAFile: filepath.Join(t.TempDir(), "none.pem")}, wantErr: "ca_file"},
		{name: "ca file without pem", opts: Options{URL: "rediss://a:1", CAFile: pki.clientKey + ".txt"}, wantErr: "holds no PEM certificate"},
		{name: "several problems", opts: Options{Addresses: []string{"a:1", "b:2"}, DB: 1, PoolSize: -2}, wantErr: "db: must be 0 with a cluster\npool_size: must not be negative"},
	}
	if err := os.WriteFile(pki.clientKey+".txt", []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uo, err := tt.opts.clientOptions()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("clientOptions() error = %v, want one containing %q", err, tt.wantErr)
				}
				if _, err := NewClient(tt.opts); err == nil || !strings.HasPrefix(err.Error(), "redisstore: client: ") {
					t.Errorf("NewClient error = %v, want it prefixed \"redisstore: client: \"", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("clientOptions() = %v", err)
			}
			if got := redisTopology(uo); got != tt.wantTopology {
				t.Errorf("topology = %s, want %s", got, tt.wantTopology)
			}
			if fmt.Sprint(uo.Addrs) != fmt.Sprint(tt.wantAddrs) {
				t.Errorf("Addrs = %q, want %q", uo.Addrs, tt.wantAddrs)
			}
			if uo.DB != tt.wantDB || uo.Username != tt.wantUser || uo.Password != tt.wantPassword {
				t.Errorf("DB, Username, Password = %d, %q, %q; want %d, %q, %q", uo.DB, uo.Username, uo.Password, tt.wantDB, tt.wantUser, tt.wantPassword)
			}
			if got := uo.TLSConfig != nil; got != tt.wantTLS {
				t.Errorf("TLS = %v, want %v", got, tt.wantTLS)
			}
			if def := (Options{}).WithDefaults(); uo.DialTimeout != def.DialTimeout || uo.ReadTimeout != def.ReadTimeout || uo.WriteTimeout != def.WriteTimeout {
				t.Errorf("timeouts = %s, %s, %s; want the defaults", uo.DialTimeout, uo.ReadTimeout, uo.WriteTimeout)
			}
			if !uo.ContextTimeoutEnabled || uo.DialerRetries != 1 || uo.MaxRetries != maxRetries {
				t.Errorf("ContextTimeoutEnabled, DialerRetries, MaxRetries = %v, %d, %d; want true, 1, %d", uo.ContextTimeoutEnabled, uo.DialerRetries, uo.MaxRetries, maxRetries)
			}
			if tt.opts.SentinelPassword != "" && uo.SentinelPassword != tt.opts.SentinelPassword.Reveal() {
				t.Errorf("SentinelPassword not passed on")
			}

			c, err := NewClient(tt.opts)
			if err != nil {
				t.Fatalf("NewClient: %v", err)
			}
			defer c.Close()
			var wantType string
			switch tt.wantTopology {
			case "cluster":
				wantType = "*redis.ClusterClient"
			default: // a failover client is a *redis.Client too
				wantType = "*redis.Client"
			}
			if got := fmt.Sprintf("%T", c); got != wantType {
				t.Errorf("client type = %s, want %s", got, wantType)
			}
		})
	}

	t.Run("timeouts and TLS files", func(t *testing.T) {
		uo, err := Options{
			URL: "rediss://redis:6379", CAFile: pki.ca, CertFile: pki.clientCert, KeyFile: pki.clientKey, ServerName: "redis.example",
			DialTimeout: 3 * time.Second, ReadTimeout: 4 * time.Second, WriteTimeout: 5 * time.Second, PoolSize: 7,
		}.clientOptions()
		if err != nil {
			t.Fatal(err)
		}
		if uo.DialTimeout != 3*time.Second || uo.ReadTimeout != 4*time.Second || uo.WriteTimeout != 5*time.Second || uo.PoolSize != 7 {
			t.Errorf("timeouts, pool = %s, %s, %s, %d; want 3s, 4s, 5s, 7", uo.DialTimeout, uo.ReadTimeout, uo.WriteTimeout, uo.PoolSize)
		}
		cfg := uo.TLSConfig
		if cfg.ServerName != "redis.example" || cfg.RootCAs == nil || len(cfg.Certificates) != 1 {
			t.Errorf("TLS config: ServerName %q, RootCAs set %v, %d certificates; want redis.example, true, 1", cfg.ServerName, cfg.RootCAs != nil, len(cfg.Certificates))
		}
	})

	t.Run("password stays out of errors", func(t *testing.T) {
		_, err := NewClient(Options{URL: "redis://u:hunter2@a:1/x"})
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error = %v, want one without the password", err)
		}
		_, err = NewClient(Options{URL: "redis://u:hunter2@a b:1"})
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error = %v, want one without the password", err)
		}
	})
}

// TestRedisClientTLS runs a store over TLS with a client certificate
// against a redis-server that demands one.
func TestRedisClientTLS(t *testing.T) {
	pki := newRedisTestPKI(t)
	tlsPort := redistest.FreePort(t)
	srv := redistest.Start(t, redistest.Options{Args: []string{
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", pki.serverCert,
		"--tls-key-file", pki.serverKey,
		"--tls-ca-cert-file", pki.ca,
		"--tls-auth-clients", "yes",
	}})
	url := "rediss://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	_ = srv

	tests := []struct {
		name   string
		opts   Options
		wantOK bool
	}{
		{"CA and client certificate", Options{URL: url, CAFile: pki.ca, CertFile: pki.clientCert, KeyFile: pki.clientKey}, true},
		{"no client certificate", Options{URL: url, CAFile: pki.ca}, false},
		{"untrusted server", Options{URL: url, CertFile: pki.clientCert, KeyFile: pki.clientKey}, false},
		{"wrong server name", Options{URL: url, CAFile: pki.ca, CertFile: pki.clientCert, KeyFile: pki.clientKey, ServerName: "other.example"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := New(newTestRedisClient(t, tt.opts), Options{KeyPrefix: redistest.KeyPrefix(t)}, nil)
			err := s.Ping(ctx)
			if (err == nil) != tt.wantOK {
				t.Fatalf("Ping over TLS = %v, want success %v", err, tt.wantOK)
			}
			if !tt.wantOK {
				return
			}
			key := storetest.SessionKey(t)
			if err := s.Create(ctx, key, []byte("over tls"), time.Minute); err != nil {
				t.Fatalf("Create: %v", err)
			}
			if e, err := s.Get(ctx, key); err != nil || string(e.Data) != "over tls" {
				t.Errorf("Get = %q, %v; want \"over tls\"", e.Data, err)
			}
		})
	}
}

// redisTestPKI is a CA and the certificates it signed, as PEM files.
type redisTestPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newRedisTestPKI(t *testing.T) redisTestPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tokenrelay test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := redisTestPKI{ca: filepath.Join(dir, "ca.pem")}
	writeRedisTestPEM(t, p.ca, "CERTIFICATE", caDER)

	issue := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (certFile, keyFile string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
			DNSNames:     []string{name},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		writeRedisTestPEM(t, certFile, "CERTIFICATE", der)
		writeRedisTestPEM(t, keyFile, "PRIVATE KEY", keyDER)
		return certFile, keyFile
	}
	p.serverCert, p.serverKey = issue("redis.test", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.clientCert, p.clientKey = issue("tokenrelay", 3, x509.ExtKeyUsageClientAuth, nil)
	return p
}

func writeRedisTestPEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// redisTopology names what NewClient builds for opts, for logs and
// tests: "standalone", "sentinel" or "cluster".
func redisTopology(uo *redis.UniversalOptions) string {
	switch {
	case uo.MasterName != "":
		return "sentinel"
	case uo.IsClusterMode || len(uo.Addrs) > 1:
		return "cluster"
	default:
		return "standalone"
	}
}
