package session

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
)

// Refresher trades a refresh token for new tokens at the provider's token
// endpoint (*idp.Provider implements it). Errors matching idp.ErrInvalidGrant
// mean the refresh token is dead; an *idp.TokenError may carry RetryAfter.
type Refresher interface {
	Refresh(ctx context.Context, refreshToken secret.String) (*idp.Token, error)
}

// Defaults for zero ManagerOptions durations.
const (
	DefaultIdleTimeout    = 24 * time.Hour
	DefaultMaxLifetime    = 30 * 24 * time.Hour
	DefaultLoginStateTTL  = 10 * time.Minute
	DefaultRefreshAhead   = 60 * time.Second
	DefaultRefreshTimeout = 10 * time.Second
	DefaultFailureBackoff = 5 * time.Second
	// lockMargin is added to RefreshTimeout for the default LockTTL: time
	// to reload before and to save after the token endpoint call.
	lockMargin = 5 * time.Second
)

// ManagerOptions configure a Manager. Zero durations take the defaults above.
type ManagerOptions struct {
	// Backend stores sessions, locks, login states and indexes. Required.
	Backend Backend
	// Secret is the server secret (at least 32 bytes). Required.
	Secret []byte
	// PreviousSecrets still open records and login states sealed before a
	// secret rotation; new ones are sealed with Secret.
	PreviousSecrets [][]byte
	// Refresher refreshes access tokens. Required.
	Refresher Refresher
	// Issuer is the provider's issuer. It namespaces the sid and sub
	// indexes that back-channel logout reads, so it must be the same on
	// every replica; it may be empty for providers without one.
	Issuer string
	// Now is the clock for token and session expiry (nil: time.Now).
	Now        func() time.Time
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics are not registered

	// IdleTimeout ends a session unused for that long (sliding).
	IdleTimeout time.Duration
	// MaxLifetime ends a session that long after login, used or not.
	MaxLifetime time.Duration
	// LoginStateTTL bounds how long a login may take.
	LoginStateTTL time.Duration
	// RefreshAhead: an access token that expires within RefreshAhead is
	// stale and refreshed, though still served if the refresh fails.
	RefreshAhead time.Duration
	// RefreshTimeout bounds one call to the token endpoint.
	RefreshTimeout time.Duration
	// FailureBackoff is how long a session waits after a failed refresh
	// before the next attempt (longer when the provider's Retry-After says
	// so).
	FailureBackoff time.Duration
	// LockTTL is how long the cross-replica refresh lock lives; it must
	// exceed RefreshTimeout (default RefreshTimeout + 5s), so the lock
	// cannot lapse while the holder's token endpoint call is in flight.
	LockTTL time.Duration
}

// Manager creates, loads and ends sessions and hands out fresh access
// tokens, refreshing them with the refresh engine (refresh.go).
//
// Manager is safe for concurrent use. Several Managers — in one process or
// in several replicas — may share one Backend: the store's compare-and-set
// writes and the refresh lock keep them consistent.
type Manager struct {
	store     Backend
	seal      *sealer
	refresher Refresher
	issuer    string
	now       func() time.Time
	log       *slog.Logger
	met       *metrics

	idle, maxLife, stateTTL                 time.Duration
	ahead, refreshTimeout, backoff, lockTTL time.Duration

	// flights shares one refresh among the requests of one session in
	// this process, keyed by session key.
	flights singleflight.Group

	mu sync.Mutex // guards failures and pending
	// failures holds, per session key, when its refresh backoff ends.
	failures map[string]time.Time
	// pending holds, per session key, refreshed tokens the store did not
	// take, so a rotated-away refresh token is never sent again.
	pending map[string]pendingSave
}

// maxTracked bounds the failures and pending maps.
const maxTracked = 10000

