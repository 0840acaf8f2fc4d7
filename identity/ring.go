package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
)

// DefaultKeyName is the name the key ring is stored under.
const DefaultKeyName = "identity-assertion-keys"

// maintenanceTimeout bounds one look at the store (load, and store when
// rotating).
const maintenanceTimeout = 5 * time.Second

// reloadInterval is how often a ring looks at the store between
// rotations, so a replica adopts keys another one stored (after the store
// lost them) within the JWKS cache lifetime.
const reloadInterval = 5 * time.Minute

// retryAfterFailure is how soon a ring that failed to reach the store tries
// again. It keeps signing with the keys it has meanwhile.
const retryAfterFailure = time.Minute

// never is later than any time the ring meets.
var never = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// KeyRingConfig is what NewKeyRing needs.
type KeyRingConfig struct {
	Options AssertionOptions
	// Store and Secret are needed unless Options.KeyFile is set: the
	// generated keys are kept in Store, sealed under a key derived from
	// Secret (the server secret, at least 32 bytes).
	Store  KeyStore
	Secret []byte
	// PreviousSecrets still open a ring sealed before a secret rotation
	// (session.previous_secrets); the ring is sealed with Secret at its
	// next rotation.
	PreviousSecrets [][]byte
	// Name is the store key; default DefaultKeyName.
	Name string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Logger reports store failures (nil: discard).
	Logger *slog.Logger
}

// KeyRing holds the assertion signing keys: one from a file, or generated
// keys kept in a KeyStore and rotated. It serves the JWKS. Its methods are
// safe for concurrent use.
//
// Rotation of generated keys: a key signs from its sign_from time for
// Rotation. PublishAhead before its period ends, the first replica to
// notice stores the next key, signing from the end of the period, so the
// JWKS lists it PublishAhead before any assertion uses it. A key leaves the
// JWKS twice the assertion lifetime after its successor took over: every
// assertion it signed has expired by then, even from a replica whose clock
// is one lifetime behind. Between rotations a ring rereads the store every
// reloadInterval, so replicas agree again after the store lost the ring.
type KeyRing struct {
	opts   AssertionOptions
	store  KeyStore
	seal   *sealer
	name   string
	now    func() time.Time
	logger *slog.Logger

	state atomic.Pointer[ringState]
	// mu serialises maintenance; requests never wait on it (TryLock).
	mu sync.Mutex
}

// ringState is an immutable view of the ring.
type ringState struct {
	keys    []*signingKey // ascending sign_from
	version uint64        // the store's version of keys
	// due is when the ring must look at the store again: the start of
	// the next rotation, the next periodic reload, or a retry after a
	// failure. Zero: never (a key from a file).
	due time.Time
	// jwks caches the rendered JWKS and the time it stops being right
	// (the next retirement).
	jwks atomic.Pointer[renderedJWKS]
}

type renderedJWKS struct {
	body  []byte
	until time.Time
}

