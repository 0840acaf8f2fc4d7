package redisstore

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/session/storage"
)

// The local cache answers the request path's reads of session entries
// (GetCached) from this replica's memory, and Redis keeps it current:
// a connection of its own turns on CLIENT TRACKING in broadcast mode for
// the session entries' prefix and subscribes to the invalidations, so
// every write of an entry by any replica (update, touch, delete, expiry,
// FLUSHDB) evicts it here, normally within a millisecond.
//
// Invalidations arrive on another connection than the reads, so two rules
// keep a copy from outliving its entry:
//   - A read stores what it got only if no invalidation (and no reset)
//     arrived while it was on its way (the generation check in put). An
//     invalidation that Redis sent after serving the read therefore evicts
//     the copy later, and one sent before it stops the copy being stored.
//   - Copies are served only while the tracking connection is proven to
//     carry invalidations: it pings itself every cachePing, and Redis
//     answers a ping after every invalidation it queued before it. A copy
//     is served only while the newest answered ping was sent less than
//     cacheStale ago; a broken or stalled tracking connection turns the
//     cache off within that time, and a write older than cacheStale is
//     never hidden behind a copy.
//
// Reads that must see the latest entry (the refresh engine's, under the
// lock) never use the cache: they call Get.
const (
	// cacheEntries bounds the cache: about 2 KB each, 20 MB at most.
	cacheEntries = 10000
	// cachePing is how often the tracking connection pings itself.
	cachePing = 20 * time.Millisecond
	// cacheStale is how old the newest answered ping may be for copies to
	// be served.
	cacheStale = 80 * time.Millisecond
	// invalidateChannel is where Redis sends invalidations to a RESP2
	// connection that tracks with REDIRECT.
	invalidateChannel = "__redis__:invalidate"
)

// cachedEntry is one copy: the entry as read, and when its ttl runs out
// here.
type cachedEntry struct {
	version uint64
	data    []byte
	expires time.Time
}

// localCache holds the copies and what says whether they may be served.
type localCache struct {
	base time.Time // zero point of the ping times, monotonic

	mu      sync.Mutex
	entries map[string]cachedEntry // by full Redis key
	gen     uint64                 // bumped by every invalidation and reset
	live    bool                   // tracking on and subscribed since the last reset
	// answered is the send time (since base) of the newest ping answered.
	answered time.Duration
	// watches are the channels NotifyChange handed out, by full key.
	watches map[string]*watch

	hits, misses atomic.Uint64
}

func newLocalCache() *localCache {
	return &localCache{base: time.Now(), entries: make(map[string]cachedEntry), watches: make(map[string]*watch)}
}

// watch is one key's change signal: ch closes at its next invalidation;
// n counts the callers waiting on it.
type watch struct {
	ch chan struct{}
	n  int
}

// watch returns the channel that closes at key's next invalidation (or the
// next flush or reset), and the function that says the caller stopped
// waiting.
func (c *localCache) watch(key string) (<-chan struct{}, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.watches[key]
	if w == nil {
		w = &watch{ch: make(chan struct{})}
		c.watches[key] = w
	}
	w.n++
	return w.ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if w.n--; w.n == 0 && c.watches[key] == w {
			delete(c.watches, key)
		}
	}
}

// signal closes the watch of key; c.mu is held.
func (c *localCache) signal(key string) {
	if w := c.watches[key]; w != nil {
		close(w.ch)
		delete(c.watches, key)
	}
}

// signalAll closes every watch; c.mu is held.
func (c *localCache) signalAll() {
	for k, w := range c.watches {
		close(w.ch)
		delete(c.watches, k)
	}
}

// servable reports whether copies may be served now; c.mu is held.
func (c *localCache) servable(now time.Time) bool {
	return c.live && now.Sub(c.base)-c.answered < cacheStale
}

// lookup returns the copy of key, with the ttl it has left.
func (c *localCache) lookup(key string) (storage.Entry, bool) {
	now := time.Now()
	c.mu.Lock()
	ce, ok := c.entries[key]
	serve := ok && c.servable(now) && now.Before(ce.expires)
	c.mu.Unlock()
	if !serve {
		c.misses.Add(1)
		return storage.Entry{}, false
	}
	c.hits.Add(1)
	return storage.Entry{Data: ce.data, Version: ce.version, TTL: ce.expires.Sub(now)}, true
}

// begin is called before a read whose result put may store: it returns
// the generation put checks, and false when nothing can be stored.
func (c *localCache) begin() (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen, c.live
}

// put stores e under key if nothing was invalidated since begin returned
// gen. An entry without expiry is not stored (the store never writes
// one).
func (c *localCache) put(key string, gen uint64, e storage.Entry) {
	if e.TTL <= 0 {
		return
	}
	expires := time.Now().Add(e.TTL)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || c.gen != gen {
		return
	}
	if _, ok := c.entries[key]; !ok && len(c.entries) >= cacheEntries {
		for k := range c.entries { // any one: map order is random
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = cachedEntry{version: e.Version, data: e.Data, expires: expires}
}

// invalidate evicts keys and fails the puts of reads in flight.
func (c *localCache) invalidate(keys ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, k := range keys {
		delete(c.entries, k)
		c.signal(k)
	}
}

// flush drops every copy.
func (c *localCache) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
	c.signalAll()
}

// reset drops every copy and stops serving until tracking is back.
func (c *localCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.live = false
	clear(c.entries)
	c.signalAll()
}

// subscribed marks the tracking connection as carrying invalidations.
func (c *localCache) subscribed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.live = true
}