// NewManager checks opts and builds a Manager.
func NewManager(opts ManagerOptions) (*Manager, error) {
	if opts.Backend == nil {
		return nil, errors.New("session: new manager: no backend")
	}
	if opts.Refresher == nil {
		return nil, errors.New("session: new manager: no refresher")
	}
	seal, err := newSealer(opts.Secret, opts.PreviousSecrets)
	if err != nil {
		return nil, fmt.Errorf("session: new manager: %w", err)
	}
	m := &Manager{
		store:          opts.Backend,
		seal:           seal,
		refresher:      opts.Refresher,
		issuer:         opts.Issuer,
		now:            opts.Now,
		log:            opts.Logger,
		idle:           orDefault(opts.IdleTimeout, DefaultIdleTimeout),
		maxLife:        orDefault(opts.MaxLifetime, DefaultMaxLifetime),
		stateTTL:       orDefault(opts.LoginStateTTL, DefaultLoginStateTTL),
		ahead:          orDefault(opts.RefreshAhead, DefaultRefreshAhead),
		refreshTimeout: orDefault(opts.RefreshTimeout, DefaultRefreshTimeout),
		backoff:        orDefault(opts.FailureBackoff, DefaultFailureBackoff),
		failures:       make(map[string]time.Time),
		pending:        make(map[string]pendingSave),
	}
	m.lockTTL = orDefault(opts.LockTTL, m.refreshTimeout+lockMargin)
	for name, d := range map[string]time.Duration{
		"IdleTimeout": opts.IdleTimeout, "MaxLifetime": opts.MaxLifetime, "LoginStateTTL": opts.LoginStateTTL,
		"RefreshAhead": opts.RefreshAhead, "RefreshTimeout": opts.RefreshTimeout,
		"FailureBackoff": opts.FailureBackoff, "LockTTL": opts.LockTTL,
	} {
		if d < 0 {
			return nil, fmt.Errorf("session: new manager: %s is negative", name)
		}
	}
	if m.lockTTL <= m.refreshTimeout {
		return nil, fmt.Errorf("session: new manager: LockTTL %s must exceed RefreshTimeout %s", m.lockTTL, m.refreshTimeout)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if m.met, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	return m, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// storeErr wraps a failed store call in ErrStoreUnavailable and counts it,
// unless the caller's own context was cancelled (the client went away: not
// the store's fault).
func (m *Manager) storeErr(ctx context.Context, op string, err error) error {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return fmt.Errorf("session: %s: %w", op, err)
	}
	m.met.storeErrors.WithLabelValues(op).Inc()
	return fmt.Errorf("session: %s: %w: %w", op, ErrStoreUnavailable, err)
}

// loaded is a session record as read from the store.
type loaded struct {
	key     string
	rec     *Record
	version uint64
	ttl     time.Duration
}

// load reads and opens the session of t and enforces the absolute lifetime.
// Without withClaims the record's Claims stay nil (the request path needs
// only the tokens); such a record must not be saved.
func (m *Manager) load(ctx context.Context, t Ticket, withClaims bool) (*loaded, error) {
	key := sessionKey(t.ID)
	e, err := m.store.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("session: load: %w", ErrNoSession)
	}
	if err != nil {
		return nil, m.storeErr(ctx, opGet, err)
	}
	rec, err := m.seal.openRecordClaims(t, key, e.Data, withClaims)
	if err != nil {
		// Wrong per-session key, tampered or foreign record: the cookie
		// does not own this entry. Never delete it.
		return nil, fmt.Errorf("session: load: %w", ErrNoSession)
	}
	if !m.now().Before(m.endOf(rec)) {
		_ = m.remove(context.WithoutCancel(ctx), key, rec, ReasonLifetime)
		return nil, fmt.Errorf("session: load: lifetime over: %w", ErrSessionExpired)
	}
	return &loaded{key: key, rec: rec, version: e.Version, ttl: e.TTL}, nil
}

// endOf is when the absolute lifetime of rec ends.
func (m *Manager) endOf(rec *Record) time.Time { return rec.CreatedAt.Add(m.maxLife) }

