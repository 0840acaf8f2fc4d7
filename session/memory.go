package session

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/tokenrelay/tokenrelay/session/storage"
)

var (
	_ Backend            = (*MemoryStore)(nil)
	_ storage.LockReader = (*MemoryStore)(nil)
)

// errBadTTL is returned for a zero or negative ttl, which Redis refuses too.
var errBadTTL = errors.New("session: memory: ttl must be positive")

// sweepMin is the least number of writes between two sweeps.
const sweepMin = 64

// MemoryStore is a Backend that keeps everything in the process: for one
// replica, tests and demos. Expiry follows the injected clock: an expired
// item is invisible at once and freed by a sweep that runs after as many
// writes as there were items at the previous sweep (at least sweepMin), so
// memory stays proportional to the live items at O(1) amortised cost per
// write, without a goroutine.
//
// MemoryStore is safe for concurrent use.
type MemoryStore struct {
	now func() time.Time

	// mu guards everything below. Reads share it; a stored slice is never
	// written to in place (writes store a fresh copy), so readers copy it
	// after letting go.
	mu      sync.RWMutex
	entries map[string]memEntry
	locks   map[string]memItem
	claims  map[string]time.Time // claim key -> expiry
	indexes map[string]*memSet
	// writes counts writes since the last sweep; sweep happens when it
	// reaches sweepAt.
	writes, sweepAt int
}

type memEntry struct {
	data    []byte
	version uint64
	expires time.Time
}

type memItem struct {
	value   []byte // lock owner
	expires time.Time
}

type memSet struct {
	members map[string]struct{}
	expires time.Time
}

// NewMemoryStore returns an empty store whose TTLs follow now (nil:
// time.Now).
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{
		now:     now,
		entries: make(map[string]memEntry),
		locks:   make(map[string]memItem),
		claims:  make(map[string]time.Time),
		indexes: make(map[string]*memSet),
		sweepAt: sweepMin,
	}
}

// Get implements storage.Store.
func (s *MemoryStore) Get(ctx context.Context, key string) (Entry, error) {
	now := s.now()
	s.mu.RLock()
	e, ok := s.entries[key]
	s.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		return Entry{}, ErrNotFound
	}
	return Entry{Data: slices.Clone(e.data), Version: e.version, TTL: e.expires.Sub(now)}, nil
}

// Create implements storage.Store.
func (s *MemoryStore) Create(ctx context.Context, key string, data []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errBadTTL
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok && now.Before(e.expires) {
		return ErrConflict
	}
	s.entries[key] = memEntry{data: slices.Clone(data), version: 1, expires: now.Add(ttl)}
	s.wrote(now)
	return nil
}

// Update implements storage.Store.
func (s *MemoryStore) Update(ctx context.Context, key string, version uint64, data []byte, ttl time.Duration) (uint64, error) {
	if ttl <= 0 {
		return 0, errBadTTL
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok || !now.Before(e.expires) {
		return 0, ErrNotFound
	}
	if e.version != version {
		return 0, ErrConflict
	}
	s.entries[key] = memEntry{data: slices.Clone(data), version: version + 1, expires: now.Add(ttl)}
	s.wrote(now)
	return version + 1, nil
}

// Touch implements storage.Store.
func (s *MemoryStore) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if ttl <= 0 {
		return errBadTTL
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok || !now.Before(e.expires) {
		return ErrNotFound
	}
	e.expires = now.Add(ttl)
	s.entries[key] = e
	return nil
}

// Delete implements storage.Store.
func (s *MemoryStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, key)
	return nil
}

// TryLock implements storage.Locker.
func (s *MemoryStore) TryLock(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errBadTTL
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.locks[key]; ok && now.Before(l.expires) {
		return false, nil
	}
	s.locks[key] = memItem{value: []byte(owner), expires: now.Add(ttl)}
	s.wrote(now)
	return true, nil
}

// TryLockGet implements storage.LockReader: TryLock, then Get.
func (s *MemoryStore) TryLockGet(ctx context.Context, lockKey, owner string, ttl time.Duration, key string) (bool, Entry, error) {
	locked, err := s.TryLock(ctx, lockKey, owner, ttl)
	if err != nil {
		return false, Entry{}, err
	}
	e, err := s.Get(ctx, key)
	return locked, e, err
}

// Unlock implements storage.Locker.
func (s *MemoryStore) Unlock(ctx context.Context, key, owner string) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.locks[key]; ok && now.Before(l.expires) && string(l.value) == owner {
		delete(s.locks, key)
	}
	return nil
}

// Claimed implements storage.Claimer.
func (s *MemoryStore) Claimed(ctx context.Context, key string) (bool, error) {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	exp, ok := s.claims[key]
	return ok && now.Before(exp), nil
}

// Claim implements storage.Claimer.
func (s *MemoryStore) Claim(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if ttl <= 0 {
		return false, errBadTTL
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if exp, ok := s.claims[key]; ok && now.Before(exp) {
		return false, nil
	}
	s.claims[key] = now.Add(ttl)
	s.wrote(now)
	return true, nil
}

// AddToIndex implements storage.Indexer. The set lives until the latest expiry any
// AddToIndex asked for.
func (s *MemoryStore) AddToIndex(ctx context.Context, index, member string, ttl time.Duration) error {
	if ttl <= 0 {
		return errBadTTL
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	set, ok := s.indexes[index]
	if !ok || !now.Before(set.expires) {
		set = &memSet{members: make(map[string]struct{})}
		s.indexes[index] = set
	}
	set.members[member] = struct{}{}
	if exp := now.Add(ttl); exp.After(set.expires) {
		set.expires = exp
	}
	s.wrote(now)
	return nil
}

// IndexMembers implements storage.Indexer. Members come sorted.
func (s *MemoryStore) IndexMembers(ctx context.Context, index string) ([]string, error) {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	set, ok := s.indexes[index]
	if !ok || !now.Before(set.expires) {
		return nil, nil
	}
	out := make([]string, 0, len(set.members))
	for m := range set.members {
		out = append(out, m)
	}
	slices.Sort(out)
	return out, nil
}

// RemoveFromIndex implements storage.Indexer.
func (s *MemoryStore) RemoveFromIndex(ctx context.Context, index string, members ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, ok := s.indexes[index]
	if !ok {
		return nil
	}
	for _, m := range members {
		delete(set.members, m)
	}
	if len(set.members) == 0 {
		delete(s.indexes, index)
	}
	return nil
}

// Ping implements Backend; a MemoryStore is always reachable.
func (s *MemoryStore) Ping(ctx context.Context) error { return nil }

// Len reports how many items (entries, locks, claims, index sets) the store
// holds, expired or not, for tests that check memory stays bounded.
func (s *MemoryStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.entries) + len(s.locks) + len(s.claims) + len(s.indexes)
}

// wrote counts a write and sweeps expired items when enough writes have
// accumulated. The caller holds s.mu.
func (s *MemoryStore) wrote(now time.Time) {
	s.writes++
	if s.writes < s.sweepAt {
		return
	}
	for k, e := range s.entries {
		if !now.Before(e.expires) {
			delete(s.entries, k)
		}
	}
	for k, l := range s.locks {
		if !now.Before(l.expires) {
			delete(s.locks, k)
		}
	}
	for k, exp := range s.claims {
		if !now.Before(exp) {
			delete(s.claims, k)
		}
	}
	for k, set := range s.indexes {
		if !now.Before(set.expires) {
			delete(s.indexes, k)
		}
	}
	s.writes = 0
	s.sweepAt = max(sweepMin, len(s.entries)+len(s.locks)+len(s.claims)+len(s.indexes))
}
