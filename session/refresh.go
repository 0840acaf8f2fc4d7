package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/tracing"
)

// engine is the refresh engine. For one session, at most one refresh is in
// flight across all replicas, and a refresh token is sent once
// (docs/refresh.md states the guarantee exactly, crashes included). Each
// step of the algorithm is a method, named here:
//
//  1. accessToken loads the record and classifies its access token. A
//     fresh token is used. A stale one (still valid) is used too, and a
//     refresh starts in the background; a request whose token has expired,
//     or was rejected by the upstream, waits for the refresh (await), at
//     most RefreshTimeout.
//  2. Requests of one session in this process share one flight (join:
//     singleflight). The flight (flight.go) runs on its own context, so a
//     request that gives up does not cancel it for the others.
//  3. flight.acquire takes the session's lock in the store (TryLock with a
//     random owner for LockTTL) and reads the record after it, in one
//     round trip when the store can (storage.LockReader). Without the
//     lock, it watches the record's version, looking again when the store
//     signals a change (storage.ChangeNotifier) or after a jittered backoff
//     (pollWait), until another replica's refresh lands, the lock frees, or
//     RefreshTimeout passes.
//  4. Holding the lock, flight.reload opens the record read after taking
//     it: newer tokens are used, and
//     a result of ours the store did not take is saved instead of sending
//     its spent refresh token (flight.savePending). flight.mayCall: a
//     failure backoff in the record (RetryAt) holds every replica; an
//     Attempt with the stored refresh token means an earlier call's answer
//     was lost: the token is not sent again (unless the provider's reuse
//     grace still covers it); the access token is served while it is
//     valid, then the session ends (flight.unknownOutcome).
//  5. flight.recordAttempt records an Attempt; flight.call calls the token
//     endpoint (for up to LockTTL less a save margin, long after the
//     requests stopped waiting); flight.succeeded saves the result with
//     compare-and-set, clearing the Attempt; flight.unlock unlocks, once
//     the outcome is on its way to the requests.
//  6. flight.failed: invalid_grant: reread; a refresh token that changed
//     meanwhile is used, otherwise the session ends (flight.invalidGrant).
//     A refused client: the session is kept, ErrClientRejected, readiness
//     fails (client.go). A transient failure with an answer: the Attempt is
//     cleared and RetryAt set for every replica (flight.settle). No answer:
//     the outcome is unknown; the Attempt stays, and the lock is left to
//     lapse.
//
// An engine is safe for concurrent use, and any number of engines
// (replicas) may share one Backend: what they must agree on (RefreshedAt,
// RetryAt, Attempt) lives in the record, and the store lock serialises
// their flights. What an engine keeps itself is this process's: its flights
// in progress, whether the provider refuses this replica's client, and
// refreshed tokens the store did not take.
type engine struct {
	rs        *records
	refresher Refresher
	tracer    tracing.Tracer

	ahead          time.Duration // RefreshAhead
	refreshTimeout time.Duration // RefreshTimeout
	backoff        time.Duration // FailureBackoff
	lockTTL        time.Duration // LockTTL
	minForced      time.Duration // MinRefreshInterval
	reuseGrace     time.Duration // ReuseGrace

	// flights shares one refresh among the requests of one session in
	// this process, keyed by session key; running counts the requests
	// that joined a flight still in progress, for drain.
	flights singleflight.Group
	running sync.WaitGroup

	// client tracks whether the provider refuses this replica's client.
	client clientState
	// refused holds the targets whose tokens the provider refused.
	refused targetHolds
	// pending holds refreshed tokens the store did not take.
	pending pendingSaves
	// keys caches parsed DPoP keys.
	keys dpopKeys
	// turns lets the flights of one session in this process (its
	// targets') take the store lock one after the other.
	turns sessionTurns
	// targets refreshes route targets and binds tokens to DPoP keys; nil
	// when the Refresher cannot (then only the login's own Bearer token
	// is refreshed).
	targets TargetRefresher
	// exchanges caches exchanged tokens; exchanger makes them (nil: no
	// token exchange).
	exchanges exchangeCache
	exchanger Exchanger
}

// newEngine builds the refresh engine over rs from opts, whose defaults
// have been filled in.
func newEngine(rs *records, opts ManagerOptions) *engine {
	targets, _ := opts.Refresher.(TargetRefresher)
	return &engine{
		rs:             rs,
		refresher:      opts.Refresher,
		targets:        targets,
		exchanger:      opts.Exchanger,
		tracer:         tracing.NewTracer(opts.TracerProvider),
		ahead:          opts.Ahead,
		refreshTimeout: opts.Timeout,
		backoff:        opts.FailureBackoff,
		lockTTL:        opts.LockTTL,
		minForced:      opts.MinInterval,
		reuseGrace:     opts.ReuseGrace,
	}
}