// ttlFor is the store ttl a session gets when used now: the idle timeout,
// cut at the absolute lifetime.
func (m *Manager) ttlFor(rec *Record, now time.Time) time.Duration {
	return min(m.idle, m.endOf(rec).Sub(now))
}

// slide extends the idle timeout of a used session and returns when the
// session now ends. To keep a steady-state request at one store round trip
// it touches only when the entry has lost more than a minute (or half the
// idle timeout, if shorter) of its ttl.
func (m *Manager) slide(ctx context.Context, l *loaded) time.Time {
	now := m.now()
	want := m.ttlFor(l.rec, now)
	if want-l.ttl <= min(time.Minute, m.idle/2) {
		return now.Add(l.ttl)
	}
	if err := m.store.Touch(ctx, l.key, want); err != nil {
		if !errors.Is(err, ErrNotFound) {
			// The session keeps its old ttl; the next request tries again.
			m.log.LogAttrs(ctx, slog.LevelWarn, "session touch failed", slog.Any("error", m.storeErr(ctx, opTouch, err)))
		}
		return now.Add(l.ttl)
	}
	return now.Add(want)
}

// remove deletes a session and its index entries and counts why.
func (m *Manager) remove(ctx context.Context, key string, rec *Record, reason string) error {
	if err := m.store.Delete(ctx, key); err != nil {
		return m.storeErr(ctx, opDelete, err)
	}
	m.met.ended.WithLabelValues(reason).Inc()
	for _, ix := range m.indexesOf(rec) {
		if err := m.store.RemoveFromIndex(ctx, ix, key); err != nil {
			// A stale member is harmless: EndBy* checks each member.
			m.log.LogAttrs(ctx, slog.LevelWarn, "session index cleanup failed", slog.Any("error", m.storeErr(ctx, opIndexRemove, err)))
		}
	}
	return nil
}

func (m *Manager) indexesOf(rec *Record) []string {
	var ix []string
	if rec.SID != "" {
		ix = append(ix, sidIndexKey(m.issuer, rec.SID))
	}
	if rec.Subject != "" {
		ix = append(ix, subIndexKey(m.issuer, rec.Subject))
	}
	return ix
}

// Create stores a new session under a fresh ticket and returns the ticket.
// rec.CreatedAt is set to now: the absolute lifetime starts here. via is the
// metric label ("login" or "capture").
func (m *Manager) Create(ctx context.Context, rec Record, via string) (Ticket, error) {
	rec.CreatedAt = m.now()
	t, err := NewTicket()
	if err != nil {
		return Ticket{}, err
	}
	key := sessionKey(t.ID)
	data, err := m.seal.sealRecord(t, key, &rec)
	if err != nil {
		return Ticket{}, fmt.Errorf("session: create: %w", err)
	}
	// Index first: a member whose session never got written is harmless,
	// a session that back-channel logout cannot find is not.
	for _, ix := range m.indexesOf(&rec) {
		if err := m.store.AddToIndex(ctx, ix, key, m.maxLife); err != nil {
			return Ticket{}, m.storeErr(ctx, opIndexAdd, err)
		}
	}
	if err := m.store.Create(ctx, key, data, m.ttlFor(&rec, rec.CreatedAt)); err != nil {
		if errors.Is(err, ErrConflict) {
			return Ticket{}, fmt.Errorf("session: create: ticket collision: %w", err)
		}
		return Ticket{}, m.storeErr(ctx, opCreate, err)
	}
	m.met.created.WithLabelValues(via).Inc()
	return t, nil
}

// Load returns the session of t and slides its idle timeout.
// Errors: ErrNoSession (missing, expired, wrong key), ErrSessionExpired
// (absolute lifetime over), ErrStoreUnavailable.
func (m *Manager) Load(ctx context.Context, t Ticket) (*Session, error) {
	l, err := m.load(ctx, t, true)
	if err != nil {
		return nil, err
	}
	return &Session{Record: *l.rec, Expires: m.slide(ctx, l)}, nil
}

