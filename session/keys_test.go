package session

import (
	"crypto/sha256"
	"encoding/base64"
	"testing"
)

// A session's record and lock keys hold only the base64url SHA-256 of its
// id, inside the hash tag both share.
func TestSessionAndLockKeys(t *testing.T) {
	var id [16]byte
	for i := range id {
		id[i] = byte(i * 7)
	}
	sum := sha256.Sum256(id[:])
	h := base64.RawURLEncoding.EncodeToString(sum[:])
	if got, want := sessionKey(id), "s:{"+h+"}"; got != want {
		t.Errorf("sessionKey = %q, want %q", got, want)
	}
	if got, want := lockKey(id), "l:{"+h+"}"; got != want {
		t.Errorf("lockKey = %q, want %q", got, want)
	}
	if got := lockKeyFor(sessionKey(id)); got != lockKey(id) {
		t.Errorf("lockKeyFor(sessionKey) = %q, want lockKey %q", got, lockKey(id))
	}
}
