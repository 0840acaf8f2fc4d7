package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
)

// The refresh engine. For one session, at most one refresh is in flight
// across all replicas, and no refresh token is ever sent twice:
//
//  1. AccessToken loads the record and classifies its access token.
//  2. Requests of one session in this process share one flight
//     (singleflight). The flight runs on its own context, so a request that
//     gives up does not cancel it for the others.
//  3. The flight takes the session's lock in the store (TryLock with a random
//     owner and LockTTL > RefreshTimeout). Without it, it watches the record's
//     version with jittered backoff until another replica's refresh lands,
//     the lock frees, or LockTTL passes.
//  4. Holding the lock, it reloads: if the record changed since step 1,
//     another refresh won and its tokens are used.
//  5. It calls the token endpoint, saves with compare-and-set, unlocks.
//  6. invalid_grant: reread; a refresh token that changed meanwhile is used,
//     otherwise the session ends. Other failures: the still-valid token is
//     served, or *UnavailableError, with a per-session backoff.

// TokenState is how usable an access token is at some instant.
type TokenState int

const (
	// Fresh: valid for longer than RefreshAhead; used as is.
	Fresh TokenState = iota
	// Stale: valid, but expiring within RefreshAhead; refreshed now, and
	// still served if that refresh fails.
	Stale
	// Expired: not valid any more (or of unknown expiry).
	Expired
)

func (s TokenState) String() string {
	switch s {
	case Fresh:
		return "fresh"
	case Stale:
		return "stale"
	case Expired:
		return "expired"
	}
	return fmt.Sprintf("TokenState(%d)", int(s))
}

// Classify says whether a token expiring at expiry is fresh, stale or
// expired at now. The token is stale from expiry-ahead (inclusive) and
// expired from expiry (inclusive). A zero expiry is expired.
func Classify(expiry, now time.Time, ahead time.Duration) TokenState {
	switch {
	case expiry.IsZero() || !now.Before(expiry):
		return Expired
	case !now.Before(expiry.Add(-ahead)):
		return Stale
	}
	return Fresh
}

const (
	// pollMin and pollMax bound the backoff of a flight that watches
	// another replica's refresh.
	pollMin = 2 * time.Millisecond
	pollMax = 100 * time.Millisecond
)

var (
	errBackoff  = errors.New("session: refresh failed recently, backing off")
	errLockWait = errors.New("session: another replica's refresh did not finish in time")
)

// outcome is what a flight hands every request that shares it.
type outcome struct {
	tok AccessToken
	err error
	// fallback: the refresh failed transiently (err is an
	// *UnavailableError) but tok is the old, still-valid token.
	fallback bool
	// shared: the tokens come from a refresh made by another replica or an
	// earlier flight.
	shared bool
}

// pendingSave is a refresh whose result the store did not take: the
// provider has rotated oldRefresh away, so the next flight saves rec instead
// of sending oldRefresh again.
type pendingSave struct {
	oldRefresh [32]byte
	rec        Record
}

// AccessToken returns a usable access token for t, refreshing it when it is
// stale or expired, or when rejected (a token the upstream answered 401 to)
// equals the stored one. Errors: ErrNoSession; ErrSessionExpired (the
// refresh token is dead or the lifetime over: the session is gone);
// *UnavailableError (a transient refresh failure and no valid token: the
// session is kept); ErrStoreUnavailable.
//
// A session without a refresh token serves its access token until it
// expires, then ends.
func (m *Manager) AccessToken(ctx context.Context, t Ticket, rejected secret.String) (AccessToken, error) {
	// The claims are not needed here: l.rec is only classified, served and
	// (by remove) looked up for its sid and sub, never saved; the refresh
	// flight re-reads the full record before it writes.
	l, err := m.load(ctx, t, false)
	if err != nil {
		return AccessToken{}, err
	}
	m.slide(ctx, l)
	now := m.now()
	state := Classify(l.rec.AccessExpiry, now, m.ahead)
	forced := !rejected.IsZero() && rejected == l.rec.AccessToken
	current := AccessToken{Value: l.rec.AccessToken, Expiry: l.rec.AccessExpiry}
	if state == Fresh && !forced {
		return current, nil
	}
	if l.rec.RefreshToken.IsZero() {
		if state != Expired {
			return current, nil
		}
		_ = m.remove(context.WithoutCancel(ctx), l.key, l.rec, ReasonExpired)
		return AccessToken{}, fmt.Errorf("session: access token expired and no refresh token: %w", ErrSessionExpired)
	}
	if until, ok := m.backingOff(l.key, now); ok {
		if state != Expired && !forced {
			return current, nil
		}
		return AccessToken{}, &UnavailableError{RetryAfter: until.Sub(now), Err: errBackoff}
	}

	var ran bool // set by the flight function in this request only if it leads
	ch := m.flights.DoChan(l.key, func() (any, error) {
		ran = true
		return m.flight(context.WithoutCancel(ctx), t, l.key, l.version, rejected), nil
	})
	select {
	case <-ctx.Done():
		return AccessToken{}, fmt.Errorf("session: refresh: %w", ctx.Err())
	case res := <-ch:
		o := res.Val.(outcome)
		if o.err != nil {
			if o.fallback && o.tok.Value != rejected {
				return o.tok, nil
			}
			return AccessToken{}, o.err
		}
		if !ran || o.shared {
			m.met.shared.Inc()
		}
		return o.tok, nil
	}
}