// NewKeyRing loads the key file, or loads the stored ring (creating it when
// the store has none), rotating it when due. It fails when the store cannot
// be reached: tokenrelay cannot sign assertions without keys.
func NewKeyRing(ctx context.Context, cfg KeyRingConfig) (*KeyRing, error) {
	r := &KeyRing{opts: cfg.Options.withDefaults(), store: cfg.Store, name: cfg.Name, now: cfg.Now, logger: cfg.Logger}
	if r.now == nil {
		r.now = time.Now
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	if r.name == "" {
		r.name = DefaultKeyName
	}
	if r.opts.KeyFile != "" {
		keys, err := loadKeyFiles(r.opts.KeyFile, r.opts.PreviousKeyFile, cfg.Options.Algorithm)
		if err != nil {
			return nil, err
		}
		r.state.Store(&ringState{keys: keys})
		return r, nil
	}
	if cfg.Store == nil {
		return nil, errors.New("identity: generated keys need a key store")
	}
	seal, err := newSealer(cfg.Secret, cfg.PreviousSecrets)
	if err != nil {
		return nil, err
	}
	r.seal = seal
	if err := r.maintain(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// loadKeyFiles reads the key file and, when set, the previous key file,
// whose key is published before it (ascending age, as a ring keeps them).
func loadKeyFiles(keyFile, previousFile, alg string) ([]*signingKey, error) {
	k, err := loadKeyFile(keyFile, alg)
	if err != nil {
		return nil, fmt.Errorf("identity: key file %s: %w", keyFile, err)
	}
	if previousFile == "" {
		return []*signingKey{k}, nil
	}
	prev, err := loadPreviousKeyFile(previousFile)
	if err != nil {
		return nil, fmt.Errorf("identity: previous key file %s: %w", previousFile, err)
	}
	if prev.id == k.id {
		return []*signingKey{k}, nil
	}
	return []*signingKey{prev, k}, nil
}

// current returns the ring's state, first bringing it up to date with the
// store when due. A failure keeps the keys the ring has.
func (r *KeyRing) current(ctx context.Context) *ringState {
	st := r.state.Load()
	if st.due.IsZero() || r.now().Before(st.due) || !r.mu.TryLock() {
		return st
	}
	defer r.mu.Unlock()
	if st = r.state.Load(); r.now().Before(st.due) {
		return st // another request did it meanwhile
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), maintenanceTimeout)
	defer cancel()
	if err := r.maintainLocked(ctx); err != nil {
		r.logger.Warn("identity: signing keys not refreshed; still using the current ones", "retry_in", retryAfterFailure, "err", err)
		next := &ringState{keys: st.keys, version: st.version, due: r.now().Add(retryAfterFailure)}
		r.state.Store(next)
		return next
	}
	return r.state.Load()
}

// maintain is maintainLocked under mu.
func (r *KeyRing) maintain(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maintainLocked(ctx)
}

// maintainLocked loads the stored ring and, when the newest key's period
// is near its end, stores the next key. A lost compare-and-set (another
// replica rotated first) reloads and looks again. When the store has lost
// the ring (a flushed Redis), the keys this replica holds are stored
// again rather than new ones, so assertions already out still verify.
func (r *KeyRing) maintainLocked(ctx context.Context) error {
	for range 3 {
		stored, version, err := r.load(ctx)
		if err != nil {
			return err
		}
		keys, now := stored, r.now()
		if keys == nil {
			if st := r.state.Load(); st != nil {
				keys = st.keys
			}
		}
		fresh := len(keys) > 0 && now.Before(r.rotateAt(keys))
		if fresh && stored != nil {
			due := r.rotateAt(keys)
			if reload := now.Add(reloadInterval); reload.Before(due) {
				due = reload
			}
			r.state.Store(&ringState{keys: keys, version: version, due: due})
			return nil
		}
		if !fresh {
			if keys, err = r.rotated(keys, now); err != nil {
				return err
			}
		}
		ok, err := r.save(ctx, version, keys)
		if err != nil {
			return err
		}
		if ok && !fresh {
			newest := keys[len(keys)-1]
			r.logger.Info("identity: new assertion signing key", "kid", newest.id, "signs_from", newest.signFrom)
		}
	}
	return errors.New("identity: the stored signing keys keep changing; giving up for now")
}

// rotateAt is when the next key must be stored: PublishAhead before the
// newest key's period ends.
func (r *KeyRing) rotateAt(keys []*signingKey) time.Time {
	return keys[len(keys)-1].signFrom.Add(r.opts.Rotation - r.opts.PublishAhead)
}

// rotated returns keys with a new key appended and retired keys dropped.
// The new key signs at the end of the newest key's period, or
// PublishAhead from now if that is later (a ring nobody used for a while,
// or a new one: its first key signs at once, there being none before it).
func (r *KeyRing) rotated(keys []*signingKey, now time.Time) ([]*signingKey, error) {
	signFrom := now
	if len(keys) > 0 {
		signFrom = keys[len(keys)-1].signFrom.Add(r.opts.Rotation)
		if earliest := now.Add(r.opts.PublishAhead); signFrom.Before(earliest) {
			signFrom = earliest
		}
	}
	priv, err := generateKey(r.opts.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	k, err := newSigningKey(priv, signFrom.Truncate(time.Second))
	if err != nil {
		return nil, err
	}
	var kept []*signingKey
	for i, old := range keys {
		if now.Before(r.retireAt(keys, i)) {
			kept = append(kept, old)
		}
	}
	return append(kept, k), nil
}

// retireAt is when keys[i] leaves the JWKS: twice the assertion lifetime
// after the next key took over; never for the newest key, nor for keys
// from files, which leave when the operator removes the file.
func (r *KeyRing) retireAt(keys []*signingKey, i int) time.Time {
	if i == len(keys)-1 || r.opts.KeyFile != "" {
		return never
	}
	return keys[i+1].signFrom.Add(2 * r.opts.Lifetime)
}

func (r *KeyRing) load(ctx context.Context) ([]*signingKey, uint64, error) {
	blob, version, err := r.store.LoadKeys(ctx, r.name)
	if err != nil {
		return nil, 0, fmt.Errorf("identity: load signing keys: %w", err)
	}
	if blob == nil {
		return nil, version, nil
	}
	plain, err := r.seal.open(r.name, blob)
	if err != nil {
		return nil, 0, err
	}
	keys, err := decodeRing(plain)
	if err != nil {
		return nil, 0, fmt.Errorf("identity: stored signing keys: %w", err)
	}
	return keys, version, nil
}

func (r *KeyRing) save(ctx context.Context, version uint64, keys []*signingKey) (bool, error) {
	plain, err := encodeRing(keys)
	if err != nil {
		return false, fmt.Errorf("identity: encode signing keys: %w", err)
	}
	ok, err := r.store.StoreKeys(ctx, r.name, version, r.seal.seal(r.name, plain))
	if err != nil {
		return false, fmt.Errorf("identity: store signing keys: %w", err)
	}
	return ok, nil
}

// signingKey returns the key that signs now: the newest one whose period
// has begun.
func (st *ringState) signingKey(now time.Time) *signingKey {
	for i := len(st.keys) - 1; i > 0; i-- {
		if !now.Before(st.keys[i].signFrom) {
			return st.keys[i]
		}
	}
	return st.keys[0]
}

// JWKS renders the public keys an upstream verifies assertions with: the
// signing key, the next one when already published, and previous ones
// until they retire. The document is cached until it next changes; the
// caller must not modify it.
func (r *KeyRing) JWKS(ctx context.Context) []byte {
	st := r.current(ctx)
	now := r.now()
	if c := st.jwks.Load(); c != nil && now.Before(c.until) {
		return c.body
	}
	doc := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	until := never
	for i, k := range st.keys {
		retire := r.retireAt(st.keys, i)
		if !now.Before(retire) {
			continue
		}
		if retire.Before(until) {
			until = retire
		}
		doc.Keys = append(doc.Keys, k.jwk)
	}
	body, _ := json.Marshal(doc) // plain strings: cannot fail
	st.jwks.Store(&renderedJWKS{body: body, until: until})
	return body
}
