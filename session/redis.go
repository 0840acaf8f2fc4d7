package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Backend = (*RedisStore)(nil)

// DefaultRedisKeyPrefix is put in front of every key when
// RedisStoreOptions.KeyPrefix is empty.
const DefaultRedisKeyPrefix = "tokenrelay:"

// RedisStoreOptions configure a RedisStore.
type RedisStoreOptions struct {
	// KeyPrefix is put in front of every key (default "tokenrelay:"), so
	// several deployments can share one Redis. It sits outside the {…} hash
	// tag of the keys built in keys.go and must not contain '{' or '}',
	// which would move the tag and split a session from its lock in a
	// Cluster.
	KeyPrefix string
	// Logger receives warnings about entries this store cannot read; nil
	// discards them.
	Logger *slog.Logger
}

// RedisStore is a Backend on Redis (standalone, Sentinel or Cluster: any
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
// RedisStore is safe for concurrent use. It does not own the client: the
// caller closes it, after Close if it calls Close at all (an unclosed store
// leaks nothing: its batching goroutine runs only while Gets wait).
type RedisStore struct {
	client redis.UniversalClient
	prefix string
	log    *slog.Logger

	updateScript, unlockScript, indexScript *redis.Script

	gets *getBatcher
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

// NewRedisStore returns a store on client. Build the client with
// NewRedisClient.
func NewRedisStore(client redis.UniversalClient, opts RedisStoreOptions) *RedisStore {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	prefix := opts.KeyPrefix
	if prefix == "" {
		prefix = DefaultRedisKeyPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		log.Warn("session: redis key prefix contains a brace; in a Cluster a session and its lock may land in different slots", "key_prefix", prefix)
	}
	return &RedisStore{
		client:       client,
		prefix:       prefix,
		log:          log,
		updateScript: redis.NewScript(updateLua),
		unlockScript: redis.NewScript(unlockLua),
		indexScript:  redis.NewScript(indexLua),
		gets:         newGetBatcher(client, defaultMaxGetBatch),
	}
}

func (s *RedisStore) key(k string) string { return s.prefix + k }

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
//     ErrNotFound, which is what the next request would see.
//   - a Create between a missing GET and PTTL: GET said absent, so Get
//     reports ErrNotFound whatever PTTL says; session keys are random and
//     never re-created.
func (s *RedisStore) Get(ctx context.Context, key string) (Entry, error) {
	get, pttl, err := s.gets.do(ctx, s.key(key))
	if err != nil {
		return Entry{}, fmt.Errorf("session: redis get: %w", err)
	}
	return s.getResult(get, pttl)
}

// getResult turns the replies of getCmds into an Entry.
func (s *RedisStore) getResult(get *redis.StringCmd, pttl *redis.DurationCmd) (Entry, error) {
	v, err := get.Result()
	if errors.Is(err, redis.Nil) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, fmt.Errorf("session: redis get: %w", err)
	}
	ttl, err := pttl.Result()
	if err != nil {
		return Entry{}, fmt.Errorf("session: redis get: pttl: %w", err)
	}
	if ttl == -2 {
		// Deleted or expired right after the GET.
		return Entry{}, ErrNotFound
	}
	version, data, err := unpack(v)
	if err != nil {
		s.log.Warn("session: unreadable redis entry", "err", err)
		return Entry{}, fmt.Errorf("session: redis get: %w", err)
	}
	e := Entry{Data: data, Version: version}
	if ttl > 0 {
		// -1 (no expiry) is reported as 0: this store never writes one.
		e.TTL = ttl
	}
	return e, nil
}

// Create implements Store with SET NX PX, which is atomic by itself.
func (s *RedisStore) Create(ctx context.Context, key string, data []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("session: redis create: %w", errBadRedisTTL)
	}
	ok, err := s.client.SetNX(ctx, s.key(key), pack(1, data), time.Duration(pxMillis(ttl))*time.Millisecond).Result()
	if err != nil {
		return fmt.Errorf("session: redis create: %w", err)
	}
	if !ok {
		return ErrConflict
	}
	return nil
}