// flight is one refresh of the session under key, shared by the requests of
// this process. seen is the record version the leading request loaded.
func (m *Manager) flight(ctx context.Context, t Ticket, key string, seen uint64, rejected secret.String) outcome {
	lock := lockKeyFor(key)
	owner, err := newOwner()
	if err != nil {
		return outcome{err: err}
	}

	start := time.Now()
	rec, locked, err := m.acquire(ctx, t, key, lock, owner, seen, rejected)
	m.met.lockWait.Observe(time.Since(start).Seconds())
	if err != nil {
		return outcome{err: err}
	}
	if !locked {
		m.met.refreshes.WithLabelValues(refreshLostRace).Inc()
		return outcome{tok: refreshed(rec), shared: true}
	}

	// The lock lives LockTTL from now; everything done under it must end
	// before, or another replica could reload the refresh token we are
	// spending.
	lockedAt := time.Now()
	hold, cancel := context.WithDeadline(ctx, lockedAt.Add(m.lockTTL))
	defer cancel()
	defer func() {
		uctx, cancel := context.WithTimeout(ctx, m.lockTTL-m.refreshTimeout)
		defer cancel()
		if err := m.store.Unlock(uctx, lock, owner); err != nil {
			m.log.LogAttrs(ctx, slog.LevelWarn, "refresh unlock failed", slog.Any("session", t), slog.Any("error", m.storeErr(uctx, opUnlock, err)))
		}
	}()
	return m.refreshLocked(hold, t, key, seen, rejected)
}

// acquire takes the session's refresh lock, or returns the record another
// replica's refresh produced while this flight waited (locked false).
func (m *Manager) acquire(ctx context.Context, t Ticket, key, lock, owner string, seen uint64, rejected secret.String) (*Record, bool, error) {
	// Give the store a little beyond the deadline, so the last try at the
	// deadline (when a dead holder's lock has lapsed) can still run.
	deadline := time.Now().Add(m.lockTTL)
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(m.lockTTL-m.refreshTimeout))
	defer cancel()

	wait := pollMin
	for {
		ok, err := m.store.TryLock(ctx, lock, owner, m.lockTTL)
		if err != nil {
			return nil, false, m.storeErr(ctx, opLock, err)
		}
		if ok {
			return nil, true, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, false, &UnavailableError{RetryAfter: m.backoff, Err: errLockWait}
		}
		// Full jitter in [wait/2, wait], so replicas that started together
		// drift apart.
		sleep := min(wait/2+mrand.N(wait/2+1), left)
		time.Sleep(sleep)
		wait = min(2*wait, pollMax)

		e, err := m.store.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			return nil, false, fmt.Errorf("session: refresh: session ended meanwhile: %w", ErrNoSession)
		}
		if err != nil {
			return nil, false, m.storeErr(ctx, opGet, err)
		}
		if e.Version == seen {
			continue
		}
		rec, err := m.seal.openRecord(t, key, e.Data)
		if err != nil {
			return nil, false, fmt.Errorf("session: refresh: %w", ErrNoSession)
		}
		if m.usable(rec, rejected) {
			return rec, false, nil
		}
		seen = e.Version
	}
}

