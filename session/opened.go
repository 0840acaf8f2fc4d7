package session

import (
	"bytes"
	"crypto/subtle"
	"sync"

	"github.com/tokenrelay/tokenrelay/secret"
)

// openedShards splits openedRecords so that requests of different sessions
// rarely meet at one lock.
const openedShards = 16

// defaultOpenedMax is how many opened records are kept by default: the
// sessions active at once on a busy replica. Each costs about its sealed
// record plus its tokens, 3–4 KiB for a typical OIDC session.
const defaultOpenedMax = 4096

// openedRecords remembers the records the request path opened, so that a
// request whose session has not changed since the last one skips the key
// derivation, decryption and decoding: on a busy proxy a quarter of the
// allocations and about 6 % of the CPU of a request.
//
// It is a memo of opening, not a cache of the store: every request still
// reads the store, and an entry is used only when the store returned
// exactly the sealed bytes it was made from (same version, byte for byte)
// and the request's ticket carries the per-session key that opened them
// (compared in constant time). So whatever the store says wins at once: a
// session ended or refreshed on another replica is seen by the next
// request here, and a changed or foreign value is opened (and refused)
// as before. A ticket with the right id but the wrong key, or a value
// written by anyone without the key, never gets a record it could not
// open itself.
//
// Records kept here were decoded without their claims (for the token of a
// plain route) or with them (for a route with a policy or identity
// headers, Manager.Open; such a record serves both), and are shared by
// concurrent requests: they are read-only and never saved.
//
// openedRecords is safe for concurrent use; the zero value keeps nothing.
type openedRecords struct {
	max    int // per shard; 0 keeps nothing
	shards [openedShards]openedShard
}

type openedShard struct {
	mu sync.RWMutex // guards m
	m  map[string]*openedRecord
}

// openedRecord is one opened record with what it was opened from.
type openedRecord struct {
	ticketKey [16]byte
	version   uint64
	// claims: rec was decoded with its claims, so it serves a reading
	// with claims as well as one without.
	claims bool
	sealed []byte
	rec    *Record
	// bearer is the Authorization header value of rec.AccessToken, built
	// once per record rather than per request.
	bearer secret.String
}

// newOpenedRecords keeps up to max records (0: none).
func newOpenedRecords(max int) *openedRecords {
	o := &openedRecords{max: (max + openedShards - 1) / openedShards}
	for i := range o.shards {
		o.shards[i].m = make(map[string]*openedRecord)
	}
	return o
}

func (o *openedRecords) shard(key string) *openedShard {
	// A session key is "s:{" + base64url(SHA-256(id)) + "}": the last
	// base64 character holds only 4 bits of the hash, the one before it a
	// full 6, which spread keys over the shards.
	if len(key) < 3 {
		return &o.shards[0]
	}
	return &o.shards[key[len(key)-3]%openedShards]
}

// lookup returns the record t opened from e under key, if it is kept (and
// was decoded with its claims when claims is set).
func (o *openedRecords) lookup(key string, t Ticket, e Entry, claims bool) (*openedRecord, bool) {
	if o.max == 0 || key == "" {
		return nil, false
	}
	s := o.shard(key)
	s.mu.RLock()
	r := s.m[key]
	s.mu.RUnlock()
	if r == nil || (claims && !r.claims) || r.version != e.Version || subtle.ConstantTimeCompare(r.ticketKey[:], t.Key[:]) != 1 || !bytes.Equal(r.sealed, e.Data) {
		return nil, false
	}
	return r, true
}

// add keeps rec, opened by t from e under key (with its claims when
// claims is set), and returns it with its bearer header. A full shard
// drops an arbitrary entry first.
func (o *openedRecords) add(key string, t Ticket, e Entry, rec *Record, claims bool) *openedRecord {
	r := &openedRecord{ticketKey: t.Key, version: e.Version, claims: claims, sealed: e.Data, rec: rec, bearer: bearerOf(rec.AccessToken)}
	if !r.bearer.IsZero() {
		// One copy of the access token, inside its header value.
		rec.AccessToken = r.bearer[len(bearerPrefix):]
	}
	if o.max == 0 || key == "" {
		return r
	}
	s := o.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok && len(s.m) >= o.max {
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[key] = r
	return r
}

// forget drops what is kept under key (the session ended).
func (o *openedRecords) forget(key string) {
	if o.max == 0 || key == "" {
		return
	}
	s := o.shard(key)
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
}

const bearerPrefix = "Bearer "

// bearerOf is the Authorization header value that sends tok.
func bearerOf(tok secret.String) secret.String {
	if tok.IsZero() {
		return ""
	}
	return secret.String(bearerPrefix + tok.Reveal())
}
