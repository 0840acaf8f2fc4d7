package identity

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"sync"
)

// KeyStore keeps the sealed signing keys that every replica shares. The
// session store's Backend is meant to implement it; MemoryKeyStore is the
// one-process version. Implementations are safe for concurrent use.
type KeyStore interface {
	// LoadKeys returns the blob stored under name and its version, or
	// (nil, 0, nil) when nothing is stored.
	LoadKeys(ctx context.Context, name string) (blob []byte, version uint64, err error)
	// StoreKeys stores blob under name, without expiry, if the stored
	// version is still version (0: nothing stored yet), and reports
	// whether it did. A successful store makes the version change.
	StoreKeys(ctx context.Context, name string, version uint64, blob []byte) (bool, error)
}

// MemoryKeyStore is a KeyStore in memory, for one replica and for tests.
// The zero value is ready to use.
type MemoryKeyStore struct {
	mu      sync.Mutex // guards entries
	entries map[string]memoryEntry
}

type memoryEntry struct {
	blob    []byte
	version uint64
}

var _ KeyStore = (*MemoryKeyStore)(nil)

// LoadKeys implements KeyStore.
func (s *MemoryKeyStore) LoadKeys(_ context.Context, name string) ([]byte, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[name]
	return bytes.Clone(e.blob), e.version, nil
}

// StoreKeys implements KeyStore.
func (s *MemoryKeyStore) StoreKeys(_ context.Context, name string, version uint64, blob []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries[name].version != version {
		return false, nil
	}
	if s.entries == nil {
		s.entries = map[string]memoryEntry{}
	}
	s.entries[name] = memoryEntry{blob: bytes.Clone(blob), version: version + 1}
	return true, nil
}

// sealer encrypts the key ring with AES-256-GCM under a key derived from
// the server secret, so the store alone reveals no private key. The name
// the blob is stored under is bound as additional data. It opens with the
// current secret or a previous one (after a secret rotation) and always
// seals with the current one.
type sealer struct{ aeads []cipher.AEAD }

// keyRingInfo is the HKDF info of the sealing key: a key for this purpose
// only, unrelated to the session keys derived from the same secret.
const keyRingInfo = "tokenrelay identity assertion keys v1"

func newSealer(current []byte, previous [][]byte) (*sealer, error) {
	s := &sealer{}
	for _, secret := range append([][]byte{current}, previous...) {
		if len(secret) < 32 {
			return nil, errors.New("identity: a server secret must have at least 32 bytes")
		}
		key, err := hkdf.Key(sha256.New, secret, nil, keyRingInfo, 32)
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		s.aeads = append(s.aeads, aead)
	}
	return s, nil
}

func (s *sealer) seal(name string, plain []byte) []byte {
	aead := s.aeads[0]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, plain, []byte(name))
}

// errUnsealable marks a stored ring that opens with none of the secrets:
// another secret, or tampering.
var errUnsealable = errors.New("identity: the stored signing keys open with none of the server secrets")

func (s *sealer) open(name string, blob []byte) ([]byte, error) {
	for _, aead := range s.aeads {
		n := aead.NonceSize()
		if len(blob) < n {
			break
		}
		if plain, err := aead.Open(nil, blob[:n], blob[n:], []byte(name)); err == nil {
			return plain, nil
		}
	}
	return nil, errUnsealable
}
