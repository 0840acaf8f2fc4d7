package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/session/storage"
)

var (
	_ storage.Backend        = (*Store)(nil)
	_ storage.LockReader     = (*Store)(nil)
	_ storage.CachedReader   = (*Store)(nil)
	_ storage.ChangeNotifier = (*Store)(nil)
)

// Store is a storage.Backend on Redis (standalone, Sentinel or Cluster: any
// go-redis UniversalClient). It is what lets several replicas share
// sessions.
//
// A session entry is one string key holding "<version>:<sealed record>"
// (a hash would need two fields, and with a value above
// hash-max-listpack-value, 64 bytes by default, Redis stores it as a real
// hash table, several times larger). A read is GET and PTTL pipelined: one
// round trip, no Lua (see Get). Compare-and-set writes are Lua scripts
// run with EVALSHA (EVAL when the server lacks the script), so each is one
// atomic round trip. Every script touches exactly one key, declared in
// KEYS, so it runs in one Cluster slot.
//
// Store is safe for concurrent use. It does not own the client: the
// caller closes it, after Close if it calls Close at all (an unclosed store
// leaks nothing: its batching goroutine runs only while Gets wait).
type Store struct {
	client    redis.UniversalClient
	prefix    string
	log       *slog.Logger
	opTimeout time.Duration

	updateScript, unlockScript, indexScript *redis.Script

	gets *getBatcher

	// cache is the local cache of session entries (see cache.go), nil
	// when off; trackPrefix is the prefix of the keys it holds.
	cache       *localCache
	trackPrefix string
	stopCache   func()
	closeOnce   sync.Once
}

// updateLua is the compare-and-set: it writes ARGV[2] with PX ARGV[3] only
// when the stored version (the digits before the first ':') equals ARGV[1].
// GETRANGE reads just the head of the value, not the whole record.
// Returns 1 written, -1 version differs, 0 absent.
const updateLua = `
local head = redis.call('GETRANGE', KEYS[1], 0, 20)
if head == '' then return 0 end
local sep = string.find(head, ':', 1, true)
if not sep or string.sub(head, 1, sep - 1) ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`

// unlockLua deletes the lock only when ARGV[1] still owns it.
const unlockLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`

// indexLua adds a member and extends the set's life to at least ARGV[2]
// milliseconds, never shortening it. A set this script just created has no
// expiry yet (PTTL -1), which is less than any ttl, so it gets one.
const indexLua = `
redis.call('SADD', KEYS[1], ARGV[1])
local want = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < want then
	redis.call('PEXPIRE', KEYS[1], want)
