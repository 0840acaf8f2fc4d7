package session

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// KeyStore keeps small blobs that every replica shares and that outlive
// any session, such as the identity assertion's sealed signing keys, in
// the session Backend: one entry per name, read with Get and written with
// the compare-and-set of Create and Update. It implements the key store of
// package identity. The caller seals what it stores; KeyStore adds
// nothing. It is safe for concurrent use.
//
// The Backend has no entries without expiry (a ttl must be positive), so a
// blob is written with keyStoreTTL, renewed at every write: in practice it
// never expires. A store that loses it anyway (a flushed Redis, an
// eviction) makes the caller write it again.
type KeyStore struct {
	b Backend
}

// keyStoreTTL is the lifetime of a KeyStore entry: ten years.
const keyStoreTTL = 10 * 365 * 24 * time.Hour

// NewKeyStore returns a KeyStore on b.
func NewKeyStore(b Backend) *KeyStore { return &KeyStore{b: b} }

// LoadKeys returns the blob stored under name and its version, or
// (nil, 0, nil) when nothing is stored.
func (s *KeyStore) LoadKeys(ctx context.Context, name string) ([]byte, uint64, error) {
	e, err := s.b.Get(ctx, sharedKey(name))
	if errors.Is(err, ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("session: load %s: %w", name, err)
	}
	return e.Data, e.Version, nil
}

// StoreKeys stores blob under name if the stored version is still version
// (0: nothing stored), and reports whether it did; a write changes the
// version.
func (s *KeyStore) StoreKeys(ctx context.Context, name string, version uint64, blob []byte) (bool, error) {
	key := sharedKey(name)
	var err error
	if version == 0 {
		err = s.b.Create(ctx, key, blob, keyStoreTTL)
	} else {
		_, err = s.b.Update(ctx, key, version, blob, keyStoreTTL)
	}
	switch {
	case errors.Is(err, ErrConflict), errors.Is(err, ErrNotFound):
		// Another replica wrote first, or the entry vanished since it
		// was read: the caller reads again.
		return false, nil
	case err != nil:
		return false, fmt.Errorf("session: store %s: %w", name, err)
	}
	return true, nil
}