// End deletes the session of t and its index entries and returns the record
// it held (for revocation and id_token_hint). reason is the metric label.
func (m *Manager) End(ctx context.Context, t Ticket, reason string) (*Record, error) {
	key := sessionKey(t.ID)
	e, err := m.store.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("session: end: %w", ErrNoSession)
	}
	if err != nil {
		return nil, m.storeErr(ctx, opGet, err)
	}
	rec, err := m.seal.openRecord(t, key, e.Data)
	if err != nil {
		return nil, fmt.Errorf("session: end: %w", ErrNoSession)
	}
	if err := m.remove(ctx, key, rec, reason); err != nil {
		return nil, err
	}
	m.forget(key)
	return rec, nil
}

// EndBySID ends every session whose ID token carried this sid and reports
// how many were live.
func (m *Manager) EndBySID(ctx context.Context, sid string) (int, error) {
	if sid == "" {
		return 0, nil
	}
	return m.endByIndex(ctx, sidIndexKey(m.issuer, sid))
}

// EndBySubject ends every session of this subject and reports how many were
// live.
func (m *Manager) EndBySubject(ctx context.Context, sub string) (int, error) {
	if sub == "" {
		return 0, nil
	}
	return m.endByIndex(ctx, subIndexKey(m.issuer, sub))
}

func (m *Manager) endByIndex(ctx context.Context, index string) (int, error) {
	members, err := m.store.IndexMembers(ctx, index)
	if err != nil {
		return 0, m.storeErr(ctx, opIndexList, err)
	}
	n := 0
	for _, key := range members {
		// Records cannot be opened without their tickets; a Get tells a
		// live session from a member that already expired.
		if _, err := m.store.Get(ctx, key); errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			return n, m.storeErr(ctx, opGet, err)
		}
		if err := m.store.Delete(ctx, key); err != nil {
			return n, m.storeErr(ctx, opDelete, err)
		}
		m.forget(key)
		m.met.ended.WithLabelValues(ReasonBackchannel).Inc()
		n++
	}
	if len(members) > 0 {
		if err := m.store.RemoveFromIndex(ctx, index, members...); err != nil {
			return n, m.storeErr(ctx, opIndexRemove, err)
		}
	}
	return n, nil
}

// SaveLoginState stores st, sealed, under a hash of st.State for
// LoginStateTTL. CreatedAt is set when zero.
func (m *Manager) SaveLoginState(ctx context.Context, st LoginState) error {
	if st.State == "" {
		return errors.New("session: save login state: empty state")
	}
	if st.CreatedAt.IsZero() {
		st.CreatedAt = m.now()
	}
	key := stateKey(st.State)
	data, err := m.seal.sealState(key, &st)
	if err != nil {
		return fmt.Errorf("session: save login state: %w", err)
	}
	if err := m.store.PutState(ctx, key, data, m.stateTTL); err != nil {
		return m.storeErr(ctx, opPutState, err)
	}
	return nil
}

// TakeLoginState returns the login state saved under state and deletes it,
// so it works once. Unknown, expired, used or undecipherable states are
// ErrUnknownState.
func (m *Manager) TakeLoginState(ctx context.Context, state string) (*LoginState, error) {
	if state == "" {
		return nil, ErrUnknownState
	}
	key := stateKey(state)
	data, err := m.store.TakeState(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrUnknownState
	}
	if err != nil {
		return nil, m.storeErr(ctx, opTakeState, err)
	}
	st, err := m.seal.openState(key, data)
	if err != nil || subtle.ConstantTimeCompare([]byte(st.State), []byte(state)) != 1 {
		return nil, ErrUnknownState
	}
	if !m.now().Before(st.CreatedAt.Add(m.stateTTL)) {
		return nil, ErrUnknownState
	}
	return st, nil
}

// Ready reports whether the store is reachable.
func (m *Manager) Ready(ctx context.Context) error {
	if err := m.store.Ping(ctx); err != nil {
		return m.storeErr(ctx, opPing, err)
	}
	return nil
}