end
return 1
`

// New returns a store on client (build it with NewClient), with o's key
// prefix and operation timeout. logger receives warnings about entries the
// store cannot read; nil discards them.
func New(client redis.UniversalClient, o Options, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o = o.WithDefaults()
	if strings.ContainsAny(o.KeyPrefix, "{}") {
		logger.Warn("redisstore: key prefix contains a brace; in a Cluster a session and its lock may land in different slots", "key_prefix", o.KeyPrefix)
	}
	s := &Store{
		client:       client,
		prefix:       o.KeyPrefix,
		log:          logger,
		opTimeout:    o.OpTimeout,
		updateScript: redis.NewScript(updateLua),
		unlockScript: redis.NewScript(unlockLua),
		indexScript:  redis.NewScript(indexLua),
		gets:         newGetBatcher(client, defaultMaxGetBatch, o.OpTimeout),
		trackPrefix:  o.KeyPrefix + sessionEntryPrefix,
	}
	// A Cluster would need a tracking connection per master; the cache
	// serves one server (standalone, or Sentinel's current master).
	if c, ok := client.(*redis.Client); ok && o.localCache() {
		s.cache = newLocalCache()
		s.stopCache = s.startCache(c)
	}
	return s
}

// sessionEntryPrefix starts the keys of session entries (package
// session's sessionKey), the only ones the local cache holds.
const sessionEntryPrefix = "s:"

func (s *Store) key(k string) string { return s.prefix + k }

// bound gives one operation its deadline: OpTimeout from now, or the
// caller's, whichever comes first. go-redis stops its retries at it
// (ContextTimeoutEnabled), and a Get queued behind a pipeline leaves at it.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

// errBadRedisTTL: Redis refuses PX 0 and negative expiries; say so before
// asking it.
var errBadRedisTTL = errors.New("ttl must be positive")

// pxMillis turns ttl into whole milliseconds for PX/PEXPIRE, rounding up
// so a sub-millisecond ttl does not become "no expiry" or an error.
func pxMillis(ttl time.Duration) int64 {
	return int64((ttl + time.Millisecond - 1) / time.Millisecond)
}

// pack builds the stored value "<version>:<data>".
func pack(version uint64, data []byte) []byte {
	b := make([]byte, 0, 21+len(data))
	b = strconv.AppendUint(b, version, 10)
	b = append(b, ':')
	return append(b, data...)
}

// unpack splits a stored value into version and data.
func unpack(v string) (uint64, []byte, error) {
	sep := strings.IndexByte(v, ':')
	if sep <= 0 {
		return 0, nil, errors.New("malformed entry: no version")
	}
	version, err := strconv.ParseUint(v[:sep], 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("malformed entry version: %w", err)
	}
	return version, []byte(v[sep+1:]), nil
}

// Get implements Store: value and remaining ttl in one round trip, GET and
// PTTL pipelined, batched with concurrent Gets (see getBatcher).
//
// GET and PTTL need not be atomic (a Lua script would make them so at ~7 µs
// of server time per call). Redis runs a connection's pipelined commands in
// order with, at most, other clients' commands in between, and whatever
// lands there is harmless:
//   - an Update or Touch between them: the ttl then belongs to a newer
//     write than the value. Both extend the entry's life; the caller only
//     uses the ttl to decide when to slide the idle timeout, and a later
//     compare-and-set on the old version fails and re-reads anyway.
//   - a Delete or expiry between them: PTTL says -2 and Get reports
//     storage.ErrNotFound, which is what the next request would see.
//   - a Create between a missing GET and PTTL: GET said absent, so Get
//     reports storage.ErrNotFound whatever PTTL says; session keys are random and
//     never re-created.
func (s *Store) Get(ctx context.Context, key string) (storage.Entry, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	get, pttl, err := s.gets.do(ctx, s.key(key))
	if err != nil {
		return storage.Entry{}, fmt.Errorf("redisstore: get: %w", err)
	}
	return s.getResult(get, pttl)
}

// getResult turns the replies of getCmds into an storage.Entry.
func (s *Store) getResult(get *redis.StringCmd, pttl *redis.DurationCmd) (storage.Entry, error) {
	v, err := get.Result()
	if errors.Is(err, redis.Nil) {
		return storage.Entry{}, storage.ErrNotFound
	}
	if err != nil {
		return storage.Entry{}, fmt.Errorf("redisstore: get: %w", err)
	}
	ttl, err := pttl.Result()
	if err != nil {
		return storage.Entry{}, fmt.Errorf("redisstore: get: pttl: %w", err)
	}
	if ttl == -2 {
		// Deleted or expired right after the GET.
		return storage.Entry{}, storage.ErrNotFound
	}
	version, data, err := unpack(v)
	if err != nil {
		s.log.Warn("redisstore: unreadable entry", "err", err)
		return storage.Entry{}, fmt.Errorf("redisstore: get: %w", err)
	}
	e := storage.Entry{Data: data, Version: version}
	if ttl > 0 {
		// -1 (no expiry) is reported as 0: this store never writes one.
		e.TTL = ttl
	}
	return e, nil
}

// Create implements Store with SET NX PX, which is atomic by itself.
func (s *Store) Create(ctx context.Context, key string, data []byte, ttl time.Duration) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if ttl <= 0 {
		return fmt.Errorf("redisstore: create: %w", errBadRedisTTL)
	}
	ok, err := s.client.SetNX(ctx, s.key(key), pack(1, data), time.Duration(pxMillis(ttl))*time.Millisecond).Result()
	s.wrote(key)
	if err != nil {
		return fmt.Errorf("redisstore: create: %w", err)
	}
	if !ok {
		return storage.ErrConflict
	}
	return nil
}

// Update implements Store as a compare-and-set script on the version.
func (s *Store) Update(ctx context.Context, key string, version uint64, data []byte, ttl time.Duration) (uint64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if ttl <= 0 {
		return 0, fmt.Errorf("redisstore: update: %w", errBadRedisTTL)
	}
	next := version + 1
	res, err := s.updateScript.Run(ctx, s.client, []string{s.key(key)},
		strconv.FormatUint(version, 10), pack(next, data), pxMillis(ttl)).Int64()
	s.wrote(key)
	if err != nil {
		return 0, fmt.Errorf("redisstore: update: %w", err)
	}
	switch res {
	case 1:
		return next, nil
	case -1:
		return 0, storage.ErrConflict
	default:
		return 0, storage.ErrNotFound
	}
}

// Touch implements Store with PEXPIRE, which does nothing to an absent key.
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if ttl <= 0 {
		return fmt.Errorf("redisstore: touch: %w", errBadRedisTTL)
	}
	ok, err := s.client.PExpire(ctx, s.key(key), time.Duration(pxMillis(ttl))*time.Millisecond).Result()
	s.wrote(key)
	if err != nil {
		return fmt.Errorf("redisstore: touch: %w", err)
	}
	if !ok {
		return storage.ErrNotFound
	}
	return nil
}

// Delete implements Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err := s.client.Del(ctx, s.key(key)).Err()
	s.wrote(key)
	if err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	return nil
}

// TryLock implements Locker with SET key owner NX PX ttl.
func (s *Store) TryLock(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if ttl <= 0 {
		return false, fmt.Errorf("redisstore: lock: %w", errBadRedisTTL)
	}
	ok, err := s.client.SetNX(ctx, s.key(key), owner, time.Duration(pxMillis(ttl))*time.Millisecond).Result()
	if err != nil {
		return false, fmt.Errorf("redisstore: lock: %w", err)
	}
	return ok, nil
}

// TryLockGet implements storage.LockReader: SET NX PX on the lock, then
// GET and PTTL on the entry, in one pipeline. Redis runs a connection's
// commands in order, so the entry is read after the lock was tried; the
// two keys share a hash tag (one Cluster slot, one node).
func (s *Store) TryLockGet(ctx context.Context, lockKey, owner string, ttl time.Duration, key string) (bool, storage.Entry, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if ttl <= 0 {
		return false, storage.Entry{}, fmt.Errorf("redisstore: lock: %w", errBadRedisTTL)
	}
	p := s.client.Pipeline()
	lock := p.SetNX(ctx, s.key(lockKey), owner, time.Duration(pxMillis(ttl))*time.Millisecond)
	k := s.key(key)
	get := p.Get(ctx, k)
	pttl := p.PTTL(ctx, k)
	if _, err := p.Exec(ctx); err != nil && !isRedisReply(err) {
		return false, storage.Entry{}, fmt.Errorf("redisstore: lock: %w", err)
	}
	locked, err := lock.Result()
	if err != nil {
		return false, storage.Entry{}, fmt.Errorf("redisstore: lock: %w", err)
	}
	e, err := s.getResult(get, pttl)
	return locked, e, err
}

// Unlock implements Locker with a compare-and-delete script.
func (s *Store) Unlock(ctx context.Context, key, owner string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.unlockScript.Run(ctx, s.client, []string{s.key(key)}, owner).Err(); err != nil {
		return fmt.Errorf("redisstore: unlock: %w", err)
	}
	return nil
}

// Claimed implements Claimer with EXISTS.
func (s *Store) Claimed(ctx context.Context, key string) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := s.client.Exists(ctx, s.key(key)).Result()
	if err != nil {
		return false, fmt.Errorf("redisstore: claimed: %w", err)
	}
	return n == 1, nil
}

// Claim implements Claimer with SET key 1 NX PX ttl: one atomic round
// trip, and at most one caller sees true.
func (s *Store) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if ttl <= 0 {
		return false, fmt.Errorf("redisstore: claim: %w", errBadRedisTTL)
	}
	ok, err := s.client.SetNX(ctx, s.key(key), "1", time.Duration(pxMillis(ttl))*time.Millisecond).Result()
	if err != nil {
		return false, fmt.Errorf("redisstore: claim: %w", err)
	}
	return ok, nil
}

// AddToIndex implements Indexer: SADD, and PEXPIRE only when it extends
// the set's life.
func (s *Store) AddToIndex(ctx context.Context, index, member string, ttl time.Duration) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if ttl <= 0 {
		return fmt.Errorf("redisstore: index add: %w", errBadRedisTTL)
	}
	if err := s.indexScript.Run(ctx, s.client, []string{s.key(index)}, member, pxMillis(ttl)).Err(); err != nil {
		return fmt.Errorf("redisstore: index add: %w", err)
	}
	return nil
}

// IndexMembers implements Indexer. Members come sorted, as from
// MemoryStore; an absent set gives nil.
func (s *Store) IndexMembers(ctx context.Context, index string) ([]string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	members, err := s.client.SMembers(ctx, s.key(index)).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: index members: %w", err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	slices.Sort(members)
	return members, nil
}

// RemoveFromIndex implements Indexer with SREM.
func (s *Store) RemoveFromIndex(ctx context.Context, index string, members ...string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if len(members) == 0 {
		return nil
	}
	args := make([]any, len(members))
	for i, m := range members {
		args[i] = m
	}
	if err := s.client.SRem(ctx, s.key(index), args...).Err(); err != nil {
		return fmt.Errorf("redisstore: index remove: %w", err)
	}
	return nil
}

// Close fails the Gets waiting for a batch and stops batching; later Gets
// fail. It stops the local cache's tracking connection, but does not close
// the client. Close is idempotent; a store that is never closed keeps its
// tracking connection open.
func (s *Store) Close() error {
	s.gets.close()
	s.closeOnce.Do(func() {
		if s.stopCache != nil {
			s.stopCache()
		}
	})
	return nil
}

// Ping implements storage.Backend.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}