// usable reports whether rec's access token can be handed out instead of
// refreshing: not expired, and not the token the upstream rejected.
func (m *Manager) usable(rec *Record, rejected secret.String) bool {
	return Classify(rec.AccessExpiry, m.now(), m.ahead) != Expired && (rejected.IsZero() || rec.AccessToken != rejected)
}

func refreshed(rec *Record) AccessToken {
	return AccessToken{Value: rec.AccessToken, Expiry: rec.AccessExpiry, Refreshed: true}
}

// refreshLocked runs steps 4 to 6 with the lock held; ctx ends when the lock
// would lapse.
func (m *Manager) refreshLocked(ctx context.Context, t Ticket, key string, seen uint64, rejected secret.String) outcome {
	e, err := m.store.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return outcome{err: fmt.Errorf("session: refresh: session ended meanwhile: %w", ErrNoSession)}
	}
	if err != nil {
		return outcome{err: m.storeErr(ctx, opGet, err)}
	}
	rec, err := m.seal.openRecord(t, key, e.Data)
	if err != nil {
		return outcome{err: fmt.Errorf("session: refresh: %w", ErrNoSession)}
	}
	version := e.Version
	if version != seen && m.usable(rec, rejected) {
		m.met.refreshes.WithLabelValues(refreshLostRace).Inc()
		return outcome{tok: refreshed(rec), shared: true}
	}

	// A refresh of ours that the store did not take: its refresh token is
	// spent. Save the tokens we got instead of sending it again.
	if p, ok := m.takePending(key, rec.RefreshToken); ok {
		rec = &p.rec
		if version, err = m.save(ctx, t, key, version, rec); err != nil {
			m.setPending(key, p)
			return outcome{err: &UnavailableError{RetryAfter: m.backoff, Err: err}}
		}
		if m.usable(rec, rejected) {
			return outcome{tok: refreshed(rec)}
		}
	}

	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, m.refreshTimeout)
	tok, err := m.refresher.Refresh(rctx, rec.RefreshToken)
	cancel()
	m.met.refreshTime.Observe(time.Since(start).Seconds())
	if err != nil {
		return m.refreshFailed(ctx, t, key, rec, rejected, err)
	}
	if tok == nil || tok.AccessToken.IsZero() {
		return m.refreshFailed(ctx, t, key, rec, rejected, errors.New("session: refresh: token endpoint returned no access token"))
	}

	next := *rec
	next.AccessToken = tok.AccessToken
	next.AccessExpiry = tok.Expiry
	if !tok.RefreshToken.IsZero() {
		next.RefreshToken = tok.RefreshToken
		next.RefreshExpiry = tok.RefreshExpiry
	}
	if !tok.IDToken.IsZero() {
		next.IDToken = tok.IDToken
	}
	m.met.refreshes.WithLabelValues(refreshSuccess).Inc()
	m.clearFailure(key)
	if _, err := m.save(ctx, t, key, version, &next); err != nil {
		if errors.Is(err, ErrNoSession) {
			return outcome{err: err}
		}
		// The new access token is good; hand it out. If the provider
		// rotated the refresh token, keep the result so the old one is
		// never sent again from here.
		m.log.LogAttrs(ctx, slog.LevelError, "refreshed tokens not saved", slog.Any("session", t), slog.Any("error", err))
		if next.RefreshToken != rec.RefreshToken {
			m.setPending(key, pendingSave{oldRefresh: sha256.Sum256([]byte(rec.RefreshToken.Reveal())), rec: next})
		}
	}
	return outcome{tok: refreshed(&next)}
}

// save writes rec with compare-and-set on version.
func (m *Manager) save(ctx context.Context, t Ticket, key string, version uint64, rec *Record) (uint64, error) {
	data, err := m.seal.sealRecord(t, key, rec)
	if err != nil {
		return 0, fmt.Errorf("session: save: %w", err)
	}
	ttl := m.ttlFor(rec, m.now())
	if ttl <= 0 {
		return 0, fmt.Errorf("session: save: lifetime over: %w", ErrNoSession)
	}
	v, err := m.store.Update(ctx, key, version, data, ttl)
	switch {
	case errors.Is(err, ErrNotFound):
		return 0, fmt.Errorf("session: save: session ended meanwhile: %w", ErrNoSession)
	case errors.Is(err, ErrConflict):
		// Only possible when our lock lapsed and another replica wrote.
		return 0, fmt.Errorf("session: save: %w", err)
	case err != nil:
		return 0, m.storeErr(ctx, opUpdate, err)
	}
	return v, nil
}

