package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session/storage"
)

// flight is one refresh of one session: steps 3 to 6 of the refresh engine
// (refresh.go), each a method, shared by the requests of this process that
// join it. A request builds a flight from what it loaded; the engine runs
// the first one of a session and hands its outcome to every request that
// joined meanwhile. A flight is run by one goroutine.
type flight struct {
	e        *engine
	t        Ticket
	key      string
	seen     uint64        // the record version last looked at
	rejected secret.String // the token the upstream refused, if forced
	// target is the token this flight obtains, tkey its Key ("" for the
	// login's own). The flights of one session's targets are separate
	// flights that take the same lock, one after the other: each spends
	// the refresh token the one before it saved.
	target idp.Target
	tkey   string
	// attempt is the Attempt with the stored refresh token last seen in
	// the record, if any: another replica's call in flight, or lost.
	attempt Attempt
	// led is set when the engine ran this flight, rather than another
	// request's flight of the same session; it is read only after the
	// flight's outcome has been received.
	led bool

	owner    string        // lock owner token
	lockedAt time.Time     // when the lock was taken
	lockWait time.Duration // how long taking the lock (or not) took
	// locked is the record as read right after the lock was taken, in
	// the same round trip (see lockAndRead), for reload.
	locked struct {
		entry Entry
		err   error
	}
	// rec and version are the record as last read or written under the
	// lock (step 4 on).
	rec     *Record
	version uint64
	// resend: this flight sends a refresh token again inside the
	// provider's reuse grace, so the first call's Attempt is kept.
	resend bool
	// keepLock: the call's outcome is unknown, so the lock is left to
	// lapse rather than released: no other replica sends the same refresh
	// token while the provider may still be acting on it.
	keepLock bool
}

// newFlight prepares the flight a request would run for req, from the
// record l it loaded.
func (e *engine) newFlight(req TokenRequest, l *loaded) *flight {
	f := &flight{e: e, t: req.Ticket, key: l.key, seen: l.version, rejected: req.Rejected, target: req.Target, tkey: req.Target.Key()}
	if l.rec.Attempt.sends(l.rec.RefreshToken) {
		f.attempt = l.rec.Attempt
	}
	return f
}

// flightKey shares one flight among this process's requests for the same
// session and target.
func (f *flight) flightKey() string {
	if f.tkey == "" {
		return f.key
	}
	return f.key + "\x00" + f.tkey
}

// run takes the lock (or the tokens another replica's refresh saved) and
// refreshes under it.
func (f *flight) run(ctx context.Context) (o outcome) {
	e := f.e
	ctx, span := e.tracer.Start(ctx, "session.refresh.flight")
	defer func() { o.span = traceFlight(span, f, o) }()
	owner, err := newOwner()
	if err != nil {
		return outcome{err: err}
	}
	f.owner = owner

	start := time.Now()
	deadline := start.Add(e.refreshTimeout)
	// The flights of one session's other targets in this process go
	// first, one at a time: waiting for them here costs the store nothing.
	release, err := e.turns.take(ctx, f.key, deadline)
	if err != nil {
		return outcome{err: err}
	}
	rec, locked, err := f.acquire(ctx, deadline)
	f.lockWait = time.Since(start)
	e.rs.met.lockWait.Observe(f.lockWait.Seconds())
	switch {
	case err != nil:
		release()
		return outcome{err: err}
	case !locked:
		release()
		e.rs.met.refreshes.WithLabelValues(refreshLostRace).Inc()
		return outcome{tok: e.answer(rec, f.tkey, true), shared: true}
	}

	// The lock lives LockTTL from now; everything done under it must end
	// before, or another replica could reload the refresh token we are
	// spending.
	f.lockedAt = time.Now()
	hold, cancel := context.WithDeadline(ctx, f.lockedAt.Add(e.lockTTL))
	o = f.refreshLocked(hold)
	cancel()
	// The requests waiting for this flight have what they need: the lock
	// is released after they are on their way (drain waits for it), and
	// the next flight of this session's targets here takes its turn once
	// the lock is free. Other replicas watch the record, not the lock.
	e.running.Add(1)
	go func() {
		defer e.running.Done()
		f.unlock(ctx)
		release()
	}()
	return o
}

