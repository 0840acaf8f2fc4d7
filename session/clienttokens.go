package session

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
)

// Client tokens: tokenrelay's own access tokens (client credentials, RFC
// 6749 §4.4), one per route target, for routes that call an API with the
// application's identity rather than a user's. They are no session's: a
// replica keeps each in memory and in the store (sealed under the server
// secret, so every replica opens it), and renews it RefreshAhead before it
// expires, once across replicas: the requests of a process share one
// renewal (single flight), and replicas serialise on the target's store
// lock, each re-reading the store after locking and taking a token another
// replica saved. A still-valid token is served while it is renewed in the
// background; a request whose token has expired waits at most
// RefreshTimeout. Asking again spends nothing, so a lost answer is simply
// asked again; a failure holds the target for FailureBackoff in this
// process.

// ClientGrant obtains tokenrelay's own access token of a target, bound to
// key when it is set (DPoP). *idp.Provider implements it.
type ClientGrant interface {
	ClientCredentials(ctx context.Context, target idp.Target, key *idp.DPoPKey) (*idp.Token, error)
}

// clientToken is one client token as kept in memory and in the store.
type clientToken struct {
	value    secret.String
	expiry   time.Time
	obtained time.Time
}

// clientTokens hands out client tokens. It is safe for concurrent use.
type clientTokens struct {
	rs    *records
	grant ClientGrant
	// key binds the tokens (DPoP); nil for Bearer. Every replica derives
	// the same key from the server secret, so a token another replica
	// obtained is bound to the key this one proves.
	key *idp.DPoPKey

	ahead, timeout, lockTTL, backoff, minForced time.Duration

	mu    sync.Mutex // guards cache
	cache map[string]clientToken
	// flights shares one renewal per target in this process.
	flights singleflight.Group
	holds   targetHolds
}

// clientKeyInfo derives the client tokens' DPoP key from the server
// secret.
const clientKeyInfo = "tokenrelay client dpop key v1"

// newClientTokens builds the client tokens of grant over rs; dpop binds
// them to a key derived from secret.
func newClientTokens(rs *records, grant ClientGrant, secret []byte, dpop bool, o RefreshOptions) (*clientTokens, error) {
	c := &clientTokens{
		rs: rs, grant: grant, cache: map[string]clientToken{},
		ahead: o.Ahead, timeout: o.Timeout, lockTTL: o.LockTTL, backoff: o.FailureBackoff, minForced: o.MinInterval,
	}
	if dpop {
		// A P-256 scalar must be below the group order: a 32-byte HKDF
		// output is, but for a chance of about 2^-32; the next counter
		// value then gives another.
		for i := byte(0); c.key == nil; i++ {
			raw, err := hkdf.Key(sha256.New, secret, []byte{i}, clientKeyInfo, idp.DPoPKeySize)
			if err != nil {
				return nil, fmt.Errorf("session: client dpop key: %w", err)
			}
			c.key, _ = idp.ParseDPoPKey(raw)
		}
	}
	return c, nil
}

// token returns the client token of target, renewing it when it is stale
// (in the background), expired, or rejected (the upstream answered 401 to
// it, and it was obtained MinInterval ago). Errors: *UnavailableError
// (transient; wrapping ErrClientRejected when the provider refuses the
// client), ErrTokenRefused, ErrStoreUnavailable.
func (c *clientTokens) token(ctx context.Context, target idp.Target, rejected secret.String) (AccessToken, error) {
	tkey, now := target.Key(), c.rs.now()
	cur, ok := c.cached(tkey)
	state := tokenExpired
	if ok {
		state = classify(cur.expiry, now, c.ahead)
	}
	forced := !rejected.IsZero() && rejected == cur.value && !now.Before(cur.obtained.Add(c.minForced))
	answer := AccessToken{Value: cur.value, Expiry: cur.expiry, DPoP: c.key}
	if state == tokenFresh && !forced {
		return answer, nil
	}
	if until, held := c.holds.held(tkey, now); held {
		if state != tokenExpired && !forced {
			return answer, nil
		}
		return AccessToken{}, &UnavailableError{RetryAfter: until.Sub(now), Err: errBackoff}
	}
	ch := c.flights.DoChan(tkey, func() (any, error) {
		return c.renew(context.WithoutCancel(ctx), target, rejected), nil
	})
	if state == tokenStale && !forced {
		return answer, nil
	}
	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return AccessToken{}, fmt.Errorf("session: client token: %w", ctx.Err())
	case <-timer.C:
		return AccessToken{}, &UnavailableError{RetryAfter: retrySoon, Err: errRefreshSlow}
	case res := <-ch:
		o := res.Val.(outcome)
		if o.err != nil && !(o.fallback && o.tok.Value != rejected) {
			return AccessToken{}, o.err
		}
		return o.tok, nil
	}
}