// tokenState is how usable an access token is at some instant.
type tokenState int

const (
	// tokenFresh: valid for longer than RefreshAhead; used as is.
	tokenFresh tokenState = iota
	// tokenStale: valid, but expiring within RefreshAhead; refreshed now, and
	// still served if that refresh fails.
	tokenStale
	// tokenExpired: not valid any more (or of unknown expiry).
	tokenExpired
)

func (s tokenState) String() string {
	switch s {
	case tokenFresh:
		return "fresh"
	case tokenStale:
		return "stale"
	case tokenExpired:
		return "expired"
	}
	return fmt.Sprintf("tokenState(%d)", int(s))
}

// classify says whether a token expiring at expiry is fresh, stale or
// expired at now. The token is stale from expiry-ahead (inclusive) and
// expired from expiry (inclusive). A zero expiry is expired.
func classify(expiry, now time.Time, ahead time.Duration) tokenState {
	switch {
	case expiry.IsZero() || !now.Before(expiry):
		return tokenExpired
	case !now.Before(expiry.Add(-ahead)):
		return tokenStale
	}
	return tokenFresh
}

const (
	// pollMin and pollMax bound the wait between two looks of a flight
	// that watches another replica's refresh (see pollWait).
	pollMin = 2 * time.Millisecond
	pollMax = 100 * time.Millisecond
	// retrySoon is the Retry-After of a request that stopped waiting for a
	// refresh that goes on.
	retrySoon = time.Second
	// maxSaveMargin is how long before its lock lapses a token endpoint
	// call is given up at most (less when LockTTL leaves less room over
	// RefreshTimeout), so the result is saved under the lock.
	maxSaveMargin = 2 * time.Second
	// graceMargin: a refresh token whose outcome is unknown is sent again
	// within ReuseGrace only while this much of the grace is left.
	graceMargin = time.Second
)

var (
	errBackoff        = errors.New("session: refresh failed recently, backing off")
	errLockWait       = errors.New("session: another refresh of this session did not finish in time")
	errRefreshSlow    = errors.New("session: the refresh did not finish within refresh.timeout; it goes on in the background")
	errOutcomeUnknown = errors.New("session: a refresh was sent and its answer lost; its refresh token is not sent again")
	errNoAccessToken  = errors.New("session: refresh: token endpoint returned no access token")
	errArrivedExpired = errors.New("session: refresh: the new access token had expired when the answer arrived")
	errNoTargets      = errors.New("session: the Refresher cannot refresh a route target's token or a DPoP-bound one (it is no TargetRefresher)")
)

// outcome is what a flight hands every request that shares it.
type outcome struct {
	tok AccessToken
	err error
	// fallback: the refresh failed (err is an *UnavailableError) but tok
	// is the old, still-valid token.
	fallback bool
	// shared: the tokens come from a refresh made by another replica or an
	// earlier flight.
	shared bool
	// span is the flight's span, when traced: requests that shared the
	// flight link to it.
	span trace.SpanContext
}

// accessToken is step 1: it returns a usable access token for req (see
// Manager.AccessToken), refreshing when the token is stale, expired or
// rejected.
func (e *engine) accessToken(ctx context.Context, req TokenRequest) (AccessToken, error) {
	if req.Exchange {
		return e.exchanged(ctx, req)
	}
	l, err := e.load(ctx, req)
	if err != nil {
		return AccessToken{}, err
	}
	now := e.rs.now()
	rec, target := l.rec, req.Target.Key()
	h := rec.held(target)
	state := classify(h.expiry, now, e.ahead)
	forced := e.forces(h, req.Rejected, now)
	current := e.answer(rec, target, false)
	if target == "" {
		current.header = l.bearer
	}
	if state == tokenFresh && !forced {
		return current, nil
	}
	if rec.RefreshToken.IsZero() {
		return e.withoutRefreshToken(ctx, &l, req.Target, state, current)
	}
	if e.targets == nil && (!req.Target.IsZero() || len(rec.DPoPKey) > 0) {
		return AccessToken{}, errNoTargets
	}
	waits := state == tokenExpired || forced
	if until, cause := e.hold(rec, target, now); cause != nil {
		if !waits {
			return current, nil
		}
		return AccessToken{}, holdErr(until.Sub(now), cause)
	}
	if !waits {
		// Still valid: serve it, and refresh in the background, unless a
		// call with this refresh token is already out (in flight, or its
		// answer lost: then the token is not sent again). The upstream
		// rejected no token here.
		if !rec.Attempt.sends(rec.RefreshToken) || e.mayResend(rec.Attempt, now) {
			e.join(ctx, e.newFlight(TokenRequest{Ticket: req.Ticket, Target: req.Target}, &l))
		}
		return current, nil
	}
	return e.await(ctx, e.newFlight(req, &l))
}

