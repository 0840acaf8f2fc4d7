package session

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tokenrelay/tokenrelay/secret"
)

// The admin view of sessions (the admin API's list, end and kill switch).
//
// A record opens only with its ticket, which only the browser holds. So
// that an operator can list a subject's sessions and end them, a Manager
// built with ManagerOptions.Admin keeps, beside each record it creates, an
// admin entry under "a:{h}" (the record's hash tag, so Redis Cluster keeps
// both in one slot): the creation time and a user-agent summary, sealed
// under a key derived from the server secret (HKDF info adminInfo) with
// the entry's store key as additional data. It is written at login only,
// under 100 bytes, and deleted with the session. Ending such a session
// deletes its record unopened: the cookie stops working everywhere, but
// its refresh token cannot be read, so it is not revoked.
//
// With ManagerOptions.Escrow as well, the entry also holds the ticket's
// per-session key, so ending a session opens its record and hands its
// refresh token back for revocation. The cost, stated in
// docs/security.md: the server secret and a store dump together then
// open every session created with escrow on; either alone still opens
// none. Escrow is off unless configured (admin.escrow).
//
// The kill switch ends every session at once, on every replica, without
// touching a record: EndAll stores one entry, "kill", holding an instant;
// a record created before it no longer opens. Each replica reads the entry
// at most once per killCheckInterval (one store read a second, not one a
// request), so a kill takes effect everywhere within about a second. The
// entry lives MaxLifetime, after which every session older than the
// instant has ended anyway. Without Admin nothing is read.

// killKey is the store key of the kill switch's instant.
const killKey = "kill"

// killCheckInterval is how stale a replica's copy of the kill instant may
// get.
const killCheckInterval = time.Second

// adminKeyFor is the key of the admin entry of the record stored under
// sessKey (built by sessionKey).
func adminKeyFor(sessKey string) string { return "a:" + sessKey[len("s:"):] }

// maxUserAgent bounds the user-agent summary an admin entry keeps.
const maxUserAgent = 64

// ErrAdminDisabled: the Manager keeps no admin entries (ManagerOptions.Admin
// is off), so it cannot list or end sessions without their tickets.
var ErrAdminDisabled = errors.New("session: admin view disabled")

// SessionInfo is what the admin API shows of a session: never a token.
type SessionInfo struct {
	// ID names the session to the admin API: the first 16 characters of
	// the hash of its id, as in its store key.
	ID        string
	CreatedAt time.Time
	// LastUsed is when a request last slid the idle timeout: to within
	// the minute the slide waits, and no later than MaxLifetime less
	// IdleTimeout after creation (the last idle period does not slide).
	LastUsed  time.Time
	ExpiresAt time.Time
	UserAgent string
}

// EndedSession is a session the admin view ended.
type EndedSession struct {
	ID string
	// Escrowed: the session's key was escrowed, so its record was opened
	// and RefreshToken is its refresh token (zero when it had none).
	// Without escrow the record was deleted unopened, and its refresh
	// token stays valid at the provider until it expires there.
	Escrowed     bool
	RefreshToken secret.String
}

// adminEntry is an admin entry, opened.
type adminEntry struct {
	// key is the ticket's per-session key when escrowed is set.
	key       [16]byte
	escrowed  bool
	createdAt time.Time
	userAgent string
}

func encodeAdminEntry(a *adminEntry) []byte {
	e := encoder{b: make([]byte, 0, 32+len(a.userAgent))}
	if a.escrowed {
		e.bytes(a.key[:])
	} else {
		e.bytes(nil)
	}
	e.time(a.createdAt)
	e.str(a.userAgent)
	return e.b
}

func decodeAdminEntry(b []byte) (*adminEntry, error) {
	d := decoder{b: b}
	key := d.bytes()
	a := &adminEntry{createdAt: d.time(), userAgent: d.str()}
	if err := d.done(); err != nil {
		return nil, errMalformed
	}
	switch len(key) {
	case 0:
	case len(a.key):
		a.escrowed = true
		copy(a.key[:], key)
	default:
		return nil, errMalformed
	}
	return a, nil
}

// sealAdmin seals a for the admin entry of the record under sessKey.
func (s *sealer) sealAdmin(sessKey string, a *adminEntry) ([]byte, error) {
	return s.seal(s.adminAEADs[0], adminKeyFor(sessKey), encodeAdminEntry(a))
}

// openAdmin reverses sealAdmin, trying every secret.
func (s *sealer) openAdmin(sessKey string, data []byte) (*adminEntry, error) {
	for _, aead := range s.adminAEADs {
		plain, err := s.open(aead, adminKeyFor(sessKey), data)
		if err != nil {
			continue
		}
		return decodeAdminEntry(plain)
	}
	return nil, errOpen
}

// shortID is the SessionInfo.ID of the record under sessKey.
func shortID(sessKey string) string {
	h := sessKey[len("s:{"):]
	return h[:min(16, len(h))]
}