// newOwner returns a random lock owner token.
func newOwner() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session: lock owner: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// acquire is step 3: it takes the session's refresh lock, or returns the
// record another replica's refresh produced while this flight waited
// (locked false). It waits until deadline at most, and not at all for a
// call that has outrun its budget (its maker died or gave up).
func (f *flight) acquire(ctx context.Context, deadline time.Time) (*Record, bool, error) {
	lock := lockKeyFor(f.key)
	start := time.Now()
	notifier, _ := f.e.rs.store.(storage.ChangeNotifier)
	for {
		if rec, locked, done, err := f.look(ctx, lock, notifier, start, deadline); done {
			return rec, locked, err
		}
	}
}

// look is one turn of acquire: it tries the lock and reads the record,
// and when neither ends the wait, waits for the record to change or for
// the next poll (pollWait), whichever comes first.
func (f *flight) look(ctx context.Context, lock string, n storage.ChangeNotifier, start, deadline time.Time) (rec *Record, locked, done bool, err error) {
	e := f.e
	// Watch before reading: a save that lands after the read wakes the
	// wait below.
	changed, stop := f.watchChange(n)
	defer stop()
	locked, entry, err := f.lockAndRead(ctx, lock)
	if locked {
		f.locked.entry, f.locked.err = entry, err
		return nil, true, true, nil
	}
	if err != nil {
		return nil, false, true, err
	}
	if rec, err := f.watch(entry); rec != nil || err != nil {
		return rec, false, true, err
	}
	if retry, gone := e.abandoned(f.attempt, e.rs.now()); gone {
		return nil, false, true, &UnavailableError{RetryAfter: retry, Err: errLockWait}
	}
	left := time.Until(deadline)
	if left <= 0 {
		return nil, false, true, &UnavailableError{RetryAfter: retrySoon, Err: errLockWait}
	}
	wait := time.NewTimer(min(pollWait(time.Since(start)), left))
	defer wait.Stop()
	select {
	case <-changed:
	case <-wait.C:
	}
	return nil, false, false, nil
}

// watchChange asks the store to signal the next change of the session's
// entry; without a notifier the channel is nil (never ready) and the wait
// is the poll alone.
func (f *flight) watchChange(n storage.ChangeNotifier) (<-chan struct{}, func()) {
	if n == nil {
		return nil, func() {}
	}
	return n.NotifyChange(f.key)
}

// lockAndRead tries the session's lock and then reads its record: in one
// round trip when the store offers it (storage.LockReader), else TryLock
// and Get. Each step less on the way from a refresh to the requests that
// wait for it counts when a refresh storm keeps the machine busy: every
// round trip then also waits for a turn on the CPU. The error of a read
// with the lock taken comes back with locked set, for reload.
func (f *flight) lockAndRead(ctx context.Context, lock string) (bool, Entry, error) {
	e := f.e
	var (
		locked bool
		entry  Entry
		err    error
	)
	if lr, ok := e.rs.store.(storage.LockReader); ok {
		locked, entry, err = lr.TryLockGet(ctx, lock, f.owner, e.lockTTL, f.key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return false, Entry{}, e.rs.storeErr(ctx, opLock, err)
		}
	} else {
		if locked, err = e.rs.store.TryLock(ctx, lock, f.owner, e.lockTTL); err != nil {
			return false, Entry{}, e.rs.storeErr(ctx, opLock, err)
		}
		entry, err = e.rs.store.Get(ctx, f.key)
	}
	if err != nil {
		return locked, Entry{}, f.loadErr(ctx, err)
	}
	return locked, entry, nil
}

