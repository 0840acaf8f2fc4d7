package session

import (
	"context"
	"errors"
	"fmt"
	"github.com/tokenrelay/tokenrelay/session/storage"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/problem"
	"github.com/tokenrelay/tokenrelay/secret"
)

// Refresher trades a refresh token for new tokens at the provider's token
// endpoint (*idp.Provider implements it). Errors matching idp.ErrInvalidGrant
// mean the refresh token is dead; an *idp.TokenError may carry RetryAfter.
type Refresher interface {
	Refresh(ctx context.Context, refreshToken secret.String) (*idp.Token, error)
}

// ManagerOptions configure a Manager: the session lifetimes and refresh
// tuning from the configuration file (zero durations take the defaults of
// their WithDefaults), and the Manager's dependencies.
type ManagerOptions struct {
	// LifetimeOptions bound a session's and a login's life: IdleTimeout
	// ends a session unused for that long (sliding), MaxLifetime one that
	// long after login, and LoginStateTTL a login-binding cookie older
	// than that (by the creation time sealed inside it).
	LifetimeOptions
	// RefreshOptions tune the refresh engine: an access token within
	// Ahead of expiry is refreshed; a request waits at most Timeout for a
	// refresh (another replica's included) and then gets the still-valid
	// token or *UnavailableError while the refresh carries on under the
	// cross-replica lock, which lives LockTTL (the longest one refresh may
	// take); a session waits FailureBackoff after a failed refresh (longer
	// when the provider's Retry-After says so); a refresh forced by an
	// upstream 401 comes at least MinInterval after the last one, across
	// replicas; and a refresh token whose call's outcome is unknown is sent
	// again only within ReuseGrace, the provider's reuse grace period (zero:
	// never).
	RefreshOptions

	// Backend stores sessions, locks, used-login claims and indexes.
	// Required.
	Backend Backend
	// Secret is the server secret (at least MinSecretBytes). Required.
	Secret []byte
	// PreviousSecrets still open records and login-binding cookies sealed
	// before a secret rotation; new ones are sealed with Secret.
	PreviousSecrets [][]byte
	// Refresher refreshes access tokens. Required. When it is also a
	// TargetRefresher (as *idp.Provider is), it refreshes the tokens of
	// route targets and DPoP-bound tokens too.
	Refresher Refresher
	// Exchanger makes the tokens of token exchange routes; nil: none.
	Exchanger Exchanger
	// ClientGrant makes tokenrelay's own (client credentials) tokens;
	// nil: none.
	ClientGrant ClientGrant
	// ClientDPoP binds the client tokens to a DPoP key derived from
	// Secret (the provider uses DPoP).
	ClientDPoP bool
	// Issuer is the provider's issuer. It namespaces the sid and sub
	// indexes that back-channel logout reads, so it must be the same on
	// every replica; it may be empty for providers without one.
	Issuer string
	// OpenedRecords is how many opened session records the request path
	// keeps, so that an unchanged record is not decrypted and decoded on
	// every request (see openedRecords): 0 takes the default (4096),
	// a negative count keeps none.
	OpenedRecords int
	// Admin keeps an admin entry beside each new session (its creation
	// time and user-agent summary), so the admin API can list and end a
	// subject's sessions without their tickets, and turns the kill
	// switch's check on (admin.go).
	Admin bool
	// Escrow, with Admin, also keeps each new session's key in its admin
	// entry, sealed under the server secret, so a session the admin API
	// ends has its refresh token revoked. A store dump and the server
	// secret together then open those sessions (docs/security.md).
	Escrow bool
	// TracerProvider traces session loads and refreshes; nil turns
	// tracing off.
	TracerProvider trace.TracerProvider
	// Now is the clock for token and session expiry (nil: time.Now).
	Now        func() time.Time
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics are not registered
}

// Manager creates, loads, replaces and ends sessions, and hands out fresh
// access tokens through the refresh engine it composes (refresh.go).
//
// Manager is safe for concurrent use. Several Managers — in one process or
// in several replicas — may share one Backend: the store's compare-and-set
// writes and the refresh lock keep them consistent.
type Manager struct {
	*records
	engine *engine
	// clients hands out client tokens; nil without ClientGrant.
	clients *clientTokens
	// stateTTL is LoginStateTTL: how long a sealed login state opens.
	stateTTL time.Duration
}