// writeAdminEntry stores the admin entry of a new session, when the admin
// view is on; it holds the session's key only with escrow. It lives
// MaxLifetime, as long as the session can.
func (rs *records) writeAdminEntry(ctx context.Context, t Ticket, sessKey string, rec *Record) error {
	if !rs.admin {
		return nil
	}
	ua := rec.UserAgent
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	a := &adminEntry{createdAt: rec.CreatedAt, userAgent: ua}
	if rs.escrow {
		a.key, a.escrowed = t.Key, true
	}
	data, err := rs.seal.sealAdmin(sessKey, a)
	if err != nil {
		return fmt.Errorf("session: admin entry: %w", err)
	}
	if err := rs.store.Create(ctx, adminKeyFor(sessKey), data, rs.maxLife); err != nil && !errors.Is(err, ErrConflict) {
		return rs.storeErr(ctx, opCreate, err)
	}
	return nil
}

// removeAdminEntry deletes the admin entry of the record under sessKey,
// when the admin view is on. A failure is logged: the entry expires on its
// own and opens nothing without its record.
func (rs *records) removeAdminEntry(ctx context.Context, sessKey string) {
	if !rs.admin {
		return
	}
	if err := rs.store.Delete(ctx, adminKeyFor(sessKey)); err != nil {
		rs.log.LogAttrs(ctx, slog.LevelWarn, "session admin entry cleanup failed", slog.Any("error", rs.storeErr(ctx, opDelete, err)))
	}
}

// adminSession is a live session of a subject, as the admin view finds it.
type adminSession struct {
	key   string
	entry *adminEntry
	info  SessionInfo
}

// subjectSessions finds the live sessions of sub through its index: those
// with a record and an admin entry, created after the kill instant.
func (m *Manager) subjectSessions(ctx context.Context, sub string) ([]adminSession, error) {
	if !m.admin {
		return nil, ErrAdminDisabled
	}
	members, err := m.store.IndexMembers(ctx, subIndexKey(m.issuer, sub))
	if err != nil {
		return nil, m.storeErr(ctx, opIndexList, err)
	}
	killed := m.kill.instant(ctx)
	var out []adminSession
	for _, key := range members {
		s, err := m.adminSession(ctx, key)
		if err != nil {
			return nil, err
		}
		if s != nil && !s.entry.createdAt.Before(killed) {
			out = append(out, *s)
		}
	}
	return out, nil
}

// adminSession reads the record and admin entry of key: nil when either
// is gone or the entry does not open.
func (m *Manager) adminSession(ctx context.Context, key string) (*adminSession, error) {
	rec, err := m.store.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, m.storeErr(ctx, opGet, err)
	}
	raw, err := m.store.Get(ctx, adminKeyFor(key))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, m.storeErr(ctx, opGet, err)
	}
	a, err := m.seal.openAdmin(key, raw.Data)
	if err != nil {
		return nil, nil
	}
	now := m.now()
	lastUsed := now.Add(rec.TTL - m.idle)
	if lastUsed.Before(a.createdAt) {
		lastUsed = a.createdAt
	}
	return &adminSession{key: key, entry: a, info: SessionInfo{
		ID:        shortID(key),
		CreatedAt: a.createdAt,
		LastUsed:  lastUsed,
		ExpiresAt: now.Add(rec.TTL),
		UserAgent: a.userAgent,
	}}, nil
}

// SubjectSessions lists the live sessions of sub, oldest first by the
// index's order. ErrAdminDisabled without the admin view;
// ErrStoreUnavailable.
func (m *Manager) SubjectSessions(ctx context.Context, sub string) ([]SessionInfo, error) {
	ss, err := m.subjectSessions(ctx, sub)
	if err != nil {
		return nil, err
	}
	infos := make([]SessionInfo, len(ss))
	for i, s := range ss {
		infos[i] = s.info
	}
	return infos, nil
}

// EndSubjectSessions ends the session of sub named id, or every session
// of sub when id is "", on every replica, and returns them, with their
// refresh tokens when their keys were escrowed, for revocation. No live
// session of that name is ErrNoSession; ErrAdminDisabled without the
// admin view; ErrStoreUnavailable (with the sessions ended before it).
func (m *Manager) EndSubjectSessions(ctx context.Context, sub, id string) ([]EndedSession, error) {
	ss, err := m.subjectSessions(ctx, sub)
	if err != nil {
		return nil, err
	}
	var ended []EndedSession
	for _, s := range ss {
		if id != "" && s.info.ID != id {
			continue
		}
		e, ok, err := m.endAdminSession(ctx, sub, s)
		if err != nil {
			return ended, err
		}
		if ok {
			ended = append(ended, e)
		}
	}
	if id != "" && len(ended) == 0 {
		return nil, fmt.Errorf("session: end %s: %w", id, ErrNoSession)
	}
	return ended, nil
}