// pollWait is how long a flight that has waited for waited sleeps before
// it looks again: a quarter of that time (at least pollMin, at most
// pollMax), with full jitter in [w/2, w] so that replicas that started
// together drift apart. Another replica's refresh is then seen within a
// quarter of the time it took (a doubling backoff could add the whole time
// again), and a stalled one is watched at pollMax.
func pollWait(waited time.Duration) time.Duration {
	w := min(max(waited/4, pollMin), pollMax)
	return w/2 + mrand.N(w/2+1)
}

// watch looks at the record, as read while another flight held the lock:
// it returns the record when it holds tokens this flight can use, and nil
// while nothing usable has changed.
func (f *flight) watch(entry Entry) (*Record, error) {
	e := f.e
	if entry.Version == f.seen {
		return nil, nil
	}
	rec, err := e.rs.seal.openRecord(f.t, f.key, entry.Data)
	if err != nil {
		return nil, fmt.Errorf("session: refresh: %w", ErrNoSession)
	}
	if e.usable(rec, f.tkey, f.rejected) {
		return rec, nil
	}
	f.seen = entry.Version
	f.attempt = Attempt{}
	if rec.Attempt.sends(rec.RefreshToken) {
		f.attempt = rec.Attempt
	}
	return nil, nil
}

// unlock releases the lock, unless the call's outcome is unknown.
func (f *flight) unlock(ctx context.Context) {
	if f.keepLock {
		return
	}
	e := f.e
	uctx, cancel := context.WithTimeout(ctx, e.saveMargin())
	defer cancel()
	if err := e.rs.store.Unlock(uctx, lockKeyFor(f.key), f.owner); err != nil {
		e.rs.log.LogAttrs(ctx, slog.LevelWarn, "refresh unlock failed", slog.Any("session", f.t), slog.Any("error", e.rs.storeErr(uctx, opUnlock, err)))
	}
}

// load reads and opens the record.
func (f *flight) load(ctx context.Context) (*Record, uint64, error) {
	entry, err := f.e.rs.store.Get(ctx, f.key)
	if err != nil {
		return nil, 0, f.loadErr(ctx, err)
	}
	return f.openEntry(entry)
}

// openEntry opens the record of entry.
func (f *flight) openEntry(entry Entry) (*Record, uint64, error) {
	rec, err := f.e.rs.seal.openRecord(f.t, f.key, entry.Data)
	if err != nil {
		return nil, 0, fmt.Errorf("session: refresh: %w", ErrNoSession)
	}
	return rec, entry.Version, nil
}

func (f *flight) loadErr(ctx context.Context, err error) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("session: refresh: session ended meanwhile: %w", ErrNoSession)
	}
	return f.e.rs.storeErr(ctx, opGet, err)
}

// save writes rec under the lock with compare-and-set on f.version, and
// moves f.version on.
func (f *flight) save(ctx context.Context, rec *Record) error {
	v, err := f.e.rs.save(ctx, f.t, f.key, f.version, rec)
	if err != nil {
		return err
	}
	f.version = v
	return nil
}

// refreshLocked runs steps 4 and 5 with the lock held; ctx ends when the
// lock would lapse. Each step either hands the flight on or ends it with
// its outcome (done).
func (f *flight) refreshLocked(ctx context.Context) outcome {
	for _, step := range []func(context.Context) (outcome, bool){f.reload, f.mayCall, f.recordAttempt} {
		if o, done := step(ctx); done {
			return o
		}
	}
	return f.call(ctx)
}

// reload is step 4: it opens the record as read right after the lock was
// taken. Newer tokens, saved by another replica or earlier flight, end the
// flight.
func (f *flight) reload(ctx context.Context) (outcome, bool) {
	e := f.e
	if f.locked.err != nil {
		return outcome{err: f.locked.err}, true
	}
	rec, version, err := f.openEntry(f.locked.entry)
	if err != nil {
		return outcome{err: err}, true
	}
	if version != f.seen && e.usable(rec, f.tkey, f.rejected) {
		e.rs.met.refreshes.WithLabelValues(refreshLostRace).Inc()
		return outcome{tok: e.answer(rec, f.tkey, true), shared: true}, true
	}
	f.rec, f.version = rec, version
	return f.savePending(ctx)
}

