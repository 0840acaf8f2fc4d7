package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// records reads and writes sealed session records in the Backend: the layer
// that the Manager's lifecycle methods and the refresh engine share. It
// opens and seals records, enforces the absolute lifetime, slides the idle
// timeout, keeps the back-channel indexes in step with the sessions they
// name, and counts store failures.
//
// records is safe for concurrent use; its only mutable state is what
// opened keeps, which has its own locks.
type records struct {
	store Backend
	// cached is store's cached read (storage.CachedReader), or its Get:
	// what the request path reads with.
	cached func(ctx context.Context, key string) (Entry, error)
	seal   *sealer
	// opened memoises the request path's opening of unchanged records.
	opened *openedRecords
	issuer string // namespaces the sid and sub indexes
	now    func() time.Time
	log    *slog.Logger
	met    *metrics

	idle    time.Duration // IdleTimeout
	maxLife time.Duration // MaxLifetime

	// admin: admin entries are kept and the kill switch is checked;
	// escrow: the entries hold the sessions' keys (admin.go). kill is
	// this replica's copy of the kill instant.
	admin, escrow bool
	kill          *killSwitch
}

// loaded is a session record as read from the store.
type loaded struct {
	key     string
	rec     *Record
	version uint64
	ttl     time.Duration
	// bearer is the Authorization header value of rec.AccessToken when
	// the record was opened for the request path; it may be empty.
	bearer secret.String
}

// storeErr wraps a failed store call in ErrStoreUnavailable and counts it,
// unless the caller's own context was cancelled (the client went away: not
// the store's fault).
func (rs *records) storeErr(ctx context.Context, op string, err error) error {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return fmt.Errorf("session: %s: %w", op, err)
	}
	rs.met.storeErrors.WithLabelValues(op).Inc()
	return fmt.Errorf("session: %s: %w: %w", op, ErrStoreUnavailable, err)
}

// reading says what a record is read for, and so whether it is decoded
// with its claims and whether it may be one that concurrent requests share.
type reading uint8

const (
	// forTokens: the request path, which needs the tokens and not the
	// claims (Claims stay nil). The record may be shared with concurrent
	// requests (see openedRecords): it is read-only and never saved.
	forTokens reading = iota
	// forClaims: the request path of a route that judges or describes the
	// user (Manager.Open): with the claims, shared and read-only as above.
	forClaims
	// forOwn: with the claims, a record of the caller's own (Load, End).
	forOwn
)

// claims reports whether a record read for r is decoded with its claims.
func (r reading) claims() bool { return r != forTokens }

// open reads and opens the session of t, for r. Errors: errNotOpened (no
// entry, or one this ticket does not open), ErrStoreUnavailable.
func (rs *records) open(ctx context.Context, t Ticket, r reading) (loaded, error) {
	key := sessionKey(t.ID)
	get := rs.cached
	if r == forOwn {
		get = rs.store.Get
	}
	e, err := get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		rs.opened.forget(key)
		return loaded{}, errNotOpened
	}
	if err != nil {
		return loaded{}, rs.storeErr(ctx, opGet, err)
	}
	l := loaded{key: key, version: e.Version, ttl: e.TTL}
	if r != forOwn {
		if o, ok := rs.opened.lookup(key, t, e, r.claims()); ok {
			if rs.killed(ctx, o.rec) {
				return loaded{}, errNotOpened
			}
			l.rec, l.bearer = o.rec, o.bearer
			return l, nil
		}
	}
	rec, err := rs.seal.openRecordClaims(t, key, e.Data, r.claims())
	if err != nil {
		// Wrong per-session key, tampered or foreign record: the cookie
		// does not own this entry. Never delete it.
		return loaded{}, errNotOpened
	}
	if rs.killed(ctx, rec) {
		return loaded{}, errNotOpened
	}
	l.rec = rec
	if r != forOwn {
		l.bearer = rs.opened.add(key, t, e, rec, r.claims()).bearer
	}
	return l, nil
}

// errNotOpened: no session entry, or one the ticket does not open. Callers
// say ErrNoSession with their own prefix.
var errNotOpened = errors.New("session: no entry this ticket opens")