// load returns the record of req and slides its idle timeout: the record
// req.Opened read (Manager.Open made the "session.load" span then), or a
// fresh read in a "session.load" span. The claims are not needed here:
// l.rec is only classified, served and (by remove) looked up for its sid
// and sub, never saved; the refresh flight re-reads the full record before
// it writes.
func (e *engine) load(ctx context.Context, req TokenRequest) (loaded, error) {
	if req.Opened != nil {
		l := *req.Opened.l
		e.rs.slide(ctx, &l)
		return l, nil
	}
	ctx, span := e.tracer.Start(ctx, "session.load")
	defer span.End()
	l, err := e.rs.load(ctx, req.Ticket, forTokens)
	if err != nil {
		spanError(span, err)
		return loaded{}, err
	}
	e.rs.slide(ctx, &l)
	return l, nil
}

// withoutRefreshToken answers for a session that has no refresh token:
// its own access token while it is valid, after which the session ends;
// a target's token cannot be had at all.
func (e *engine) withoutRefreshToken(ctx context.Context, l *loaded, target idp.Target, state tokenState, current AccessToken) (AccessToken, error) {
	if !target.IsZero() {
		if state != tokenExpired {
			return current, nil
		}
		return AccessToken{}, fmt.Errorf("session: no refresh token to obtain the token of %s (does the login ask for offline_access?): %w", target, ErrTokenRefused)
	}
	if state != tokenExpired {
		return current, nil
	}
	_ = e.rs.remove(context.WithoutCancel(ctx), l.key, l.rec, ReasonExpired)
	return AccessToken{}, fmt.Errorf("session: access token expired and no refresh token: %w", ErrSessionExpired)
}

// holdErr is the error of a request that must wait for a held refresh: a
// refused target is refused at once, anything else is unavailable until
// retry.
func holdErr(retry time.Duration, cause error) error {
	if errors.Is(cause, ErrTokenRefused) {
		return cause
	}
	return &UnavailableError{RetryAfter: retry, Err: cause}
}

// forces reports whether rejected forces a refresh: it is the stored token
// h, and h was not obtained within MinRefreshInterval (a token that new is
// not fixed by another one, and an upstream that answers 401 to everything
// must not drive the token endpoint).
func (e *engine) forces(h held, rejected secret.String, now time.Time) bool {
	if rejected.IsZero() || rejected != h.value {
		return false
	}
	return h.refreshedAt.IsZero() || !now.Before(h.refreshedAt.Add(e.minForced))
}

// hold reports why no refresh of rec's token of target may start at now,
// and until when: the session's failure backoff, shared by every replica
// through the record, this replica's client being refused by the
// provider, or the provider refusing that target.
func (e *engine) hold(rec *Record, target string, now time.Time) (time.Time, error) {
	if until, ok := e.clientHold(now); ok {
		return until, ErrClientRejected
	}
	if until, ok := e.refused.held(target, now); ok {
		return until, fmt.Errorf("session: the provider refused this target's token recently: %w", ErrTokenRefused)
	}
	if now.Before(rec.RetryAt) {
		return rec.RetryAt, errBackoff
	}
	return time.Time{}, nil
}

// mayResend reports whether the refresh token of attempt a, whose outcome
// is unknown, may be sent again at now: only inside the provider's reuse
// grace period.
func (e *engine) mayResend(a Attempt, now time.Time) bool {
	return e.reuseGrace > graceMargin && now.Before(a.Since.Add(e.reuseGrace-graceMargin))
}

// join is step 2: it makes the request part of its session's flight,
// running f when no flight of that session runs (then f.led is set), and
// returns what the flight hands out. Every join is counted in running until
// its flight has ended, so drain sees a flight from the moment a request
// asks for it.
func (e *engine) join(ctx context.Context, f *flight) <-chan outcome {
	e.running.Add(1)
	ch := e.flights.DoChan(f.flightKey(), func() (any, error) {
		f.led = true
		return f.run(context.WithoutCancel(ctx)), nil
	})
	out := make(chan outcome, 1)
	go func() {
		res := <-ch
		e.running.Done()
		out <- res.Val.(outcome)
	}()
	return out
}