// savePending saves a refresh of ours that the store did not take: its
// refresh token is spent, so the tokens we got are saved instead of
// sending it again.
func (f *flight) savePending(ctx context.Context) (outcome, bool) {
	e := f.e
	p, ok := e.pending.take(f.key, f.rec.RefreshToken)
	if !ok {
		return outcome{}, false
	}
	if err := f.save(ctx, &p.rec); err != nil {
		e.pending.set(f.key, p)
		return outcome{err: &UnavailableError{RetryAfter: e.backoff, Err: err}}, true
	}
	f.rec = &p.rec
	if e.usable(f.rec, f.tkey, f.rejected) {
		return outcome{tok: e.answer(f.rec, f.tkey, true)}, true
	}
	return outcome{}, false
}

// mayCall is the rest of step 4: a failure backoff in the record, or a
// refused client, holds the refresh; an earlier call with the stored
// refresh token whose answer was lost means it is not sent again, unless
// the provider's reuse grace still covers it.
func (f *flight) mayCall(ctx context.Context) (outcome, bool) {
	e := f.e
	now := e.rs.now()
	if until, cause := e.hold(f.rec, f.tkey, now); cause != nil {
		if errors.Is(cause, ErrTokenRefused) {
			return outcome{err: cause}, true
		}
		return e.fallback(f.rec, f.tkey, &UnavailableError{RetryAfter: until.Sub(now), Err: cause}), true
	}
	if !f.rec.Attempt.sends(f.rec.RefreshToken) {
		return outcome{}, false
	}
	if !e.mayResend(f.rec.Attempt, now) {
		return f.unknownOutcome(ctx), true
	}
	f.resend = true
	return outcome{}, false
}

// recordAttempt is step 5's first write: the Attempt is recorded before
// the refresh token leaves, so that if this process dies before the
// outcome is saved, whoever comes next knows. A resend keeps the first
// call's Attempt.
func (f *flight) recordAttempt(ctx context.Context) (outcome, bool) {
	if f.resend {
		return outcome{}, false
	}
	e := f.e
	f.rec.Attempt = newAttempt(f.rec.RefreshToken, e.rs.now())
	if err := f.save(ctx, f.rec); err != nil {
		if errors.Is(err, ErrNoSession) {
			return outcome{err: err}, true
		}
		return e.fallback(f.rec, f.tkey, &UnavailableError{RetryAfter: retrySoon, Err: err}), true
	}
	return outcome{}, false
}

// call is step 5: it sends the refresh token, for as long as the lock
// allows less the time to save, and hands the answer on.
func (f *flight) call(ctx context.Context) outcome {
	e := f.e
	cctx, cancel := context.WithDeadline(ctx, f.lockedAt.Add(e.callBudget()))
	start := time.Now()
	tok, err := e.refresh(cctx, f.rec, f.target)
	cancel()
	e.rs.met.refreshTime.Observe(time.Since(start).Seconds())
	if err == nil && (tok == nil || tok.AccessToken.IsZero()) {
		err = errNoAccessToken
	}
	if err != nil {
		return f.failed(ctx, err)
	}
	return f.succeeded(ctx, tok)
}

