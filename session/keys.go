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
func sessionKey(id [16]byte) string { return taggedIDKey("s:{", id) }

// lockKey is the key of the cross-replica refresh lock of that session.
func lockKey(id [16]byte) string { return taggedIDKey("l:{", id) }

// taggedIDKey is prefix, idHash(id) and "}", built in one allocation: a
// session key is made for every request.
func taggedIDKey(prefix string, id [16]byte) string {
	sum := sha256.Sum256(id[:])
	var b [8 + 43 + 1]byte // 43: base64url of 32 bytes, unpadded
	n := copy(b[:], prefix)
	base64.RawURLEncoding.Encode(b[n:], sum[:])
	n += base64.RawURLEncoding.EncodedLen(len(sum))
	b[n] = '}'
	return string(b[:n+1])
}

// lockKeyFor returns the lock key that goes with a session key built by
// sessionKey, so code holding only the session key (the refresh engine, index
// members) finds the lock.
func lockKeyFor(sessKey string) string { return "l:" + sessKey[len("s:"):] }

// usedStateKey is the key of the claim that a login state came back from the
// provider and was used (see Manager.ClaimLogin).
func usedStateKey(state string) string { return "us:" + hashString(state) }

// sidIndexKey and subIndexKey name the sets of session keys that carry a
// provider's sid or sub (back-channel logout). The issuer and the value are
// joined with a NUL byte, which neither an issuer URL nor a claim of a
// well-formed token contains, so two different pairs never hash alike.
func sidIndexKey(issuer, sid string) string { return "ix:sid:" + hashString(issuer+"\x00"+sid) }
func subIndexKey(issuer, sub string) string { return "ix:sub:" + hashString(issuer+"\x00"+sub) }

// sharedKey is the key of a KeyStore entry: a name the caller chose (not a
// secret, not a user's), in its own "k:" namespace.
func sharedKey(name string) string { return "k:" + name }

func hashString(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// clientTokenKey and clientLockKey name tokenrelay's own access token of a
// route target (client credentials) and the lock of its renewal; they
// share a hash tag, as a session's record and lock do.
func clientTokenKey(target string) string { return "c:{" + hashString("client\x00"+target) + "}" }
func clientLockKey(target string) string  { return "cl:{" + hashString("client\x00"+target) + "}" }
