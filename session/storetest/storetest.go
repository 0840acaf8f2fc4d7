// Package storetest is the conformance suite every session store passes:
// one set of behaviours of the storage.Backend contract (compare-and-set
// writes, expiry, the refresh lock, one-time claims, the back-channel
// indexes, under concurrency), run against the memory store and the Redis
// store (standalone and Cluster) alike, so that a third store gets it by
// calling Run.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenrelay/tokenrelay/session/storage"
)

// Backend, ErrNotFound and ErrConflict are the contract under test.
type Backend = storage.Backend

var (
	ErrNotFound = storage.ErrNotFound
	ErrConflict = storage.ErrConflict
)

// confShortTTL is the ttl of items a test waits to see expire. On a store
// with real time it is long enough that the writes a test makes right after
// a create (a Touch, a second AddToIndex) land well before it.
const confShortTTL = 400 * time.Millisecond

// confExpiryGrace bounds how long after its ttl a store on real time may
// take to show an item as expired before the test fails.
const confExpiryGrace = 10 * time.Second

// Option changes how Run runs the suite.
type Option func(*suite)

// FakeTime runs every test of the suite in a testing/synctest bubble, with
// its backend built inside it: a store whose expiry follows time.Now (the
// memory store) then sees time jump past each ttl at once, instead of the
// test waiting for it. A store on another clock (Redis's) must not use it.
func FakeTime() Option { return func(s *suite) { s.fakeTime = true } }

type suite struct {
	fakeTime bool
}

// Run runs the conformance suite, each behaviour in a parallel subtest of
// its own. newBackend returns a backend whose key space is that subtest's
// alone (an empty store, or a fresh key prefix); the suite writes keys
// shaped like the session manager's (SessionKey, LockKey).
func Run(t *testing.T, newBackend func(t *testing.T) Backend, opts ...Option) {
	var s suite
	for _, o := range opts {
		o(&s)
	}
	tests := []struct {
		name string
		run  func(t *testing.T, b Backend)
	}{
		{"MissingKeys", confMissingKeys},
		{"CreateGet", confCreateGet},
		{"CreateTaken", confCreateTaken},
		{"Update", confUpdate},
		{"Touch", confTouch},
		{"Delete", confDelete},
		{"BadTTL", confBadTTL},
		{"EntryExpires", confEntryExpires},
		{"LongLivedEntry", confLongLivedEntry},
		{"ConcurrentCreate", confConcurrentCreate},
		{"ConcurrentUpdate", confConcurrentUpdate},
		{"Lock", confLock},
		{"ConcurrentLock", confConcurrentLock},
		{"LockReader", confLockReader},
		{"LockExpires", confLockExpires},
		{"Claim", confClaim},
		{"ConcurrentClaim", confConcurrentClaim},
		{"ClaimExpires", confClaimExpires},
		{"Index", confIndex},
		{"IndexTTLNeverShortened", confIndexTTL},
		{"Ping", confPing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !s.fakeTime {
				tt.run(t, newBackend(t))
				return
			}
			synctest.Test(t, func(t *testing.T) { tt.run(t, bubbled{newBackend(t)}) })
		})
	}
}

// SessionKey returns a fresh key shaped like the key of a session record
// the manager writes: "s:{hash}", whose hash tag a Redis Cluster uses to
// place it.
func SessionKey(t *testing.T) string {
	t.Helper()
	return "s:{" + hashOf(fmt.Sprint(confID(t))) + "}"
}

// LockKey returns the key of the refresh lock of the session whose key
// SessionKey returned: "l:{hash}", with the same hash tag, so a Cluster
// keeps a session and its lock in one slot.
func LockKey(sessionKey string) string { return "l:" + sessionKey[len("s:"):] }