// succeeded saves the new tokens, clearing the Attempt, and hands them out.
func (f *flight) succeeded(ctx context.Context, tok *idp.Token) outcome {
	e := f.e
	next := *f.rec
	next.setHeld(f.tkey, tok.AccessToken, tok.Expiry, e.rs.now())
	if !tok.RefreshToken.IsZero() {
		next.RefreshToken = tok.RefreshToken
		next.RefreshExpiry = tok.RefreshExpiry
	}
	if !tok.IDToken.IsZero() {
		next.IDToken = tok.IDToken
	}
	next.RetryAt = time.Time{}
	next.Attempt = Attempt{}
	e.rs.met.refreshes.WithLabelValues(refreshSuccess).Inc()
	e.clientAccepted(ctx)
	if err := f.save(ctx, &next); err != nil {
		if errors.Is(err, ErrNoSession) {
			return outcome{err: err}
		}
		// The new access token is good; hand it out. If the provider
		// rotated the refresh token, keep the result so the old one is
		// never sent again from here.
		e.rs.log.LogAttrs(ctx, slog.LevelError, "refreshed tokens not saved", slog.Any("session", f.t), slog.Any("error", err))
		if next.RefreshToken != f.rec.RefreshToken {
			e.pending.set(f.key, pendingSave{oldRefresh: digestToken(f.rec.RefreshToken), rec: next})
		}
	}
	if classify(tok.Expiry, e.rs.now(), e.ahead) == tokenExpired {
		// The answer took longer than the token lives: the new refresh
		// token is saved, the access token is never handed out.
		return outcome{err: &UnavailableError{RetryAfter: retrySoon, Err: errArrivedExpired}}
	}
	return outcome{tok: e.answer(&next, f.tkey, true)}
}

// failed is step 6: it handles a failed token endpoint call.
func (f *flight) failed(ctx context.Context, cause error) outcome {
	e := f.e
	now := e.rs.now()
	var te *idp.TokenError
	known := errors.As(cause, &te) && !te.OutcomeUnknown()
	switch {
	case errors.Is(cause, idp.ErrInvalidGrant):
		return f.invalidGrant(ctx, cause)
	case f.tkey != "" && targetRefused(te):
		return f.targetRefused(ctx, now, cause)
	case errors.Is(cause, idp.ErrClientRejected):
		e.rs.met.refreshes.WithLabelValues(refreshClientRejected).Inc()
		e.clientRejected(ctx, now, cause)
		f.settle(ctx, time.Time{})
		until, _ := e.clientHold(now)
		return e.fallback(f.rec, f.tkey, &UnavailableError{RetryAfter: max(until.Sub(now), retrySoon), Err: fmt.Errorf("%w: %w", ErrClientRejected, cause)})
	case !known:
		e.rs.met.refreshes.WithLabelValues(refreshUnknown).Inc()
		f.keepLock = true
		retry := max(time.Until(f.lockedAt.Add(e.lockTTL)), retrySoon)
		e.rs.log.LogAttrs(ctx, slog.LevelWarn, "refresh sent but not answered: its outcome is unknown, so its refresh token is not sent again; the access token is served while valid, then the session ends (see refresh.reuse_grace)",
			slog.Any("session", f.t), slog.Any("error", cause))
		return e.fallback(f.rec, f.tkey, &UnavailableError{RetryAfter: retry, Err: fmt.Errorf("%w: %w", errOutcomeUnknown, cause)})
	}
	e.rs.met.refreshes.WithLabelValues(refreshFailed).Inc()
	retry := max(e.backoff, te.RetryAfter)
	f.settle(ctx, now.Add(retry))
	e.rs.log.LogAttrs(ctx, slog.LevelWarn, "refresh failed", slog.Any("session", f.t), slog.Duration("retry_after", retry), slog.Any("error", cause))
	return e.fallback(f.rec, f.tkey, &UnavailableError{RetryAfter: retry, Err: cause})
}

// targetRefused handles a provider that refused the target (its resource
// or scope), not the session or the client: nothing was spent, the other
// tokens of the session are unaffected, and this replica asks for that
// target again only after FailureBackoff.
func (f *flight) targetRefused(ctx context.Context, now time.Time, cause error) outcome {
	e := f.e
	e.rs.met.refreshes.WithLabelValues(refreshFailed).Inc()
	f.settle(ctx, time.Time{})
	e.refused.hold(f.tkey, now.Add(e.backoff))
	e.rs.log.LogAttrs(ctx, slog.LevelWarn, "the provider refused a route's token: check the route's resource and scopes, and what the login asks for",
		slog.String("target", f.target.String()), slog.Any("error", cause))
	return outcome{err: fmt.Errorf("session: refresh for %s: %w: %w", f.target, ErrTokenRefused, cause)}
}