// endAdminSession ends s, a session of sub: with its escrowed key it opens
// the record, for its refresh token, and removes it (record, index
// entries, admin entry); without, it deletes the record unopened. ok is
// false when the session ended meanwhile.
func (m *Manager) endAdminSession(ctx context.Context, sub string, s adminSession) (EndedSession, bool, error) {
	ended := EndedSession{ID: s.info.ID, Escrowed: s.entry.escrowed}
	if !s.entry.escrowed {
		return ended, true, m.removeUnopened(ctx, sub, s.key)
	}
	e, err := m.store.Get(ctx, s.key)
	if errors.Is(err, ErrNotFound) {
		return ended, false, nil
	}
	if err != nil {
		return ended, false, m.storeErr(ctx, opGet, err)
	}
	rec, err := m.seal.openRecord(Ticket{Key: s.entry.key}, s.key, e.Data)
	if err != nil {
		return ended, false, nil
	}
	if err := m.remove(ctx, s.key, rec, ReasonAdmin); err != nil {
		return ended, false, err
	}
	m.engine.forget(s.key)
	ended.RefreshToken = rec.RefreshToken
	return ended, true, nil
}

// removeUnopened deletes the record under key, a session of sub, without
// opening it, and its admin entry and sub index entry. Its sid index
// entry, which only the record names, stays: a stale member is harmless.
func (m *Manager) removeUnopened(ctx context.Context, sub, key string) error {
	if err := m.store.Delete(ctx, key); err != nil {
		return m.storeErr(ctx, opDelete, err)
	}
	m.met.ended.WithLabelValues(string(ReasonAdmin)).Inc()
	m.removeAdminEntry(ctx, key)
	if err := m.store.RemoveFromIndex(ctx, subIndexKey(m.issuer, sub), key); err != nil {
		m.log.LogAttrs(ctx, slog.LevelWarn, "session index cleanup failed", slog.Any("error", m.storeErr(ctx, opIndexRemove, err)))
	}
	m.engine.forget(key)
	return nil
}

// EndAll is the kill switch: every session created before now ends, on
// every replica within about killCheckInterval, and the instant is
// returned. Records are not touched (their refresh tokens are not
// revoked); they expire with their ttls. ErrAdminDisabled without the
// admin view; ErrStoreUnavailable.
func (m *Manager) EndAll(ctx context.Context) (time.Time, error) {
	if !m.admin {
		return time.Time{}, ErrAdminDisabled
	}
	at := m.now()
	data := binary.AppendVarint(nil, at.UnixNano())
	if err := m.store.Delete(ctx, killKey); err != nil {
		return time.Time{}, m.storeErr(ctx, opDelete, err)
	}
	if err := m.store.Create(ctx, killKey, data, m.maxLife); err != nil && !errors.Is(err, ErrConflict) {
		return time.Time{}, m.storeErr(ctx, opCreate, err)
	}
	m.kill.set(at)
	return at, nil
}

// killSwitch is this replica's copy of the kill instant. It is safe for
// concurrent use.
type killSwitch struct {
	rs *records
	// at is the kill instant in Unix nanoseconds (0: none), checked is
	// when it was last read from the store (Unix nanoseconds).
	at, checked atomic.Int64
	// reads shares one store read among the requests that find the copy
	// stale.
	reads singleflight.Group
	mu    sync.Mutex // serialises set against a read landing late
}

// instant returns the kill instant, reading it again from the store when
// this replica's copy is older than killCheckInterval. A failed read keeps
// the old copy until the next interval (and is counted): requests are not
// refused for it, nor held up by a retry each.
func (k *killSwitch) instant(ctx context.Context) time.Time {
	now := k.rs.now()
	if now.UnixNano()-k.checked.Load() >= int64(killCheckInterval) {
		_, _, _ = k.reads.Do(killKey, func() (any, error) {
			k.read(context.WithoutCancel(ctx), now)
			return nil, nil
		})
	}
	if n := k.at.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

func (k *killSwitch) read(ctx context.Context, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, killCheckInterval)
	defer cancel()
	var at int64
	e, err := k.rs.store.Get(ctx, killKey)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		_ = k.rs.storeErr(ctx, opGet, err)
	default:
		if n, c := binary.Varint(e.Data); c > 0 {
			at = n
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.at.Store(max(at, k.at.Load()))
	k.checked.Store(now.UnixNano())
}

// set records a kill made by this replica at once.
func (k *killSwitch) set(at time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.at.Store(max(at.UnixNano(), k.at.Load()))
}

// killed reports whether rec was created before the kill instant; always
// false without the admin view, which reads nothing.
func (rs *records) killed(ctx context.Context, rec *Record) bool {
	if !rs.admin {
		return false
	}
	return rec.CreatedAt.Before(rs.kill.instant(ctx))
}