// NewManager checks opts (the problems Validate of its lifetime and
// refresh options reports) and builds a Manager.
func NewManager(opts ManagerOptions) (*Manager, error) {
	opts, err := opts.checked()
	if err != nil {
		return nil, err
	}
	seal, err := newSealer(opts.Secret, opts.PreviousSecrets)
	if err != nil {
		return nil, fmt.Errorf("session: new manager: %w", err)
	}
	met, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	rs := &records{
		store:   opts.Backend,
		seal:    seal,
		issuer:  opts.Issuer,
		now:     opts.Now,
		log:     opts.Logger,
		met:     met,
		opened:  newOpenedRecords(opts.OpenedRecords),
		idle:    opts.IdleTimeout,
		maxLife: opts.MaxLifetime,
		admin:   opts.Admin,
		escrow:  opts.Admin && opts.Escrow,
	}
	rs.cached = rs.store.Get
	if cr, ok := rs.store.(storage.CachedReader); ok {
		rs.cached = cr.GetCached
	}
	rs.kill = &killSwitch{rs: rs}
	m := &Manager{records: rs, engine: newEngine(rs, opts), stateTTL: opts.LoginStateTTL}
	if opts.ClientGrant != nil {
		if m.clients, err = newClientTokens(rs, opts.ClientGrant, opts.Secret, opts.ClientDPoP, opts.RefreshOptions); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// checked returns opts with every default filled in, or why opts cannot be
// used.
func (opts ManagerOptions) checked() (ManagerOptions, error) {
	if opts.Backend == nil {
		return opts, errors.New("session: new manager: no backend")
	}
	if opts.Refresher == nil {
		return opts, errors.New("session: new manager: no refresher")
	}
	var ps problem.List
	ps.Append("", opts.LifetimeOptions.Validate())
	ps.Append("", opts.RefreshOptions.Validate())
	if err := ps.Err(); err != nil {
		return opts, fmt.Errorf("session: new manager: %w", err)
	}
	opts.LifetimeOptions = opts.LifetimeOptions.WithDefaults()
	opts.RefreshOptions = opts.RefreshOptions.WithDefaults()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	switch {
	case opts.OpenedRecords == 0:
		opts.OpenedRecords = defaultOpenedMax
	case opts.OpenedRecords < 0:
		opts.OpenedRecords = 0
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return opts, nil
}

// Create stores a new session under a fresh ticket and returns the ticket.
// rec.CreatedAt is set to now: the absolute lifetime starts here. via is the
// metric label ("login" or "capture").
func (m *Manager) Create(ctx context.Context, rec Record, via Via) (Ticket, error) {
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
	if err := m.writeAdminEntry(ctx, t, key, &rec); err != nil {
		return Ticket{}, err
	}
	if err := m.store.Create(ctx, key, data, m.ttlFor(&rec, rec.CreatedAt)); err != nil {
		if errors.Is(err, ErrConflict) {
			return Ticket{}, fmt.Errorf("session: create: ticket collision: %w", err)
		}
		return Ticket{}, m.storeErr(ctx, opCreate, err)
	}
	m.met.created.WithLabelValues(string(via)).Inc()
	for _, ix := range m.indexesOf(&rec) {
		m.pruneIndex(ctx, ix, key)
	}
	return t, nil
}

// Replace starts the session of a login: it ends the sessions of old —
// every ticket the browser sent, since which one is its own is unknown —
// and stores rec under a fresh ticket (see Create), so a ticket planted
// before a login opens nothing after it (no session fixation). Tickets
// without a live session are skipped. A replaced session the store fails to
// end is logged and left to expire on its own: it no longer has a cookie,
// and the login goes on. Errors are Create's.
func (m *Manager) Replace(ctx context.Context, old []Ticket, rec Record, via Via) (Ticket, error) {
	for _, t := range old {
		if _, err := m.End(ctx, t, ReasonReplaced); err != nil && !errors.Is(err, ErrNoSession) {
			m.log.LogAttrs(ctx, slog.LevelWarn, "session: a replaced session could not be ended; it expires on its own", slog.Any("error", err))
		}
	}
	return m.Create(ctx, rec, via)
}

// maxPrune bounds how many members of an index one login checks.
const maxPrune = 16

// pruneIndex drops from index, besides keep, the members whose sessions
// ended without telling the index: the store expired them (idle timeout,
// absolute lifetime). It runs at each login of the same sid or subject, so
// an index holds about the live sessions; members it does not get to are
// harmless, since EndBy* checks each member, and the set itself expires
// MaxLifetime after the last login. Failures are logged, not returned.
func (m *Manager) pruneIndex(ctx context.Context, index, keep string) {
	members, err := m.store.IndexMembers(ctx, index)
	if err != nil {
		m.log.LogAttrs(ctx, slog.LevelWarn, "session index pruning failed", slog.Any("error", m.storeErr(ctx, opIndexList, err)))
		return
	}
	var ended []string
	checked := 0
	for _, member := range members {
		if member == keep {
			continue
		}
		if checked == maxPrune {
			break
		}
		checked++
		if _, err := m.store.Get(ctx, member); errors.Is(err, ErrNotFound) {
			ended = append(ended, member)
		} else if err != nil {
			break
		}
	}
	if len(ended) == 0 {
		return
	}
	if err := m.store.RemoveFromIndex(ctx, index, ended...); err != nil {
		m.log.LogAttrs(ctx, slog.LevelWarn, "session index pruning failed", slog.Any("error", m.storeErr(ctx, opIndexRemove, err)))
	}
}

// Load returns the session of t and slides its idle timeout.
// Errors: ErrNoSession (missing, expired, wrong key), ErrSessionExpired
// (absolute lifetime over), ErrStoreUnavailable.
func (m *Manager) Load(ctx context.Context, t Ticket) (*Session, error) {
	l, err := m.load(ctx, t, forOwn)
	if err != nil {
		return nil, err
	}
	return &Session{Record: *l.rec, Expires: m.slide(ctx, &l)}, nil
}

// Open reads the session of t with its identity claims, for a request whose
// route judges or describes the user (a policy, identity headers), and
// enforces the absolute lifetime. It does not slide the idle timeout:
// AccessToken, given the result in TokenRequest.Opened, does that, so a
// request its policy refuses does not keep a session alive. Errors:
// ErrNoSession, ErrSessionExpired (absolute lifetime over),
// ErrStoreUnavailable.
func (m *Manager) Open(ctx context.Context, t Ticket) (*Opened, error) {
	ctx, span := m.engine.tracer.Start(ctx, "session.load")
	defer span.End()
	l, err := m.load(ctx, t, forClaims)
	if err != nil {
		spanError(span, err)
		return nil, err
	}
	return &Opened{l: &l}, nil
}

// End deletes the session of t and its index entries and returns the record
// it held (for revocation and the RP-initiated logout URL). reason is the
// metric label.
func (m *Manager) End(ctx context.Context, t Ticket, reason EndReason) (*Record, error) {
	l, err := m.open(ctx, t, forOwn)
	if errors.Is(err, errNotOpened) {
		return nil, fmt.Errorf("session: end: %w", ErrNoSession)
	}
	if err != nil {
		return nil, err
	}
	if err := m.remove(ctx, l.key, l.rec, reason); err != nil {
		return nil, err
	}
	m.engine.forget(l.key)
	return l.rec, nil
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
		m.removeAdminEntry(ctx, key)
		m.engine.forget(key)
		m.met.ended.WithLabelValues(string(ReasonBackchannel)).Inc()
		n++
	}
	if len(members) > 0 {
		if err := m.store.RemoveFromIndex(ctx, index, members...); err != nil {
			return n, m.storeErr(ctx, opIndexRemove, err)
		}
	}
	return n, nil
}

// AccessToken returns a usable access token of req.Target (the login's
// own for the zero target; with req.Exchange, one exchanged for it) for
// the session of req.Ticket, with the session's DPoP key when it has one,
// refreshing it when it is stale or expired, or when
// req.Rejected (a token the upstream answered 401 to) equals the stored one
// and the last refresh is MinRefreshInterval old. A stale token is returned
// at once while the refresh runs in the background; otherwise the wait is
// bounded by RefreshTimeout. Errors: ErrNoSession; ErrSessionExpired (the
// refresh token is dead, its last refresh was lost, or the lifetime is
// over: the session is gone); *UnavailableError (no valid token now; the
// session is kept), wrapping ErrClientRejected when the provider refuses
// the client; ErrTokenRefused (the provider refused the target, or the
// session has no refresh token to obtain it); ErrStoreUnavailable.
//
// A session without a refresh token serves its access token until it
// expires, then ends.
func (m *Manager) AccessToken(ctx context.Context, req TokenRequest) (AccessToken, error) {
	return m.engine.accessToken(ctx, req)
}

// ClientToken returns tokenrelay's own access token of target (client
// credentials), shared by every replica through the store and renewed
// RefreshAhead before it expires, once across replicas; a still-valid one
// is served while it is renewed. rejected, when set, is a token the
// upstream answered 401 to: it is renewed (once per MinRefreshInterval)
// and not handed out again. Errors: *UnavailableError (wrapping
// ErrClientRejected when the provider refuses the client), ErrTokenRefused,
// ErrStoreUnavailable.
func (m *Manager) ClientToken(ctx context.Context, target idp.Target, rejected secret.String) (AccessToken, error) {
	if m.clients == nil {
		return AccessToken{}, errors.New("session: client tokens are not configured (no ClientGrant)")
	}
	return m.clients.token(ctx, target, rejected)
}

// Ready reports whether the store is reachable and the provider accepts
// this replica's client (see clientState).
func (m *Manager) Ready(ctx context.Context) error {
	if err := m.store.Ping(ctx); err != nil {
		return m.storeErr(ctx, opPing, err)
	}
	return m.engine.checkClient(ctx)
}

// Drain waits until the refreshes in flight in this process have ended, or
// ctx ends. A refresh cut off by the process's exit leaves its outcome
// unknown to the other replicas (see Attempt), so shutdown drains them.
func (m *Manager) Drain(ctx context.Context) error { return m.engine.drain(ctx) }