func (c *clientTokens) cached(tkey string) (clientToken, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.cache[tkey]
	return t, ok
}

func (c *clientTokens) remember(tkey string, t clientToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cache[tkey] = t
}

// fresh reports whether t may be handed out instead of renewing: fresh,
// and not the token the upstream rejected.
func (c *clientTokens) fresh(t clientToken, rejected secret.String) bool {
	return classify(t.expiry, c.rs.now(), c.ahead) == tokenFresh && (rejected.IsZero() || t.value != rejected)
}

// renew takes the token another replica saved, or the target's lock and a
// new token under it. It runs on its own context.
func (c *clientTokens) renew(ctx context.Context, target idp.Target, rejected secret.String) outcome {
	tkey := target.Key()
	ctx, cancel := context.WithTimeout(ctx, c.lockTTL)
	defer cancel()
	owner, err := newOwner()
	if err != nil {
		return outcome{err: err}
	}
	stored, version, locked, err := c.acquire(ctx, tkey, owner, rejected)
	switch {
	case err != nil:
		return c.fallback(tkey, err)
	case !locked:
		c.remember(tkey, stored)
		return outcome{tok: c.answer(stored, true), shared: true}
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = c.rs.store.Unlock(uctx, clientLockKey(tkey), owner)
	}()
	// Re-read under the lock: another replica may have saved just before.
	if t, v, err := c.load(ctx, tkey); err == nil && c.fresh(t, rejected) {
		c.remember(tkey, t)
		return outcome{tok: c.answer(t, true), shared: true}
	} else if err == nil {
		version = v
	}
	return c.obtain(ctx, target, version)
}

// acquire returns a fresh token another replica saved (locked false), or
// takes the target's lock. It waits at most RefreshTimeout, watching the
// store with jittered backoff.
func (c *clientTokens) acquire(ctx context.Context, tkey, owner string, rejected secret.String) (clientToken, uint64, bool, error) {
	deadline := time.Now().Add(c.timeout)
	wait := pollMin
	for {
		t, version, err := c.load(ctx, tkey)
		if err == nil && c.fresh(t, rejected) {
			return t, version, false, nil
		}
		ok, err := c.rs.store.TryLock(ctx, clientLockKey(tkey), owner, c.lockTTL)
		if err != nil {
			return clientToken{}, 0, false, c.rs.storeErr(ctx, opLock, err)
		}
		if ok {
			return clientToken{}, version, true, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return clientToken{}, 0, false, &UnavailableError{RetryAfter: retrySoon, Err: errLockWait}
		}
		time.Sleep(min(wait/2+mrand.N(wait/2+1), left))
		wait = min(2*wait, pollMax)
	}
}

// load reads the target's token from the store; version 0 and
// ErrNotFound when there is none, or none that opens.
func (c *clientTokens) load(ctx context.Context, tkey string) (clientToken, uint64, error) {
	key := clientTokenKey(tkey)
	e, err := c.rs.store.Get(ctx, key)
	if err != nil {
		return clientToken{}, 0, err
	}
	plain, err := c.rs.seal.openClient(key, e.Data)
	if err != nil {
		return clientToken{}, e.Version, ErrNotFound
	}
	d := decoder{b: plain}
	t := clientToken{value: d.token(), expiry: d.time(), obtained: d.time()}
	if d.done() != nil {
		return clientToken{}, e.Version, ErrNotFound
	}
	return t, e.Version, nil
}