// claimKey and indexKey are shaped like the manager's used-login claims and
// back-channel indexes.
func claimKey(s string) string { return "us:" + hashOf(s) }
func indexKey(kind, issuer, value string) string {
	return "ix:" + kind + ":" + hashOf(issuer+"\x00"+value)
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// bubbled marks a backend built in a synctest bubble (FakeTime).
type bubbled struct{ Backend }

// afterExpiry lets d pass for b, then requires cond. In a synctest bubble
// (FakeTime) time jumps past d and cond must hold at once; on real time
// cond is polled until it holds, failing the test when d+confExpiryGrace
// has passed.
func afterExpiry(t *testing.T, b Backend, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if _, ok := b.(bubbled); ok {
		time.Sleep(d + time.Millisecond)
		if !cond() {
			t.Fatalf("%s: not so once %s had passed", what, d)
		}
		return
	}
	deadline := time.Now().Add(d + confExpiryGrace)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so %s after the ttl of %s", what, confExpiryGrace, d)
		}
		<-tick.C
	}
}

// confID returns a fresh random id.
func confID(t *testing.T) [16]byte {
	t.Helper()
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	return id
}

// Blob returns a record-sized binary blob of n bytes holding every byte
// value, including the ':' the Redis store uses as its version separator.
func Blob(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range min(n, 256) {
		b[i] = byte(i)
	}
	return b
}

// wantTTL checks that a reported ttl is what was set, allowing for the
// time the test itself took.
func wantTTL(t *testing.T, op string, got, set time.Duration) {
	t.Helper()
	if got <= 0 || got > set || got < set-10*time.Second {
		t.Errorf("%s: TTL = %s, want in (%s, %s]", op, got, set-10*time.Second, set)
	}
}