// targetRefused reports whether te is the provider refusing the resource
// or scope asked for (RFC 8707 invalid_target, RFC 6749 invalid_scope).
func targetRefused(te *idp.TokenError) bool {
	return te != nil && (te.Code == "invalid_target" || te.Code == "invalid_scope")
}

// settle records a call the provider answered without spending the refresh
// token: the Attempt is cleared (unless this was a resend, whose first
// call's outcome is still unknown), and retryAt, when set, holds every
// replica until then.
func (f *flight) settle(ctx context.Context, retryAt time.Time) {
	next := *f.rec
	if !f.resend {
		next.Attempt = Attempt{}
	}
	next.RetryAt = retryAt
	if err := f.save(ctx, &next); err != nil {
		f.e.rs.log.LogAttrs(ctx, slog.LevelWarn, "refresh failure not recorded", slog.Any("session", f.t), slog.Any("error", err))
	}
}

// invalidGrant ends the session, unless another replica rotated the refresh
// token meanwhile (then our call spent nothing and its tokens are good).
func (f *flight) invalidGrant(ctx context.Context, cause error) outcome {
	e := f.e
	cur, _, err := f.load(ctx)
	switch {
	case err == nil && cur.RefreshToken != f.rec.RefreshToken:
		e.rs.met.refreshes.WithLabelValues(refreshLostRace).Inc()
		if e.usable(cur, f.tkey, f.rejected) {
			return outcome{tok: e.answer(cur, f.tkey, true), shared: true}
		}
		return outcome{err: &UnavailableError{RetryAfter: e.backoff, Err: cause}}
	case err != nil && !errors.Is(err, ErrNoSession):
		// Cannot tell: keep the session, try later.
		return outcome{err: &UnavailableError{RetryAfter: e.backoff, Err: err}}
	}
	e.rs.met.refreshes.WithLabelValues(refreshRejected).Inc()
	e.rs.log.LogAttrs(ctx, slog.LevelInfo, "refresh token rejected, session ended", slog.Any("session", f.t), slog.Any("error", cause))
	f.end(ctx, ReasonRejected)
	return outcome{err: fmt.Errorf("session: refresh: %w: %w", ErrSessionExpired, cause)}
}

// unknownOutcome handles a record whose refresh token went out in a call
// whose answer was lost, outside any reuse grace: the provider may have
// rotated it, so it is not sent again. The access token is served while it
// is valid; after that the session ends, cleanly, rather than through a
// reuse the provider would punish by revoking the grant.
func (f *flight) unknownOutcome(ctx context.Context) outcome {
	e := f.e
	if classify(f.rec.held(f.tkey).expiry, e.rs.now(), e.ahead) != tokenExpired {
		return e.fallback(f.rec, f.tkey, &UnavailableError{RetryAfter: retrySoon, Err: errOutcomeUnknown})
	}
	e.rs.log.LogAttrs(ctx, slog.LevelWarn, "session ended: a refresh of it was sent and its answer lost, and its access token has expired; sending the refresh token again could revoke the grant",
		slog.Any("session", f.t), slog.Time("sent_at", f.rec.Attempt.Since))
	f.end(ctx, ReasonUnknownOutcome)
	return outcome{err: fmt.Errorf("session: refresh: %w: %w", ErrSessionExpired, errOutcomeUnknown)}
}

// end deletes the session for reason.
func (f *flight) end(ctx context.Context, reason EndReason) {
	if err := f.e.rs.remove(ctx, f.key, f.rec, reason); err != nil {
		f.e.rs.log.LogAttrs(ctx, slog.LevelWarn, "session delete failed", slog.Any("session", f.t), slog.Any("error", err))
	}
	f.e.forget(f.key)
}