// Update implements Store as a compare-and-set script on the version.
func (s *RedisStore) Update(ctx context.Context, key string, version uint64, data []byte, ttl time.Duration) (uint64, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("session: redis update: %w", errBadRedisTTL)
	}
	next := version + 1
	res, err := s.updateScript.Run(ctx, s.client, []string{s.key(key)},
		strconv.FormatUint(version, 10), pack(next, data), pxMillis(ttl)).Int64()
	if err != nil {
		return 0, fmt.Errorf("session: redis update: %w", err)
	}
	switch res {
	case 1:
		return next, nil
	case -1:
		return 0, ErrConflict
	default:
		return 0, ErrNotFound
	}
}

// Touch implements Store with PEXPIRE, which does nothing to an absent key.
func (s *RedisStore) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("session: redis touch: %w", errBadRedisTTL)
	}
	ok, err := s.client.PExpire(ctx, s.key(key), time.Duration(pxMillis(ttl))*time.Millisecond).Result()
	if err != nil {
		return fmt.Errorf("session: redis touch: %w", err)
	}
	if !ok {
		return ErrNotFound
	}
	return nil
}

// Delete implements Store.
func (s *RedisStore) Delete(ctx context.Context, key string) error {
	if err := s.client.Del(ctx, s.key(key)).Err(); err != nil {
		return fmt.Errorf("session: redis delete: %w", err)
	}
	return nil
}

// TryLock implements Locker with SET key owner NX PX ttl.
func (s *RedisStore) TryLock(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, fmt.Errorf("session: redis lock: %w", errBadRedisTTL)
	}
	ok, err := s.client.SetNX(ctx, s.key(key), owner, time.Duration(pxMillis(ttl))*time.Millisecond).Result()
	if err != nil {
		return false, fmt.Errorf("session: redis lock: %w", err)
	}
	return ok, nil
}

// Unlock implements Locker with a compare-and-delete script.
func (s *RedisStore) Unlock(ctx context.Context, key, owner string) error {
	if err := s.unlockScript.Run(ctx, s.client, []string{s.key(key)}, owner).Err(); err != nil {
		return fmt.Errorf("session: redis unlock: %w", err)
	}
	return nil
}

// PutState implements StateStore with SET PX.
func (s *RedisStore) PutState(ctx context.Context, key string, data []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("session: redis put state: %w", errBadRedisTTL)
	}
	if err := s.client.Set(ctx, s.key(key), data, time.Duration(pxMillis(ttl))*time.Millisecond).Err(); err != nil {
		return fmt.Errorf("session: redis put state: %w", err)
	}
	return nil
}

// TakeState implements StateStore with GETDEL (Redis 6.2+), so only one of
// several concurrent callers gets the state.
func (s *RedisStore) TakeState(ctx context.Context, key string) ([]byte, error) {
	data, err := s.client.GetDel(ctx, s.key(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("session: redis take state: %w", err)
	}
	return data, nil
}

// AddToIndex implements Indexer: SADD, and PEXPIRE only when it extends
// the set's life.
func (s *RedisStore) AddToIndex(ctx context.Context, index, member string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("session: redis index add: %w", errBadRedisTTL)
	}
	if err := s.indexScript.Run(ctx, s.client, []string{s.key(index)}, member, pxMillis(ttl)).Err(); err != nil {
		return fmt.Errorf("session: redis index add: %w", err)
	}
	return nil
}

// IndexMembers implements Indexer. Members come sorted, as from
// MemoryStore; an absent set gives nil.
func (s *RedisStore) IndexMembers(ctx context.Context, index string) ([]string, error) {
	members, err := s.client.SMembers(ctx, s.key(index)).Result()
	if err != nil {
		return nil, fmt.Errorf("session: redis index members: %w", err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	slices.Sort(members)
	return members, nil
}

// RemoveFromIndex implements Indexer with SREM.
func (s *RedisStore) RemoveFromIndex(ctx context.Context, index string, members ...string) error {
	if len(members) == 0 {
		return nil
	}
	args := make([]any, len(members))
	for i, m := range members {
		args[i] = m
	}
	if err := s.client.SRem(ctx, s.key(index), args...).Err(); err != nil {
		return fmt.Errorf("session: redis index remove: %w", err)
	}
	return nil
}

// Close fails the Gets waiting for a batch and stops batching; later Gets
// fail. It does not close the client. Close is optional and idempotent.
func (s *RedisStore) Close() error {
	s.gets.close()
	return nil
}

// Ping implements Backend.
func (s *RedisStore) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("session: redis ping: %w", err)
	}
	return nil
}
