package session

import (
	"context"
	"errors"
	"time"
)

// Errors a Backend returns; implementations wrap nothing else in them.
var (
	// ErrNotFound: no entry (or state, or lock owner) under that key.
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
// this package (see keys.go); implementations add their own prefix.
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

// StateStore keeps one-time login states.
type StateStore interface {
	// PutState stores data under key for ttl (overwriting is allowed).
	PutState(ctx context.Context, key string, data []byte, ttl time.Duration) error
	// TakeState returns and deletes the data atomically (GETDEL), so a state
	// is used at most once even with concurrent callbacks. ErrNotFound when
	// absent or expired.
	TakeState(ctx context.Context, key string) ([]byte, error)
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
// MemoryStore and RedisStore implement it, and the same conformance suite
// (store_conformance_test.go) runs against both.
type Backend interface {
	Store
	Locker
	StateStore
	Indexer
	// Ping reports whether the backend is reachable (readiness).
	Ping(ctx context.Context) error
}