// confRace starts n goroutines at once, each running f(i), and returns their
// errors and boolean results.
func confRace[T any](n int, f func(i int) (T, error)) ([]T, []error) {
	results := make([]T, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return results, errs
}

func confMissingKeys(t *testing.T, b Backend) {
	ctx := context.Background()
	key := SessionKey(t)
	tests := []struct {
		op   string
		call func() error
		want error
	}{
		{"Get", func() error { _, err := b.Get(ctx, key); return err }, ErrNotFound},
		{"Update", func() error { _, err := b.Update(ctx, key, 1, []byte("x"), time.Hour); return err }, ErrNotFound},
		{"Touch", func() error { return b.Touch(ctx, key, time.Hour) }, ErrNotFound},
		{"Delete", func() error { return b.Delete(ctx, key) }, nil},
		{"Unlock", func() error { return b.Unlock(ctx, LockKey(key), "nobody") }, nil},
		{"Claimed", func() error {
			if used, err := b.Claimed(ctx, claimKey(fmt.Sprint(confID(t)))); used || err != nil {
				return fmt.Errorf("claimed %v, %w", used, err)
			}
			return nil
		}, nil},
		{"RemoveFromIndex", func() error { return b.RemoveFromIndex(ctx, indexKey("sid", "iss", "missing"), "a") }, nil},
		{"IndexMembers", func() error {
			got, err := b.IndexMembers(ctx, indexKey("sid", "iss", "missing"))
			if len(got) != 0 {
				return fmt.Errorf("members %q", got)
			}
			return err
		}, nil},
	}
	for _, tt := range tests {
		if err := tt.call(); !errors.Is(err, tt.want) {
			t.Errorf("%s on a missing key: %v, want %v", tt.op, err, tt.want)
		}
	}
}

func confCreateGet(t *testing.T, b Backend) {
	ctx := context.Background()
	tests := []struct {
		name string
		data []byte
	}{
		{"record-sized binary", Blob(t, 1843)},
		{"separator first", []byte(":1:2:")},
		{"digits", []byte("12345")},
		{"empty", []byte{}},
	}
	for _, tt := range tests {
		key := SessionKey(t)
		in := slices.Clone(tt.data)
		if err := b.Create(ctx, key, in, time.Hour); err != nil {
			t.Fatalf("%s: Create: %v", tt.name, err)
		}
		clear(in) // the store must have kept its own copy
		got, err := b.Get(ctx, key)
		if err != nil {
			t.Fatalf("%s: Get: %v", tt.name, err)
		}
		if !bytes.Equal(got.Data, tt.data) {
			t.Errorf("%s: Get data = %q, want %q", tt.name, got.Data, tt.data)
		}
		if got.Version != 1 {
			t.Errorf("%s: Get version = %d, want 1", tt.name, got.Version)
		}
		wantTTL(t, tt.name+": Get after Create", got.TTL, time.Hour)
	}
}

// LongTTL is the ttl of an entry that should outlive every session (the
// manager's KeyStore writes one for shared signing keys): ten years.
const LongTTL = 10 * 365 * 24 * time.Hour

// SharedKey returns a fresh key shaped like a KeyStore entry's, "k:<name>":
// no hash tag, a name rather than a hash.
func SharedKey(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("k:identity-assertion-keys-%d", confID(t))
}

// confLongLivedEntry pins what the manager's KeyStore relies on: an entry
// under a plain name, created and updated with compare-and-set and a ttl of
// ten years, keeps that ttl and its versions like any session entry.
func confLongLivedEntry(t *testing.T, b Backend) {
	ctx := context.Background()
	key := SharedKey(t)
	if err := b.Create(ctx, key, []byte("ring-1"), LongTTL); err != nil {
		t.Fatalf("Create with a ttl of %s: %v", LongTTL, err)
	}
	got, err := b.Get(ctx, key)
	if err != nil || string(got.Data) != "ring-1" || got.Version != 1 {
		t.Fatalf("Get = %q v%d, %v; want \"ring-1\" v1", got.Data, got.Version, err)
	}
	wantTTL(t, "Get after Create", got.TTL, LongTTL)
	if err := b.Create(ctx, key, []byte("other"), LongTTL); !errors.Is(err, ErrConflict) {
		t.Errorf("second Create = %v, want ErrConflict", err)
	}
	v, err := b.Update(ctx, key, 1, []byte("ring-2"), LongTTL)
	if err != nil || v != 2 {
		t.Fatalf("Update = %d, %v; want 2", v, err)
	}
	if _, err := b.Update(ctx, key, 1, []byte("stale"), LongTTL); !errors.Is(err, ErrConflict) {
		t.Errorf("Update of a stale version = %v, want ErrConflict", err)
	}
	got, err = b.Get(ctx, key)
	if err != nil || string(got.Data) != "ring-2" || got.Version != 2 {
		t.Fatalf("Get after Update = %q v%d, %v; want \"ring-2\" v2", got.Data, got.Version, err)
	}
	wantTTL(t, "Get after Update", got.TTL, LongTTL)
}

func confCreateTaken(t *testing.T, b Backend) {
	ctx := context.Background()
	key := SessionKey(t)
	if err := b.Create(ctx, key, []byte("first"), time.Hour); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := b.Create(ctx, key, []byte("second"), 2*time.Hour); !errors.Is(err, ErrConflict) {
		t.Errorf("second Create = %v, want ErrConflict", err)
	}
	got, err := b.Get(ctx, key)
	if err != nil || string(got.Data) != "first" || got.Version != 1 {
		t.Errorf("Get after refused Create = %q v%d, %v; want \"first\" v1", got.Data, got.Version, err)
	}
	wantTTL(t, "Get after refused Create", got.TTL, time.Hour)
}

func confUpdate(t *testing.T, b Backend) {
	ctx := context.Background()
	key := SessionKey(t)
	if err := b.Create(ctx, key, []byte("v1"), time.Hour); err != nil {
		t.Fatalf("Create: %v", err)
	}
	tests := []struct {
		version     uint64
		data        string
		wantVersion uint64
		wantErr     error
	}{
		{version: 1, data: "v2", wantVersion: 2},
		{version: 1, data: "stale", wantErr: ErrConflict},
		{version: 3, data: "future", wantErr: ErrConflict},
		{version: 0, data: "zero", wantErr: ErrConflict},
		{version: 2, data: "v3", wantVersion: 3},
		{version: 3, data: "v4", wantVersion: 4},
	}
	want := "v1"
	for _, tt := range tests {
		got, err := b.Update(ctx, key, tt.version, []byte(tt.data), 2*time.Hour)
		if got != tt.wantVersion || !errors.Is(err, tt.wantErr) {
			t.Errorf("Update(version %d, %q) = %d, %v; want %d, %v", tt.version, tt.data, got, err, tt.wantVersion, tt.wantErr)
		}
		if tt.wantErr == nil {
			want = tt.data
		}
		e, err := b.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if string(e.Data) != want {
			t.Errorf("after Update(version %d, %q): data %q, want %q", tt.version, tt.data, e.Data, want)
		}
	}
	e, err := b.Get(ctx, key)
	if err != nil || e.Version != 4 {
		t.Fatalf("final Get = v%d, %v; want v4", e.Version, err)
	}
	wantTTL(t, "Get after Update", e.TTL, 2*time.Hour)
}

func confTouch(t *testing.T, b Backend) {
	ctx := context.Background()
	key := SessionKey(t)
	if err := b.Create(ctx, key, []byte("data"), time.Hour); err != nil {
		t.Fatalf("Create: %v", err)
	}
	for _, ttl := range []time.Duration{3 * time.Hour, 30 * time.Minute} {
		if err := b.Touch(ctx, key, ttl); err != nil {
			t.Fatalf("Touch(%s): %v", ttl, err)
		}
		e, err := b.Get(ctx, key)
		if err != nil || string(e.Data) != "data" || e.Version != 1 {
			t.Fatalf("Get after Touch = %q v%d, %v; want \"data\" v1", e.Data, e.Version, err)
		}
		wantTTL(t, fmt.Sprintf("Get after Touch(%s)", ttl), e.TTL, ttl)
	}
}

func confDelete(t *testing.T, b Backend) {
	ctx := context.Background()
	key, other := SessionKey(t), SessionKey(t)
	for _, k := range []string{key, other} {
		if err := b.Create(ctx, k, []byte("data"), time.Hour); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	if err := b.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := b.Get(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := b.Delete(ctx, key); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
	if _, err := b.Get(ctx, other); err != nil {
		t.Errorf("Get of another key after Delete = %v, want it intact", err)
	}
	// A deleted key can be created again, at version 1.
	if err := b.Create(ctx, key, []byte("again"), time.Hour); err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
	if e, err := b.Get(ctx, key); err != nil || e.Version != 1 || string(e.Data) != "again" {
		t.Errorf("Get after re-Create = %q v%d, %v; want \"again\" v1", e.Data, e.Version, err)
	}
}

func confBadTTL(t *testing.T, b Backend) {
	ctx := context.Background()
	key := SessionKey(t)
	if err := b.Create(ctx, key, []byte("data"), time.Hour); err != nil {
		t.Fatalf("Create: %v", err)
	}
	for _, ttl := range []time.Duration{0, -time.Second} {
		calls := []struct {
			op  string
			err error
		}{
			{"Create", b.Create(ctx, SessionKey(t), []byte("x"), ttl)},
			{"Update", func() error { _, err := b.Update(ctx, key, 1, []byte("x"), ttl); return err }()},
			{"Touch", b.Touch(ctx, key, ttl)},
			{"TryLock", func() error { _, err := b.TryLock(ctx, LockKey(key), "o", ttl); return err }()},
			{"Claim", func() error { _, err := b.Claim(ctx, claimKey(fmt.Sprint(confID(t))), ttl); return err }()},
			{"AddToIndex", b.AddToIndex(ctx, indexKey("sid", "iss", "sid"), key, ttl)},
		}
		for _, c := range calls {
			if c.err == nil || errors.Is(c.err, ErrNotFound) || errors.Is(c.err, ErrConflict) {
				t.Errorf("%s with ttl %s = %v, want an error", c.op, ttl, c.err)
			}
		}
	}
	// Nothing was changed by the refused calls.
	if e, err := b.Get(ctx, key); err != nil || e.Version != 1 || string(e.Data) != "data" {
		t.Errorf("Get = %q v%d, %v; want \"data\" v1", e.Data, e.Version, err)
	}
	if ok, err := b.TryLock(ctx, LockKey(key), "o", time.Hour); !ok || err != nil {
		t.Errorf("TryLock after refused TryLock = %v, %v; want true", ok, err)
	}
}

func confEntryExpires(t *testing.T, b Backend) {
	ctx := context.Background()
	gone, touched, updated := SessionKey(t), SessionKey(t), SessionKey(t)
	for _, k := range []string{gone, touched, updated} {
		if err := b.Create(ctx, k, []byte("data"), confShortTTL); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	if err := b.Touch(ctx, touched, time.Hour); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	if _, err := b.Update(ctx, updated, 1, []byte("new"), time.Hour); err != nil {
		t.Fatalf("Update: %v", err)
	}
	afterExpiry(t, b, confShortTTL, "entry expired", func() bool {
		_, err := b.Get(ctx, gone)
		return errors.Is(err, ErrNotFound)
	})
	for _, op := range []struct {
		name string
		err  error
	}{
		{"Touch", b.Touch(ctx, gone, time.Hour)},
		{"Update", func() error { _, err := b.Update(ctx, gone, 1, []byte("x"), time.Hour); return err }()},
	} {
		if !errors.Is(op.err, ErrNotFound) {
			t.Errorf("%s of an expired entry = %v, want ErrNotFound", op.name, op.err)
		}
	}
	if err := b.Create(ctx, gone, []byte("again"), time.Hour); err != nil {
		t.Errorf("Create over an expired entry = %v, want nil", err)
	}
	for _, k := range []string{touched, updated} {
		if _, err := b.Get(ctx, k); err != nil {
			t.Errorf("Get of an entry whose ttl was extended = %v, want it alive", err)
		}
	}
}

func confConcurrentCreate(t *testing.T, b Backend) {
	ctx := context.Background()
	key := SessionKey(t)
	_, errs := confRace(50, func(i int) (struct{}, error) {
		return struct{}{}, b.Create(ctx, key, fmt.Appendf(nil, "creator %d", i), time.Hour)
	})
	winner := confOneWinner(t, errs, "Creates")
	e, err := b.Get(ctx, key)
	if want := fmt.Sprintf("creator %d", winner); err != nil || string(e.Data) != want || e.Version != 1 {
		t.Errorf("Get = %q v%d, %v; want %q v1", e.Data, e.Version, err, want)
	}
}

func confConcurrentUpdate(t *testing.T, b Backend) {
	ctx := context.Background()
	key := SessionKey(t)
	if err := b.Create(ctx, key, []byte("v1"), time.Hour); err != nil {
		t.Fatalf("Create: %v", err)
	}
	versions, errs := confRace(50, func(i int) (uint64, error) {
		return b.Update(ctx, key, 1, fmt.Appendf(nil, "writer %d", i), time.Hour)
	})
	winner := confOneWinner(t, errs, "Updates of version 1")
	if versions[winner] != 2 {
		t.Errorf("winning Update returned version %d, want 2", versions[winner])
	}
	e, err := b.Get(ctx, key)
	if want := fmt.Sprintf("writer %d", winner); err != nil || string(e.Data) != want || e.Version != 2 {
		t.Errorf("Get = %q v%d, %v; want %q v2", e.Data, e.Version, err, want)
	}
}

func confLock(t *testing.T, b Backend) {
	ctx := context.Background()
	key := LockKey(SessionKey(t))
	steps := []struct {
		op    string // "lock" or "unlock"
		owner string
		want  bool // for lock: taken
	}{
		{"lock", "alice", true},
		{"lock", "bob", false},
		{"lock", "alice", false}, // not reentrant
		{"unlock", "bob", false}, // not the owner: a no-op
		{"lock", "bob", false},
		{"unlock", "alice", false},
		{"lock", "bob", true},
		{"unlock", "alice", false}, // alice no longer owns it
		{"lock", "carol", false},
		{"unlock", "bob", false},
		{"unlock", "bob", false}, // already free: a no-op
		{"lock", "carol", true},
	}
	for i, s := range steps {
		switch s.op {
		case "lock":
			got, err := b.TryLock(ctx, key, s.owner, time.Hour)
			if err != nil || got != s.want {
				t.Fatalf("step %d: TryLock(%s) = %v, %v; want %v", i, s.owner, got, err, s.want)
			}
		case "unlock":
			if err := b.Unlock(ctx, key, s.owner); err != nil {
				t.Fatalf("step %d: Unlock(%s) = %v", i, s.owner, err)
			}
		}
	}
}

func confConcurrentLock(t *testing.T, b Backend) {
	ctx := context.Background()
	key := LockKey(SessionKey(t))
	got, errs := confRace(50, func(i int) (bool, error) {
		return b.TryLock(ctx, key, fmt.Sprintf("owner-%d", i), time.Hour)
	})
	holders := 0
	holder := -1
	for i := range got {
		if errs[i] != nil {
			t.Errorf("TryLock %d: %v", i, errs[i])
		}
		if got[i] {
			holders++
			holder = i
		}
	}
	if holders != 1 {
		t.Fatalf("50 concurrent TryLocks: %d took the lock, want 1", holders)
	}
	// Everyone but the holder unlocking changes nothing.
	for i := range 50 {
		if i != holder {
			if err := b.Unlock(ctx, key, fmt.Sprintf("owner-%d", i)); err != nil {
				t.Fatalf("Unlock by non-owner %d: %v", i, err)
			}
		}
	}
	if ok, err := b.TryLock(ctx, key, "late", time.Hour); ok || err != nil {
		t.Errorf("TryLock after non-owners unlocked = %v, %v; want false, nil", ok, err)
	}
}

// confLockReader: a backend that offers TryLockGet takes the lock as
// TryLock does and reads the entry as Get does, in that order.
func confLockReader(t *testing.T, b Backend) {
	inner := b
	if bb, ok := b.(bubbled); ok {
		inner = bb.Backend
	}
	lr, ok := inner.(storage.LockReader)
	if !ok {
		t.Skip("the backend does not offer storage.LockReader")
	}
	ctx := context.Background()
	key := SessionKey(t)
	lock := LockKey(key)
	if locked, _, err := lr.TryLockGet(ctx, lock, "alice", time.Hour, key); !locked || !errors.Is(err, ErrNotFound) {
		t.Fatalf("TryLockGet without an entry = %v, %v; want true, ErrNotFound", locked, err)
	}
	data := Blob(t, 300)
	if err := b.Create(ctx, key, data, time.Hour); err != nil {
		t.Fatal(err)
	}
	locked, e, err := lr.TryLockGet(ctx, lock, "bob", time.Hour, key)
	if locked || err != nil || !bytes.Equal(e.Data, data) || e.Version != 1 {
		t.Fatalf("TryLockGet of a held lock = %v, v%d, %v; want false and the entry at v1", locked, e.Version, err)
	}
	wantTTL(t, "TryLockGet", e.TTL, time.Hour)
	if err := b.Unlock(ctx, lock, "alice"); err != nil {
		t.Fatal(err)
	}
	if v, err := b.Update(ctx, key, 1, data[:10], time.Hour); err != nil || v != 2 {
		t.Fatalf("Update = %d, %v", v, err)
	}
	locked, e, err = lr.TryLockGet(ctx, lock, "bob", time.Hour, key)
	if !locked || err != nil || !bytes.Equal(e.Data, data[:10]) || e.Version != 2 {
		t.Fatalf("TryLockGet of a free lock = %v, v%d, %v; want true and the entry at v2", locked, e.Version, err)
	}
	if ok, err := b.TryLock(ctx, lock, "carol", time.Hour); ok || err != nil {
		t.Errorf("TryLock after TryLockGet took it = %v, %v; want false, nil", ok, err)
	}
	if _, _, err := lr.TryLockGet(ctx, lock, "bob", 0, key); err == nil {
		t.Errorf("TryLockGet with ttl 0 = nil error, want one")
	}
}

func confLockExpires(t *testing.T, b Backend) {
	ctx := context.Background()
	key := LockKey(SessionKey(t))
	if ok, err := b.TryLock(ctx, key, "ghost", confShortTTL); !ok || err != nil {
		t.Fatalf("TryLock = %v, %v; want true", ok, err)
	}
	if ok, err := b.TryLock(ctx, key, "waiter", time.Hour); ok || err != nil {
		t.Fatalf("TryLock while held = %v, %v; want false", ok, err)
	}
	afterExpiry(t, b, confShortTTL, "lock free after its ttl", func() bool {
		ok, err := b.TryLock(ctx, key, "waiter", time.Hour)
		if err != nil {
			t.Fatalf("TryLock: %v", err)
		}
		return ok
	})
	// The ghost's late Unlock must not free the waiter's lock.
	if err := b.Unlock(ctx, key, "ghost"); err != nil {
		t.Fatalf("Unlock by the expired owner: %v", err)
	}
	if ok, err := b.TryLock(ctx, key, "third", time.Hour); ok || err != nil {
		t.Errorf("TryLock after the expired owner's Unlock = %v, %v; want false", ok, err)
	}
}

// confClaim: a claim is recorded once; claiming it again, or another key
// that hashes nearby, answers what is recorded.
func confClaim(t *testing.T, b Backend) {
	ctx := context.Background()
	key := claimKey("state-" + fmt.Sprint(confID(t)))
	other := claimKey("other-" + fmt.Sprint(confID(t)))
	steps := []struct {
		key  string
		want bool
	}{
		{key, true},
		{key, false},
		{other, true},
		{key, false},
		{other, false},
	}
	for i, s := range steps {
		if used, err := b.Claimed(ctx, s.key); err != nil || used == s.want {
			t.Fatalf("step %d: Claimed = %v, %v; want %v", i, used, err, !s.want)
		}
		if got, err := b.Claim(ctx, s.key, time.Hour); err != nil || got != s.want {
			t.Fatalf("step %d: Claim = %v, %v; want %v", i, got, err, s.want)
		}
		if used, err := b.Claimed(ctx, s.key); err != nil || !used {
			t.Fatalf("step %d: Claimed after Claim = %v, %v; want true", i, used, err)
		}
	}
}

func confConcurrentClaim(t *testing.T, b Backend) {
	ctx := context.Background()
	key := claimKey("state-" + fmt.Sprint(confID(t)))
	got, errs := confRace(50, func(int) (bool, error) { return b.Claim(ctx, key, time.Hour) })
	winners := 0
	for i, ok := range got {
		if errs[i] != nil {
			t.Errorf("Claim %d: %v", i, errs[i])
		}
		if ok {
			winners++
		}
	}
	if winners != 1 {
		t.Errorf("50 concurrent Claims: %d recorded it, want 1", winners)
	}
}

// confClaimExpires: a claim lives its ttl and no longer, so the store holds
// claims only for login states that could still be presented.
func confClaimExpires(t *testing.T, b Backend) {
	ctx := context.Background()
	key := claimKey("state-" + fmt.Sprint(confID(t)))
	if ok, err := b.Claim(ctx, key, confShortTTL); !ok || err != nil {
		t.Fatalf("Claim = %v, %v; want true", ok, err)
	}
	if ok, err := b.Claim(ctx, key, time.Hour); ok || err != nil {
		t.Fatalf("Claim while recorded = %v, %v; want false", ok, err)
	}
	afterExpiry(t, b, confShortTTL, "claim gone after its ttl", func() bool {
		used, err := b.Claimed(ctx, key)
		if err != nil || used {
			return false
		}
		ok, err := b.Claim(ctx, key, time.Hour)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		return ok
	})
}

func confIndex(t *testing.T, b Backend) {
	ctx := context.Background()
	index := indexKey("sid", "https://issuer.example", "sid-"+fmt.Sprint(confID(t)))
	other := indexKey("sub", "https://issuer.example", "sub-"+fmt.Sprint(confID(t)))
	steps := []struct {
		add, remove []string
		want        []string
	}{
		{add: []string{"c", "a", "b"}, want: []string{"a", "b", "c"}},
		{add: []string{"a"}, want: []string{"a", "b", "c"}},
		{remove: []string{"a", "c", "not-a-member"}, want: []string{"b"}},
		{remove: []string{}, want: []string{"b"}},
		{remove: []string{"b"}, want: nil},
		{add: []string{"d"}, want: []string{"d"}},
	}
	for i, s := range steps {
		for _, m := range s.add {
			if err := b.AddToIndex(ctx, index, m, time.Hour); err != nil {
				t.Fatalf("step %d: AddToIndex(%s): %v", i, m, err)
			}
		}
		if s.remove != nil {
			if err := b.RemoveFromIndex(ctx, index, s.remove...); err != nil {
				t.Fatalf("step %d: RemoveFromIndex(%q): %v", i, s.remove, err)
			}
		}
		got, err := b.IndexMembers(ctx, index)
		if err != nil || !slices.Equal(got, s.want) {
			t.Fatalf("step %d: IndexMembers = %q, %v; want %q", i, got, err, s.want)
		}
	}
	if got, err := b.IndexMembers(ctx, other); err != nil || len(got) != 0 {
		t.Errorf("IndexMembers of another index = %q, %v; want empty", got, err)
	}
}

func confIndexTTL(t *testing.T, b Backend) {
	ctx := context.Background()
	id := fmt.Sprint(confID(t))
	shortened := indexKey("sid", "iss", "shortened-"+id) // long, then short
	extended := indexKey("sid", "iss", "extended-"+id)   // short, then long
	control := indexKey("sid", "iss", "control-"+id)     // short only
	adds := []struct {
		index, member string
		ttl           time.Duration
	}{
		{shortened, "a", time.Hour},
		{shortened, "b", confShortTTL},
		{extended, "a", confShortTTL},
		{extended, "b", time.Hour},
		{control, "a", confShortTTL},
	}
	for _, a := range adds {
		if err := b.AddToIndex(ctx, a.index, a.member, a.ttl); err != nil {
			t.Fatalf("AddToIndex: %v", err)
		}
	}
	afterExpiry(t, b, confShortTTL, "index with a short ttl expired", func() bool {
		got, err := b.IndexMembers(ctx, control)
		if err != nil {
			t.Fatalf("IndexMembers: %v", err)
		}
		return len(got) == 0
	})
	for _, index := range []string{shortened, extended} {
		got, err := b.IndexMembers(ctx, index)
		if want := []string{"a", "b"}; err != nil || !slices.Equal(got, want) {
			t.Errorf("IndexMembers after the short ttl = %q, %v; want %q (a longer ttl was asked for)", got, err, want)
		}
	}
}

func confPing(t *testing.T, b Backend) {
	if err := b.Ping(context.Background()); err != nil {
		t.Errorf("Ping = %v, want nil", err)
	}
}

// confOneWinner checks that exactly one of concurrent writes succeeded and
// every other one got ErrConflict, and returns the winner's index.
func confOneWinner(t *testing.T, errs []error, what string) int {
	t.Helper()
	winners, conflicts, winner := 0, 0, -1
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
			winner = i
		case errors.Is(err, ErrConflict):
			conflicts++
		default:
			t.Errorf("%s, call %d: %v", what, i, err)
		}
	}
	if winners != 1 || conflicts != len(errs)-1 {
		t.Fatalf("%d concurrent %s: %d won, %d conflicts; want 1, %d", len(errs), what, winners, conflicts, len(errs)-1)
	}
	return winner
}