// answer records the answer to the ping sent at sent (since base).
func (c *localCache) answer(sent time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.answered = max(c.answered, sent)
}

// CacheStats counts the reads the local cache answered and those it
// passed to Redis.
type CacheStats struct {
	Hits, Misses uint64
}

// CacheStats reports the local cache's counts; zero when it is off.
func (s *Store) CacheStats() CacheStats {
	if s.cache == nil {
		return CacheStats{}
	}
	return CacheStats{Hits: s.cache.hits.Load(), Misses: s.cache.misses.Load()}
}

// GetCached implements storage.CachedReader: Get, answered from the
// local cache when it holds a servable copy of a session entry.
func (s *Store) GetCached(ctx context.Context, key string) (storage.Entry, error) {
	full := s.key(key)
	if s.cache == nil || !s.cached(full) {
		return s.Get(ctx, key)
	}
	if e, ok := s.cache.lookup(full); ok {
		return e, nil
	}
	gen, ok := s.cache.begin()
	e, err := s.Get(ctx, key)
	if err == nil && ok {
		s.cache.put(full, gen, e)
	}
	return e, err
}

// NotifyChange implements storage.ChangeNotifier with the invalidations
// the local cache receives: the channel closes when Redis reports a write
// of key by any replica, when this replica writes it, or when the cache
// loses track (a spurious wake-up). With the cache off the channel is nil
// and never closes.
func (s *Store) NotifyChange(key string) (<-chan struct{}, func()) {
	if s.cache == nil || !s.cached(s.key(key)) {
		return nil, func() {}
	}
	return s.cache.watch(s.key(key))
}

// cached reports whether full is a key the tracking covers (a session
// entry).
func (s *Store) cached(full string) bool {
	return len(full) > len(s.trackPrefix) && full[:len(s.trackPrefix)] == s.trackPrefix
}

// wrote evicts key after this replica wrote it, so that its own next read
// sees the write before Redis's invalidation arrives.
func (s *Store) wrote(key string) {
	if full := s.key(key); s.cache != nil && s.cached(full) {
		s.cache.invalidate(full)
	}
}

// startCache starts the tracking connection for client, a standalone or
// Sentinel client. It runs until stop is called.
func (s *Store) startCache(client *redis.Client) (stop func()) {
	o := *client.Options()
	// Invalidations come as Pub/Sub messages only to a RESP2 connection;
	// RESP3 would turn them into push frames that PubSub does not read.
	o.Protocol = 2
	o.PoolSize = 1
	o.MinIdleConns = 0
	o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		s.cache.reset()
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			return err
		}
		// Redirecting to itself: the same connection then subscribes and
		// reads the invalidations, so one connection carries the whole
		// mechanism and dies with it.
		return cn.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST", "PREFIX", s.trackPrefix).Err()
	}
	tc := redis.NewClient(&o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.track(ctx, tc)
	}()
	return func() {
		cancel()
		<-done
		_ = tc.Close()
		s.cache.reset()
	}
}

// track subscribes to the invalidations and applies them, pinging the
// connection so that the cache knows it still works (see localCache).
func (s *Store) track(ctx context.Context, tc *redis.Client) {
	c := s.cache
	ps := tc.Subscribe(ctx, invalidateChannel)
	defer ps.Close()
	pings := make(chan struct{})
	go func() {
		defer close(pings)
		t := time.NewTicker(cachePing)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = ps.Ping(ctx, strconv.FormatInt(int64(time.Since(c.base)), 10))
			}
		}
	}()
	defer func() { <-pings }()
	failures := 0
	for {
		msg, err := ps.ReceiveTimeout(ctx, 4*cacheStale)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// A timeout means late answers, not lost ones: the pings say
			// when copies may be served again. Anything else may have
			// lost invalidations: a broken connection (go-redis dials a
			// new one, which OnConnect sets up again) or a FLUSHDB, whose
			// invalidation carries no keys and does not parse. Either
			// way every copy goes.
			if isTimeout(err) {
				continue
			}
			c.flush()
			failures++
			if failures == 1 || failures%100 == 0 {
				s.log.LogAttrs(ctx, slog.LevelWarn, "redisstore: local cache emptied; invalidations interrupted", slog.Any("error", err), slog.Int("failures", failures))
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(time.Duration(failures-1)*50*time.Millisecond, time.Second)):
			}
			continue
		}
		failures = 0
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == invalidateChannel {
				c.subscribed()
			}
		case *redis.Message:
			if m.PayloadSlice != nil {
				c.invalidate(m.PayloadSlice...)
			} else {
				c.invalidate(m.Payload)
			}
		case *redis.Pong:
			if sent, err := strconv.ParseInt(m.Payload, 10, 64); err == nil {
				c.answer(time.Duration(sent))
			}
		}
	}
}

// isTimeout reports whether err is a read timeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