// load opens the session of t (see open) and enforces the absolute
// lifetime.
func (rs *records) load(ctx context.Context, t Ticket, r reading) (loaded, error) {
	l, err := rs.open(ctx, t, r)
	if errors.Is(err, errNotOpened) {
		return loaded{}, fmt.Errorf("session: load: %w", ErrNoSession)
	}
	if err != nil {
		return loaded{}, err
	}
	if !rs.now().Before(rs.endOf(l.rec)) {
		_ = rs.remove(context.WithoutCancel(ctx), l.key, l.rec, ReasonLifetime)
		return loaded{}, fmt.Errorf("session: load: lifetime over: %w", ErrSessionExpired)
	}
	return l, nil
}

// endOf is when the absolute lifetime of rec ends.
func (rs *records) endOf(rec *Record) time.Time { return rec.CreatedAt.Add(rs.maxLife) }

// ttlFor is the store ttl a session gets when used now: the idle timeout,
// cut at the absolute lifetime.
func (rs *records) ttlFor(rec *Record, now time.Time) time.Duration {
	return min(rs.idle, rs.endOf(rec).Sub(now))
}

// slide extends the idle timeout of a used session and returns when the
// session now ends. To keep a steady-state request at one store round trip
// it touches only when the entry has lost more than a minute (or half the
// idle timeout, if shorter) of its ttl.
func (rs *records) slide(ctx context.Context, l *loaded) time.Time {
	now := rs.now()
	want := rs.ttlFor(l.rec, now)
	if want-l.ttl <= min(time.Minute, rs.idle/2) {
		return now.Add(l.ttl)
	}
	if err := rs.store.Touch(ctx, l.key, want); err != nil {
		if !errors.Is(err, ErrNotFound) {
			// The session keeps its old ttl; the next request tries again.
			rs.log.LogAttrs(ctx, slog.LevelWarn, "session touch failed", slog.Any("error", rs.storeErr(ctx, opTouch, err)))
		}
		return now.Add(l.ttl)
	}
	return now.Add(want)
}

// save writes rec with compare-and-set on version and returns the new
// version.
func (rs *records) save(ctx context.Context, t Ticket, key string, version uint64, rec *Record) (uint64, error) {
	data, err := rs.seal.sealRecord(t, key, rec)
	if err != nil {
		return 0, fmt.Errorf("session: save: %w", err)
	}
	ttl := rs.ttlFor(rec, rs.now())
	if ttl <= 0 {
		return 0, fmt.Errorf("session: save: lifetime over: %w", ErrNoSession)
	}
	v, err := rs.store.Update(ctx, key, version, data, ttl)
	switch {
	case errors.Is(err, ErrNotFound):
		return 0, fmt.Errorf("session: save: session ended meanwhile: %w", ErrNoSession)
	case errors.Is(err, ErrConflict):
		// Only possible when a refresh lock lapsed and another replica
		// wrote.
		return 0, fmt.Errorf("session: save: %w", err)
	case err != nil:
		return 0, rs.storeErr(ctx, opUpdate, err)
	}
	return v, nil
}

// remove deletes a session and its index entries and counts why.
func (rs *records) remove(ctx context.Context, key string, rec *Record, reason EndReason) error {
	if err := rs.store.Delete(ctx, key); err != nil {
		return rs.storeErr(ctx, opDelete, err)
	}
	rs.opened.forget(key)
	rs.met.ended.WithLabelValues(string(reason)).Inc()
	rs.removeAdminEntry(ctx, key)
	for _, ix := range rs.indexesOf(rec) {
		if err := rs.store.RemoveFromIndex(ctx, ix, key); err != nil {
			// A stale member is harmless: EndBy* checks each member.
			rs.log.LogAttrs(ctx, slog.LevelWarn, "session index cleanup failed", slog.Any("error", rs.storeErr(ctx, opIndexRemove, err)))
		}
	}
	return nil
}

// indexesOf names the back-channel logout indexes rec belongs to.
func (rs *records) indexesOf(rec *Record) []string {
	var ix []string
	if rec.SID != "" {
		ix = append(ix, sidIndexKey(rs.issuer, rec.SID))
	}
	if rec.Subject != "" {
		ix = append(ix, subIndexKey(rs.issuer, rec.Subject))
	}
	return ix
}