// await joins f's flight and waits for it, at most RefreshTimeout, in a
// "session.refresh" span (see traceAwait).
func (e *engine) await(ctx context.Context, f *flight) (tok AccessToken, err error) {
	ctx, span := e.tracer.Start(ctx, "session.refresh")
	var o outcome
	shared := false
	defer func() { traceAwait(span, o, shared, err) }()
	ch := e.join(ctx, f)
	timer := time.NewTimer(e.refreshTimeout)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return AccessToken{}, fmt.Errorf("session: refresh: %w", ctx.Err())
	case <-timer.C:
		return AccessToken{}, &UnavailableError{RetryAfter: retrySoon, Err: errRefreshSlow}
	case o = <-ch:
		shared = !f.led || o.shared
		if o.err != nil {
			if o.fallback && o.tok.Value != f.rejected {
				return o.tok, nil
			}
			return AccessToken{}, o.err
		}
		if shared {
			e.rs.met.shared.Inc()
		}
		return o.tok, nil
	}
}

// drain waits until the flights in progress have ended, or ctx ends.
func (e *engine) drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		e.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("session: drain refreshes: %w", ctx.Err())
	}
}

// usable reports whether rec's access token of target can be handed out
// instead of refreshing: not expired, and not the token the upstream
// rejected.
func (e *engine) usable(rec *Record, target string, rejected secret.String) bool {
	h := rec.held(target)
	return classify(h.expiry, e.rs.now(), e.ahead) != tokenExpired && (rejected.IsZero() || h.value != rejected)
}

// answer hands out rec's access token of target, with the session's DPoP
// key; refreshed says it comes from a refresh the request waited for.
func (e *engine) answer(rec *Record, target string, refreshed bool) AccessToken {
	h := rec.held(target)
	return AccessToken{Value: h.value, Expiry: h.expiry, Refreshed: refreshed, DPoP: e.keys.get(rec.DPoPKey)}
}

// fallback hands out rec's access token of target along with err while
// the token is still valid, and only err once it has expired.
func (e *engine) fallback(rec *Record, target string, err *UnavailableError) outcome {
	if classify(rec.held(target).expiry, e.rs.now(), e.ahead) != tokenExpired {
		return outcome{tok: e.answer(rec, target, false), err: err, fallback: true}
	}
	return outcome{err: err}
}

// saveMargin is how long before the lock lapses the token endpoint call is
// given up, leaving time to save its result under the lock.
func (e *engine) saveMargin() time.Duration {
	return min(maxSaveMargin, (e.lockTTL-e.refreshTimeout)/2)
}

// callBudget is the longest a token endpoint call may run.
func (e *engine) callBudget() time.Duration { return e.lockTTL - e.saveMargin() }

// abandoned reports whether attempt a has outrun the call budget at now: its
// maker died, or gave up and left the lock to lapse. A waiter then stops
// waiting; retry is when the maker's lock lapses.
func (e *engine) abandoned(a Attempt, now time.Time) (retry time.Duration, gone bool) {
	if a.IsZero() || now.Before(a.Since.Add(e.callBudget())) {
		return 0, false
	}
	return max(a.Since.Add(e.lockTTL).Sub(now), retrySoon), true
}

// forget drops the per-session state of an ended session.
func (e *engine) forget(key string) {
	e.pending.forget(key)
	e.exchanges.forget(key)
}

// maxPending bounds the pending saves kept.
const maxPending = 10000

// pendingSave is a refresh whose result the store did not take: the
// provider has rotated oldRefresh away, so the next flight saves rec instead
// of sending oldRefresh again.
type pendingSave struct {
	oldRefresh [attemptDigestSize]byte
	rec        Record
}

// pendingSaves holds, per session key, refreshed tokens the store did not
// take, so a rotated-away refresh token is never sent again from this
// process. Its zero value is empty and ready; it is safe for concurrent use.
type pendingSaves struct {
	mu sync.Mutex // guards m
	m  map[string]pendingSave
}

// set keeps p for key, dropping others when maxPending are kept.
func (ps *pendingSaves) set(key string, p pendingSave) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.m == nil {
		ps.m = make(map[string]pendingSave)
	}
	for k := range ps.m {
		if len(ps.m) < maxPending {
			break
		}
		delete(ps.m, k)
	}
	ps.m[key] = p
}

// take returns and forgets the pending save of key when the store still
// holds the refresh token it replaced. A pending save whose old token is no
// longer stored is obsolete and dropped.
func (ps *pendingSaves) take(key string, stored secret.String) (pendingSave, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.m[key]
	if !ok {
		return pendingSave{}, false
	}
	delete(ps.m, key)
	return p, p.oldRefresh == digestToken(stored)
}

// forget drops the pending save of key.
func (ps *pendingSaves) forget(key string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.m, key)
}