// refreshFailed handles a failed token endpoint call (step 6).
func (m *Manager) refreshFailed(ctx context.Context, t Ticket, key string, rec *Record, rejected secret.String, cause error) outcome {
	if errors.Is(cause, idp.ErrInvalidGrant) {
		// Reread: if another replica rotated the refresh token meanwhile,
		// our call spent nothing and its tokens are good.
		if e, err := m.store.Get(ctx, key); err == nil {
			if cur, err := m.seal.openRecord(t, key, e.Data); err == nil && cur.RefreshToken != rec.RefreshToken {
				m.met.refreshes.WithLabelValues(refreshLostRace).Inc()
				if m.usable(cur, rejected) {
					return outcome{tok: refreshed(cur), shared: true}
				}
				return outcome{err: &UnavailableError{RetryAfter: m.backoff, Err: cause}}
			}
		} else if !errors.Is(err, ErrNotFound) {
			// Cannot tell: keep the session, try later.
			return outcome{err: &UnavailableError{RetryAfter: m.backoff, Err: m.storeErr(ctx, opGet, err)}}
		}
		m.met.refreshes.WithLabelValues(refreshRejected).Inc()
		m.log.LogAttrs(ctx, slog.LevelInfo, "refresh token rejected, session ended", slog.Any("session", t), slog.Any("error", cause))
		if err := m.remove(ctx, key, rec, ReasonRejected); err != nil {
			m.log.LogAttrs(ctx, slog.LevelWarn, "session delete failed", slog.Any("session", t), slog.Any("error", err))
		}
		m.forget(key)
		return outcome{err: fmt.Errorf("session: refresh: %w: %w", ErrSessionExpired, cause)}
	}

	m.met.refreshes.WithLabelValues(refreshFailed).Inc()
	retry := m.backoff
	var te *idp.TokenError
	if errors.As(cause, &te) && te.RetryAfter > retry {
		retry = te.RetryAfter
	}
	m.setFailure(key, m.now().Add(retry))
	m.log.LogAttrs(ctx, slog.LevelWarn, "refresh failed", slog.Any("session", t), slog.Duration("retry_after", retry), slog.Any("error", cause))
	err := &UnavailableError{RetryAfter: retry, Err: cause}
	if Classify(rec.AccessExpiry, m.now(), m.ahead) != Expired {
		return outcome{tok: AccessToken{Value: rec.AccessToken, Expiry: rec.AccessExpiry}, err: err, fallback: true}
	}
	return outcome{err: err}
}

// newOwner returns a random lock owner token.
func newOwner() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session: lock owner: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// backingOff reports whether the session's refresh backoff is running and
// until when.
func (m *Manager) backingOff(key string, now time.Time) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	until, ok := m.failures[key]
	if !ok {
		return time.Time{}, false
	}
	if !now.Before(until) {
		delete(m.failures, key)
		return time.Time{}, false
	}
	return until, true
}

func (m *Manager) setFailure(key string, until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.failures) >= maxTracked {
		now := m.now()
		for k, u := range m.failures {
			if !now.Before(u) {
				delete(m.failures, k)
			}
		}
		// Still full: drop one at random (map order). Losing a backoff
		// costs one early retry, not correctness.
		for k := range m.failures {
			if len(m.failures) < maxTracked {
				break
			}
			delete(m.failures, k)
		}
	}
	m.failures[key] = until
}

func (m *Manager) clearFailure(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.failures, key)
}

func (m *Manager) setPending(key string, p pendingSave) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.pending {
		if len(m.pending) < maxTracked {
			break
		}
		delete(m.pending, k)
	}
	m.pending[key] = p
}

// takePending returns and forgets the pending save of key when the store
// still holds the refresh token it replaced. A pending save whose old token
// is no longer stored is obsolete and dropped.
func (m *Manager) takePending(key string, stored secret.String) (pendingSave, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pending[key]
	if !ok {
		return pendingSave{}, false
	}
	delete(m.pending, key)
	return p, p.oldRefresh == sha256.Sum256([]byte(stored.Reveal()))
}

// forget drops the per-session state of an ended session.
func (m *Manager) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.failures, key)
	delete(m.pending, key)
}
