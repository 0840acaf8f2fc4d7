package redisstore

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/redistest"
	"github.com/tokenrelay/tokenrelay/session/storage"
)

// visibleWithin is how soon a write on one replica must stop another from
// serving the entry it replaced (issue 13: a logout on replica A stops
// replica B within 100 ms).
const visibleWithin = 100 * time.Millisecond

// getCounter counts the GETs a client sends, pipelined or not.
type getCounter struct{ n atomic.Int64 }

func (g *getCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (g *getCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "get" {
			g.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (g *getCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if c.Name() == "get" {
				g.n.Add(1)
			}
		}
		return next(ctx, cmds)
	}
}

// replica is one tokenrelay replica's store: its own client and local
// cache, on a Redis other replicas share.
type replica struct {
	*Store
	gets *getCounter
}

func newReplica(t *testing.T, addr, prefix string) replica {
	t.Helper()
	c := newTestRedisClient(t, Options{URL: "redis://" + addr})
	g := &getCounter{}
	c.AddHook(g)
	s := New(c, Options{KeyPrefix: prefix}, nil)
	t.Cleanup(func() { _ = s.Close() })
	if s.cache == nil {
		t.Fatal("local cache is off on a standalone client")
	}
	return replica{s, g}
}

// cachedNow waits until r serves key from its cache without asking Redis:
// the tracking connection is up and a copy is stored.
func (r replica) cachedNow(t *testing.T, key string) storage.Entry {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for {
		before := r.gets.n.Load()
		e, err := r.GetCached(ctx, key)
		if err != nil {
			t.Fatalf("GetCached(%s): %v", key, err)
		}
		if r.gets.n.Load() == before {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetCached(%s) still reads Redis after 5 s; stats %+v", key, r.CacheStats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// seenWithin reads key on r until ok accepts what it gets, and fails the
// test when that takes longer than limit (since the write, at from).
func (r replica) seenWithin(t *testing.T, key string, from time.Time, limit time.Duration, what string, ok func(storage.Entry, error) bool) {
	t.Helper()
	for {
		// A read that began past the limit and still sees the old entry
		// breaks the bound; one that began before it may (the test's own
		// goroutine can be descheduled between reading and checking).
		began := time.Now()
		e, err := r.GetCached(context.Background(), key)
		if ok(e, err) {
			return
		}
		if began.Sub(from) > limit {
			t.Fatalf("%s: replica still reads version %d (err %v) in a read begun %v after the write", what, e.Version, err, began.Sub(from).Round(time.Millisecond))
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLocalCacheAcrossReplicas(t *testing.T) {
	srv := redistest.Shared(t)
	prefix := redistest.KeyPrefix(t)
	a, b := newReplica(t, srv.Addr, prefix), newReplica(t, srv.Addr, prefix)
	ctx := context.Background()
	const key = "s:{k}"
	if err := b.Create(ctx, key, []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if e := a.cachedNow(t, key); e.Version != 1 || string(e.Data) != "v1" {
		t.Fatalf("cached entry %d %q, want 1 v1", e.Version, e.Data)
	}

	t.Run("UpdateElsewhere", func(t *testing.T) {
		if _, err := b.Update(ctx, key, 1, []byte("v2"), time.Minute); err != nil {
			t.Fatal(err)
		}
		a.seenWithin(t, key, time.Now(), visibleWithin, "update on b", func(e storage.Entry, err error) bool {
			return err == nil && e.Version == 2 && string(e.Data) == "v2"
		})
	})

	t.Run("TouchElsewhere", func(t *testing.T) {
		a.cachedNow(t, key)
		if err := b.Touch(ctx, key, time.Hour); err != nil {
			t.Fatal(err)
		}
		a.seenWithin(t, key, time.Now(), visibleWithin, "touch on b", func(e storage.Entry, err error) bool {
			return err == nil && e.TTL > time.Minute
		})
	})

	t.Run("LogoutElsewhere", func(t *testing.T) {
		a.cachedNow(t, key)
		if err := b.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		a.seenWithin(t, key, time.Now(), visibleWithin, "delete on b", func(_ storage.Entry, err error) bool {
			return errors.Is(err, storage.ErrNotFound)
		})
	})

	t.Run("ExpiryHere", func(t *testing.T) {
		const short = "s:{short}"
		if err := b.Create(ctx, short, []byte("x"), 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		a.cachedNow(t, short)
		a.seenWithin(t, short, time.Now(), 400*time.Millisecond+visibleWithin, "expiry", func(_ storage.Entry, err error) bool {
			return errors.Is(err, storage.ErrNotFound)
		})
	})

	if s := a.CacheStats(); s.Hits == 0 || s.Misses == 0 {
		t.Fatalf("stats %+v: want hits and misses", s)
	}
}

// A replica reads its own writes at once, before Redis's invalidation
// comes back.
func TestLocalCacheReadsOwnWrites(t *testing.T) {
	srv := redistest.Shared(t)
	a := newReplica(t, srv.Addr, redistest.KeyPrefix(t))
	ctx := context.Background()
	const key = "s:{own}"
	if err := a.Create(ctx, key, []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for v := uint64(1); v <= 50; v++ {
		a.cachedNow(t, key)
		if _, err := a.Update(ctx, key, v, []byte("x"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if e, err := a.GetCached(ctx, key); err != nil || e.Version != v+1 {
			t.Fatalf("after update %d: version %d, %v", v, e.Version, err)
		}
	}
	if err := a.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetCached(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("after delete: %v, want ErrNotFound", err)
	}
}

// Only session entries are cached; locks, claims and indexes are read
// from Redis every time (and GetCached of another key is Get).
func TestLocalCacheHoldsSessionEntriesOnly(t *testing.T) {
	srv := redistest.Shared(t)
	a := newReplica(t, srv.Addr, redistest.KeyPrefix(t))
	ctx := context.Background()
	if err := a.Create(ctx, "k:shared", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := a.Create(ctx, "s:{warm}", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	a.cachedNow(t, "s:{warm}") // tracking is up
	for range 3 {
		before := a.gets.n.Load()
		if _, err := a.GetCached(ctx, "k:shared"); err != nil {
			t.Fatal(err)
		}
		if a.gets.n.Load() == before {
			t.Fatal("a key outside s: was served from the cache")
		}
	}
}

// When the tracking connection breaks, nothing written meanwhile is hidden
// behind a copy for longer than visibleWithin, and the cache comes back
// once a new connection tracks again.
func TestLocalCacheTrackingLost(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	prefix := redistest.KeyPrefix(t)
	a, b := newReplica(t, srv.Addr, prefix), newReplica(t, srv.Addr, prefix)
	admin := srv.Client(t)
	ctx := context.Background()
	const key = "s:{lost}"
	if err := b.Create(ctx, key, []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for round := uint64(1); round <= 3; round++ {
		a.cachedNow(t, key)
		// Kill every tracking connection (the replicas' own, and only
		// they subscribe on this server), then write at once.
		if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Update(ctx, key, round, []byte("next"), time.Minute); err != nil {
			t.Fatal(err)
		}
		a.seenWithin(t, key, time.Now(), visibleWithin, "update while tracking was down", func(e storage.Entry, err error) bool {
			return err == nil && e.Version == round+1
		})
	}
	a.cachedNow(t, key) // serves from memory again
}

// FLUSHDB sends an invalidation without keys: every copy goes.
func TestLocalCacheFlushDB(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a := newReplica(t, srv.Addr, redistest.KeyPrefix(t))
	ctx := context.Background()
	const key = "s:{flush}"
	if err := a.Create(ctx, key, []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	a.cachedNow(t, key)
	if err := srv.Client(t).FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	a.seenWithin(t, key, time.Now(), visibleWithin, "flushdb", func(_ storage.Entry, err error) bool {
		return errors.Is(err, storage.ErrNotFound)
	})
	if err := a.Create(ctx, key, []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	a.cachedNow(t, key) // and the cache works on
}

// Many readers on two replicas while a third writes: under the race
// detector, and every reader ends on the last version.
func TestLocalCacheConcurrentReadersAndWriter(t *testing.T) {
	srv := redistest.Shared(t)
	prefix := redistest.KeyPrefix(t)
	a, b, w := newReplica(t, srv.Addr, prefix), newReplica(t, srv.Addr, prefix), newReplica(t, srv.Addr, prefix)
	ctx := context.Background()
	const key, writes = "s:{busy}", 200
	if err := w.Create(ctx, key, []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	a.cachedNow(t, key)
	b.cachedNow(t, key)
	var done atomic.Bool
	var wg sync.WaitGroup
	for i := range 16 {
		r := a
		if i%2 == 1 {
			r = b
		}
		wg.Go(func() {
			for !done.Load() {
				if _, err := r.GetCached(ctx, key); err != nil {
					t.Errorf("GetCached: %v", err)
					return
				}
			}
		})
	}
	for v := uint64(1); v <= writes; v++ {
		if _, err := w.Update(ctx, key, v, []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	last := time.Now()
	done.Store(true)
	wg.Wait()
	for _, r := range []replica{a, b} {
		r.seenWithin(t, key, last, visibleWithin, "last of many writes", func(e storage.Entry, err error) bool {
			return err == nil && e.Version == writes+1
		})
	}
}

func TestLocalCacheOff(t *testing.T) {
	srv := redistest.Shared(t)
	off := false
	c := newTestRedisClient(t, Options{URL: "redis://" + srv.Addr})
	if s := New(c, Options{KeyPrefix: redistest.KeyPrefix(t), LocalCache: &off}, nil); s.cache != nil {
		t.Fatal("local_cache: false left the cache on")
	}
	cluster := Options{Addresses: []string{"127.0.0.1:1", "127.0.0.1:2"}}
	if cluster.localCache() {
		t.Fatal("the cache is on for a cluster")
	}
}

// freezer relays TCP connections to addr and can stop relaying on all of
// them at once, as a network that silently drops a replica's traffic
// does.
type freezer struct {
	ln     net.Listener
	frozen atomic.Bool
}

func newFreezer(t *testing.T, addr string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", addr)
			if err != nil {
				_ = c.Close()
				continue
			}
			go f.pipe(c, u)
			go f.pipe(u, c)
		}
	}()
	return f
}

// pipe copies from src to dst, holding each chunk while frozen.
func (f *freezer) pipe(src, dst net.Conn) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for n > 0 && f.frozen.Load() {
			time.Sleep(time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// When replica a's link to Redis goes silent, it stops serving copies
// (its reads fail instead) within visibleWithin, so a logout on b is not
// hidden behind a's copy.
func TestLocalCacheSilentLink(t *testing.T) {
	srv := redistest.Shared(t)
	prefix := redistest.KeyPrefix(t)
	link := newFreezer(t, srv.Addr)
	c := newTestRedisClient(t, Options{URL: "redis://" + link.ln.Addr().String()})
	g := &getCounter{}
	c.AddHook(g)
	a := replica{New(c, Options{KeyPrefix: prefix, OpTimeout: 50 * time.Millisecond}, nil), g}
	t.Cleanup(func() { link.frozen.Store(false); _ = a.Close() })
	b := newReplica(t, srv.Addr, prefix)
	ctx := context.Background()
	const key = "s:{silent}"
	if err := b.Create(ctx, key, []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	a.cachedNow(t, key)
	link.frozen.Store(true)
	if err := b.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	a.seenWithin(t, key, time.Now(), visibleWithin, "delete on b while a's link is silent", func(_ storage.Entry, err error) bool {
		return err != nil
	})
	link.frozen.Store(false)
	a.seenWithin(t, key, time.Now(), 5*time.Second, "delete on b after a's link is back", func(_ storage.Entry, err error) bool {
		return errors.Is(err, storage.ErrNotFound)
	})
}

// NotifyChange signals a write of the entry by another replica, and by
// this one, and forgets the watch once nobody waits.
func TestNotifyChange(t *testing.T) {
	srv := redistest.Shared(t)
	prefix := redistest.KeyPrefix(t)
	a, b := newReplica(t, srv.Addr, prefix), newReplica(t, srv.Addr, prefix)
	ctx := context.Background()
	const key = "s:{watched}"
	if err := b.Create(ctx, key, []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	a.cachedNow(t, key) // tracking is up
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no signal", what)
		}
	}

	ch, stop := a.NotifyChange(key)
	ch2, stop2 := a.NotifyChange(key)
	if _, err := b.Update(ctx, key, 1, []byte("v2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	wait("update on another replica", ch)
	wait("update on another replica, second waiter", ch2)
	stop()
	stop2()

	ch, stop = a.NotifyChange(key)
	if _, err := a.Update(ctx, key, 2, []byte("v3"), time.Minute); err != nil {
		t.Fatal(err)
	}
	wait("update on this replica", ch)
	stop()

	ch, stop = a.NotifyChange(key)
	stop()
	a.cache.mu.Lock()
	n := len(a.cache.watches)
	a.cache.mu.Unlock()
	if n != 0 {
		t.Errorf("%d watches kept after every waiter stopped, want 0", n)
	}
	select {
	case <-ch:
		t.Error("a watch nobody waits for was signalled")
	default:
	}

	if ch, _ := a.NotifyChange("l:{watched}"); ch != nil {
		t.Error("NotifyChange of a lock key gave a channel; only session entries are tracked")
	}
}

// A user that may not track or subscribe gets a store that works as
// without the cache: every read goes to Redis, none is served stale.
func TestLocalCacheRefusedByACL(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	admin := srv.Client(t)
	if err := admin.Do(ctx, "ACL", "SETUSER", "limited", "on", ">pw", "~*", "&*", "+@all", "-client", "-subscribe").Err(); err != nil {
		t.Fatal(err)
	}
	c := newTestRedisClient(t, Options{URL: "redis://limited:pw@" + srv.Addr})
	s := New(c, Options{KeyPrefix: redistest.KeyPrefix(t)}, nil)
	t.Cleanup(func() { _ = s.Close() })
	const key = "s:{acl}"
	if err := s.Create(ctx, key, []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	for v := uint64(1); v <= 20; v++ {
		e, err := s.GetCached(ctx, key)
		if err != nil || e.Version != v {
			t.Fatalf("GetCached = version %d, %v; want %d", e.Version, err, v)
		}
		// A write the cache could only learn of from Redis.
		if err := admin.Set(ctx, s.key(key), pack(v+1, []byte("x")), time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := s.CacheStats(); st.Hits != 0 {
		t.Fatalf("stats %+v: the cache answered although Redis refuses its tracking", st)
	}
}