// obtain asks the provider for a new token and saves it over version (0:
// none stored), holding the lock.
func (c *clientTokens) obtain(ctx context.Context, target idp.Target, version uint64) outcome {
	tkey := target.Key()
	start := c.rs.now()
	tok, err := c.grant.ClientCredentials(ctx, target, c.key)
	if err == nil && (tok == nil || tok.AccessToken.IsZero()) {
		err = errNoAccessToken
	}
	if err != nil {
		return c.failed(ctx, target, err)
	}
	c.rs.met.grants.WithLabelValues(grantClientCredentials, grantSuccess).Inc()
	t := clientToken{value: tok.AccessToken, expiry: tok.Expiry, obtained: start}
	c.remember(tkey, t)
	if err := c.save(ctx, tkey, version, t); err != nil {
		// This replica has the token; the others ask for their own.
		c.rs.log.LogAttrs(ctx, slog.LevelWarn, "client token not saved for the other replicas", slog.String("target", target.String()), slog.Any("error", err))
	}
	return outcome{tok: c.answer(t, true)}
}

// save seals t into the store, to live until it expires.
func (c *clientTokens) save(ctx context.Context, tkey string, version uint64, t clientToken) error {
	ttl := t.expiry.Sub(c.rs.now())
	if ttl <= 0 {
		return nil
	}
	e := encoder{}
	e.token(t.value)
	e.time(t.expiry)
	e.time(t.obtained)
	key := clientTokenKey(tkey)
	data, err := c.rs.seal.sealClient(key, e.b)
	if err != nil {
		return err
	}
	if version == 0 {
		err = c.rs.store.Create(ctx, key, data, ttl)
	} else {
		_, err = c.rs.store.Update(ctx, key, version, data, ttl)
	}
	if err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotFound) {
		return c.rs.storeErr(ctx, opUpdate, err)
	}
	return nil
}

// failed holds the target for FailureBackoff (longer when the provider's
// Retry-After says so) and says why.
func (c *clientTokens) failed(ctx context.Context, target idp.Target, cause error) outcome {
	var te *idp.TokenError
	errors.As(cause, &te)
	retry := c.backoff
	if te != nil {
		retry = max(retry, te.RetryAfter)
	}
	c.holds.hold(target.Key(), c.rs.now().Add(retry))
	c.rs.log.LogAttrs(ctx, slog.LevelWarn, "client credentials grant failed", slog.String("target", target.String()), slog.Duration("retry_after", retry), slog.Any("error", cause))
	var err error
	switch {
	case targetRefused(te):
		c.rs.met.grants.WithLabelValues(grantClientCredentials, grantRefused).Inc()
		err = fmt.Errorf("session: client token for %s: %w: %w", target, ErrTokenRefused, cause)
	case errors.Is(cause, idp.ErrClientRejected):
		c.rs.met.grants.WithLabelValues(grantClientCredentials, grantRefused).Inc()
		err = &UnavailableError{RetryAfter: retry, Err: fmt.Errorf("%w: %w", ErrClientRejected, cause)}
	default:
		c.rs.met.grants.WithLabelValues(grantClientCredentials, grantFailed).Inc()
		err = &UnavailableError{RetryAfter: retry, Err: cause}
	}
	return c.fallback(target.Key(), err)
}

// fallback hands out the cached token along with err while it is valid.
func (c *clientTokens) fallback(tkey string, err error) outcome {
	cur, ok := c.cached(tkey)
	var ue *UnavailableError
	if ok && errors.As(err, &ue) && classify(cur.expiry, c.rs.now(), c.ahead) != tokenExpired {
		return outcome{tok: c.answer(cur, false), err: err, fallback: true}
	}
	return outcome{err: err}
}

func (c *clientTokens) answer(t clientToken, renewed bool) AccessToken {
	return AccessToken{Value: t.value, Expiry: t.expiry, Refreshed: renewed, DPoP: c.key}
}
