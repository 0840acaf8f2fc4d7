// Package storage is the contract between the session manager and the
// systems that store sessions: sealed entries under opaque keys with
// compare-and-set writes, the cross-replica refresh lock, one-time claims
// and the back-channel logout indexes. The memory store (package session),
// the Redis store (session/redisstore) and the conformance suite every
// store passes (session/storetest) build on it without importing the
// session manager.
package storage

import (
	"context"
	"errors"
	"time"
)

// Errors a Backend returns; implementations wrap nothing else in them.
var (
	// ErrNotFound: no entry (or lock owner) under that key.
	ErrNotFound = errors.New("session: not found")
	// ErrConflict: a compare-and-set saw another version, or Create found
	// the key taken.
	ErrConflict = errors.New("session: version conflict")
)

// Entry is one stored session: the sealed record, the version that
// compare-and-set writes check, and the time left before the entry expires.
type Entry struct {
	Data    []byte
	Version uint64
	TTL     time.Duration
}

// Store keeps sealed session records under opaque keys. Keys are built by
// package session (see its keys.go); implementations add their own prefix.
// Implementations are safe for concurrent use.
type Store interface {
	// Get returns the entry under key, or ErrNotFound.
	Get(ctx context.Context, key string) (Entry, error)
	// Create stores data at version 1 with the given ttl when key is absent,
	// and returns ErrConflict when it is present.
	Create(ctx context.Context, key string, data []byte, ttl time.Duration) error
	// Update replaces data and ttl only if the stored version equals
	// version, and returns the new version (version+1). ErrConflict when the
	// version differs, ErrNotFound when the entry is gone.
	Update(ctx context.Context, key string, version uint64, data []byte, ttl time.Duration) (uint64, error)
	// Touch sets the entry's ttl without changing data or version
	// (sliding idle timeout). ErrNotFound when the entry is gone.
	Touch(ctx context.Context, key string, ttl time.Duration) error
	// Delete removes the entry; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// Locker is the cross-replica refresh lock.
type Locker interface {
	// TryLock takes the lock named key for owner, for ttl, when nobody holds
	// it, and reports whether it did. It never blocks waiting for the lock.
	TryLock(ctx context.Context, key, owner string, ttl time.Duration) (bool, error)
	// Unlock releases the lock only if owner still holds it (compare and
	// delete); releasing a lock held by someone else, or expired, is a no-op.
	Unlock(ctx context.Context, key, owner string) error
}

// LockReader is what a Backend may offer besides Locker: taking a lock and
// reading an entry in one round trip. The read happens after the lock was
// tried, so an entry read with the lock taken is the entry under the lock.
// The refresh engine uses it when a Backend has it, and TryLock followed
// by Get otherwise; each round trip it saves is one step less between a
// refresh and the requests waiting for it.
type LockReader interface {
	// TryLockGet is TryLock(lockKey, owner, ttl) and then Get(key). err is
	// ErrNotFound when the entry is absent (locked still says whether the
	// lock was taken), or a failure to reach the store (then nothing is
	// known of the lock: it lapses with its ttl if it was taken).
	TryLockGet(ctx context.Context, lockKey, owner string, ttl time.Duration, key string) (locked bool, e Entry, err error)
}

// CachedReader is what a Backend may offer for the request path: a read
// that may be answered from a copy the backend keeps current by itself.
// A copy may trail a write made elsewhere by the time the backend needs to
// learn of it (Redis: milliseconds), so only reads that can live with a
// version that was current a moment ago use it; a read under the refresh
// lock calls Get.
type CachedReader interface {
	// GetCached is Get, possibly answered from the copy. The Data of the
	// entry it returns may be shared: callers must not modify it.
	GetCached(ctx context.Context, key string) (Entry, error)
}

// ChangeNotifier is what a Backend may offer the refresh engine: a signal
// that an entry changed, so that a flight waiting for another replica's
// refresh looks again at once rather than at its next poll. Signals may be
// spurious or, when the backend loses track, missing: the engine still
// polls, and only wakes earlier.
type ChangeNotifier interface {
	// NotifyChange returns a channel that closes at the next change of key
	// (nil if it cannot tell), and the function to call when the caller
	// stops waiting on it.
	NotifyChange(key string) (<-chan struct{}, func())
}

// Claimer records one-time claims: the state of a login that came back
// from the provider, so that no replica accepts it a second time. A login
// that never comes back writes nothing (its state lives in the browser's
// sealed binding cookie), so claims are bounded by completed logins.
type Claimer interface {
	// Claimed reports whether a live claim of key exists. It writes
	// nothing.
	Claimed(ctx context.Context, key string) (bool, error)
	// Claim records key for ttl when no live claim of it exists, and
	// reports whether this call recorded it. Of concurrent calls with one
	// key, exactly one gets true.
	Claim(ctx context.Context, key string, ttl time.Duration) (bool, error)
}

// Indexer maps a provider's sid or sub to the session keys that carry it,
// for back-channel logout.
type Indexer interface {
	// AddToIndex adds member to the set named index and makes the set live
	// at least ttl.
	AddToIndex(ctx context.Context, index, member string, ttl time.Duration) error
	// IndexMembers lists the set; an absent set is empty, not an error.
	IndexMembers(ctx context.Context, index string) ([]string, error)
	// RemoveFromIndex removes members from the set.
	RemoveFromIndex(ctx context.Context, index string, members ...string) error
}

// Backend is everything the session manager needs from a storage system.
// session.MemoryStore and redisstore.Store implement it, and the same
// conformance suite (session/storetest) runs against both.
type Backend interface {
	Store
	Locker
	Claimer
	Indexer
	// Ping reports whether the backend is reachable (readiness).
	Ping(ctx context.Context) error
}
