package session

import (
	"crypto/sha256"
	"encoding/base64"
)

// Store keys. Every key tokenrelay writes is built here; a Backend adds its
// own prefix. No key contains a session id, a state value, a sid or a sub in
// clear: each is hashed first, so a store dump names nobody.
//
// A session's record and its refresh lock share the hash tag {h}, so Redis
// Cluster keeps them in one slot.

// idHash is base64url(SHA-256(session id)), the only form of a session id
// that reaches the store.
func idHash(id [16]byte) string {
	sum := sha256.Sum256(id[:])
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// sessionKey is the key of the sealed record of the session with this id.
func sessionKey(id [16]byte) string { return "s:{" + idHash(id) + "}" }

// lockKey is the key of the cross-replica refresh lock of that session.
func lockKey(id [16]byte) string { return "l:{" + idHash(id) + "}" }

// lockKeyFor returns the lock key that goes with a session key built by
// sessionKey, so code holding only the session key (the refresh engine, index
// members) finds the lock.
func lockKeyFor(sessKey string) string { return "l:" + sessKey[len("s:"):] }

// stateKey is the key of a one-time login state.
func stateKey(state string) string { return "ls:" + hashString(state) }

// sidIndexKey and subIndexKey name the sets of session keys that carry a
// provider's sid or sub (back-channel logout). The issuer and the value are
// joined with a NUL byte, which neither an issuer URL nor a claim of a
// well-formed token contains, so two different pairs never hash alike.
func sidIndexKey(issuer, sid string) string { return "ix:sid:" + hashString(issuer+"\x00"+sid) }
func subIndexKey(issuer, sub string) string { return "ix:sub:" + hashString(issuer+"\x00"+sub) }

func hashString(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
