package session

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/idptest"
	"github.com/tokenrelay/tokenrelay/secret"
)

// Fault injection for the refresh engine: a provider that hangs, a replica
// that dies between the provider's answer and the save, an upstream that
// rejects every token. Time is synctest's, so every duration asserted here
// is exact.

// hangingIdP is a token endpoint behind a network that holds every call for
// delay: the call reaches the provider at once, and the provider completes
// it (rotating the refresh token) delay later whether or not the client
// still waits. A client whose context ends first gets a network timeout
// after its request went out, as from an HTTP client that gave up, and
// never sees the result.
type hangingIdP struct {
	*idptest.TokenEndpoint

	mu    sync.Mutex
	delay time.Duration // guarded by mu
}

func newHangingIdP(life, delay time.Duration) *hangingIdP {
	return &hangingIdP{TokenEndpoint: idptest.NewTokenEndpoint(time.Now, life), delay: delay}
}

func (h *hangingIdP) setDelay(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.delay = d
}

func (h *hangingIdP) Refresh(ctx context.Context, rt secret.String) (*idp.Token, error) {
	h.mu.Lock()
	delay := h.delay
	h.mu.Unlock()
	type answer struct {
		tok *idp.Token
		err error
	}
	done := make(chan answer, 1)
	go func() {
		time.Sleep(delay)
		tok, err := h.TokenEndpoint.Refresh(context.Background(), rt)
		done <- answer{tok, err}
	}()
	select {
	case a := <-done:
		return a.tok, a.err
	case <-ctx.Done():
		return nil, &idp.TokenError{Err: ctx.Err(), Sent: true}
	}
}

// callLog collects what AccessToken calls returned and how long they took.
type callLog struct {
	mu      sync.Mutex
	longest time.Duration
	tokens  map[string]int
	errs    map[string]int
}

func newCallLog() *callLog {
	return &callLog{tokens: map[string]int{}, errs: map[string]int{}}
}

// call runs one AccessToken on m and records it.
func (l *callLog) call(m *Manager, tk Ticket, rejected secret.String) (AccessToken, error) {
	start := time.Now()
	tok, err := m.AccessToken(context.Background(), TokenRequest{Ticket: tk, Rejected: rejected})
	took := time.Since(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.longest = max(l.longest, took)
	if err != nil {
		l.errs[errKind(err)]++
	} else {
		l.tokens[tok.Value.Reveal()]++
	}
	return tok, err
}

func errKind(err error) string {
	var ue *UnavailableError
	switch {
	case errors.Is(err, ErrSessionExpired):
		return "session_expired"
	case errors.Is(err, ErrNoSession):
		return "no_session"
	case errors.Is(err, ErrClientRejected):
		return "client_rejected"
	case errors.As(err, &ue):
		return "unavailable"
	case errors.Is(err, ErrStoreUnavailable):
		return "store_unavailable"
	}
	return err.Error()
}

// TestRefreshProviderHangLongerThanTimeout pins the engine's behaviour when
// the token endpoint hangs longer than RefreshTimeout on two replicas under
// load: the call carries on in the background under the lock, nobody sends
// the refresh token again, no request waits longer than RefreshTimeout, and
// the session comes back with the tokens of the one call.
func TestRefreshProviderHangLongerThanTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			timeout = 10 * time.Second
			hang    = 15 * time.Second
		)
		p := newHangingIdP(5*time.Minute, hang)
		store := NewMemoryStore(nil)
		edit := func(o *ManagerOptions) { o.Timeout = timeout }
		a := newTestManager(t, store, nil, p, edit)
		b := newTestManager(t, store, nil, p, edit)
		tk := startSession(t, a, p.TokenEndpoint)
		time.Sleep(5 * time.Minute) // at-1 expired

		log := newCallLog()
		var wg sync.WaitGroup
		for range 60 {
			for _, m := range []*Manager{a, b} {
				wg.Go(func() { _, _ = log.call(m, tk, "") })
			}
			time.Sleep(time.Second)
		}
		wg.Wait()

		calls, reused := p.Stats()
		t.Logf("hang %s, timeout %s: %d token endpoint calls, %d reused, longest wait %s, tokens %v, errors %v",
			hang, timeout, calls, reused, log.longest, log.tokens, log.errs)
		if reused != 0 || calls != 1 {
			t.Errorf("token endpoint: %d calls, %d reused refresh tokens; want 1, 0", calls, reused)
		}
		if log.longest > timeout {
			t.Errorf("a request waited %s, longer than RefreshTimeout %s", log.longest, timeout)
		}
		if log.errs["session_expired"] != 0 || log.errs["no_session"] != 0 {
			t.Errorf("the session was lost: %v", log.errs)
		}
		if tok, err := a.AccessToken(context.Background(), TokenRequest{Ticket: tk}); err != nil || tok.Value != "at-2" {
			t.Errorf("after the hang: %q, %v; want at-2", tok.Value.Reveal(), err)
		}
		time.Sleep(time.Hour) // calls the clients gave up on still complete
	})
}

// mortalBackend is one replica's view of a shared Backend. Once killed,
// every call blocks until the test buries the replica, then fails: the
// replica writes nothing more, as if its process had died.
type mortalBackend struct {
	Backend
	mu     sync.Mutex
	dead   bool          // guarded by mu
	buried chan struct{} // closed by bury
}

var errDead = errors.New("replica died")

func newMortalBackend(b Backend) *mortalBackend {
	return &mortalBackend{Backend: b, buried: make(chan struct{})}
}

func (d *mortalBackend) kill() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = true
}

func (d *mortalBackend) bury() { close(d.buried) }

func (d *mortalBackend) gate() error {
	d.mu.Lock()
	dead := d.dead
	d.mu.Unlock()
	if !dead {
		return nil
	}
	<-d.buried
	return errDead
}

func (d *mortalBackend) Get(ctx context.Context, key string) (Entry, error) {
	if err := d.gate(); err != nil {
		return Entry{}, err
	}
	return d.Backend.Get(ctx, key)
}

func (d *mortalBackend) Update(ctx context.Context, key string, version uint64, data []byte, ttl time.Duration) (uint64, error) {
	if err := d.gate(); err != nil {
		return 0, err
	}
	return d.Backend.Update(ctx, key, version, data, ttl)
}

func (d *mortalBackend) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := d.gate(); err != nil {
		return err
	}
	return d.Backend.Touch(ctx, key, ttl)
}

func (d *mortalBackend) Delete(ctx context.Context, key string) error {
	if err := d.gate(); err != nil {
		return err
	}
	return d.Backend.Delete(ctx, key)
}

func (d *mortalBackend) TryLock(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if err := d.gate(); err != nil {
		return false, err
	}
	return d.Backend.TryLock(ctx, key, owner, ttl)
}

func (d *mortalBackend) Unlock(ctx context.Context, key, owner string) error {
	if err := d.gate(); err != nil {
		return err
	}
	return d.Backend.Unlock(ctx, key, owner)
}

func (d *mortalBackend) RemoveFromIndex(ctx context.Context, index string, members ...string) error {
	if err := d.gate(); err != nil {
		return err
	}
	return d.Backend.RemoveFromIndex(ctx, index, members...)
}

// TestRefreshReplicaDiesBetweenAnswerAndSave pins what happens when the
// replica holding the refresh lock dies after the provider rotated the
// refresh token and before the store took the result: the other replica
// never sends the spent refresh token, none of its requests waits longer
// than RefreshTimeout, and once the dead replica's lock has lapsed the
// session ends cleanly (its outcome is unknown, and the access token has
// expired) instead of through refresh-token reuse.
func TestRefreshReplicaDiesBetweenAnswerAndSave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 10 * time.Second
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		shared := NewMemoryStore(nil)
		mortal := newMortalBackend(shared)
		// Replica a dies the moment the provider's answer reaches it.
		dying := funcRefresher(func(ctx context.Context, rt secret.String) (*idp.Token, error) {
			tok, err := p.Refresh(ctx, rt)
			mortal.kill()
			return tok, err
		})
		edit := func(o *ManagerOptions) { o.Timeout = timeout }
		a := newTestManager(t, mortal, nil, dying, edit)
		b := newTestManager(t, shared, nil, p, edit)
		tk := startSession(t, b, p)
		time.Sleep(5 * time.Minute) // at-1 expired

		log := newCallLog()
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = log.call(a, tk, "") })
		synctest.Wait() // a refreshed and died
		for range 60 {
			wg.Go(func() { _, _ = log.call(b, tk, "") })
			time.Sleep(time.Second)
		}
		mortal.bury()
		wg.Wait()

		calls, reused := p.Stats()
		t.Logf("replica died after the provider's answer: %d token endpoint calls, %d reused, longest wait %s, tokens %v, errors %v",
			calls, reused, log.longest, log.tokens, log.errs)
		if reused != 0 || calls != 1 {
			t.Errorf("token endpoint: %d calls, %d reused refresh tokens; want 1, 0", calls, reused)
		}
		if log.longest > timeout {
			t.Errorf("a request waited %s, longer than RefreshTimeout %s", log.longest, timeout)
		}
		if log.errs["session_expired"] == 0 {
			t.Errorf("the session did not end cleanly: %v", log.errs)
		}
	})
}

// TestRefreshWaitBoundedAndStaleServed pins request latency while another
// replica's refresh hangs: a request whose token is still valid (stale) is
// served that token at once; one whose token has expired waits no longer
// than RefreshTimeout and gets *UnavailableError.
func TestRefreshWaitBoundedAndStaleServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 10 * time.Second
		p := newHangingIdP(5*time.Minute, time.Hour)
		store := NewMemoryStore(nil)
		edit := func(o *ManagerOptions) {
			o.Timeout = timeout
			o.LockTTL = 5 * time.Minute // the call is still running below
		}
		a := newTestManager(t, store, nil, p, edit)
		b := newTestManager(t, store, nil, p, edit)
		tk := startSession(t, a, p.TokenEndpoint)
		time.Sleep(4*time.Minute + 30*time.Second) // at-1 stale, valid 30s more

		var wg sync.WaitGroup
		wg.Go(func() { _, _ = a.AccessToken(context.Background(), TokenRequest{Ticket: tk}) })
		synctest.Wait() // a's refresh is in flight
		for _, m := range []*Manager{a, b} {
			start := time.Now()
			tok, err := m.AccessToken(context.Background(), TokenRequest{Ticket: tk})
			if took := time.Since(start); err != nil || tok.Value != "at-1" || took != 0 {
				t.Errorf("stale token during a refresh: %q, %v after %s; want at-1 at once", tok.Value.Reveal(), err, took)
			}
		}

		time.Sleep(30 * time.Second) // at-1 expired
		for _, m := range []*Manager{a, b} {
			start := time.Now()
			_, err := m.AccessToken(context.Background(), TokenRequest{Ticket: tk})
			var ue *UnavailableError
			if took := time.Since(start); !errors.As(err, &ue) || took > timeout {
				t.Errorf("expired token during a refresh: %v after %s; want *UnavailableError within %s", err, took, timeout)
			}
		}
		time.Sleep(time.Hour)
		wg.Wait()
	})
}

// TestRefreshProviderHangBeyondLock pins the engine's behaviour when the
// token endpoint hangs past the call budget (LockTTL less the save margin)
// and then completes the rotation nobody reads: the refresh token is never
// sent again, no request waits longer than RefreshTimeout, and, the access
// token having expired, the session ends cleanly once the lock has lapsed
// (reason unknown_outcome) instead of through a reuse.
func TestRefreshProviderHangBeyondLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 10 * time.Second
		p := newHangingIdP(5*time.Minute, time.Hour)
		store := NewMemoryStore(nil)
		edit := func(o *ManagerOptions) { o.Timeout = timeout } // LockTTL 30s
		a := newTestManager(t, store, nil, p, edit)
		b := newTestManager(t, store, nil, p, edit)
		tk := startSession(t, a, p.TokenEndpoint)
		time.Sleep(5 * time.Minute) // at-1 expired

		log := newCallLog()
		var wg sync.WaitGroup
		for range 60 {
			for _, m := range []*Manager{a, b} {
				wg.Go(func() { _, _ = log.call(m, tk, "") })
			}
			time.Sleep(time.Second)
		}
		wg.Wait()
		time.Sleep(time.Hour) // the abandoned call completes at the provider

		calls, reused := p.Stats()
		t.Logf("hang past the lock: %d token endpoint calls, %d reused, longest wait %s, errors %v", calls, reused, log.longest, log.errs)
		if calls != 1 || reused != 0 {
			t.Errorf("token endpoint: %d calls, %d reused refresh tokens; want 1, 0", calls, reused)
		}
		if log.longest > timeout {
			t.Errorf("a request waited %s, longer than RefreshTimeout %s", log.longest, timeout)
		}
		if log.errs["session_expired"] != 1 {
			t.Errorf("errors %v, want the session ended once (session_expired)", log.errs)
		}
		ended := counter(a.met.ended.WithLabelValues(string(ReasonUnknownOutcome))) + counter(b.met.ended.WithLabelValues(string(ReasonUnknownOutcome)))
		unknown := counter(a.met.refreshes.WithLabelValues(refreshUnknown)) + counter(b.met.refreshes.WithLabelValues(refreshUnknown))
		if ended != 1 || unknown != 1 {
			t.Errorf("sessions_ended{unknown_outcome} = %v, refresh{unknown} = %v; want 1, 1", ended, unknown)
		}
	})
}

// TestRefreshReuseGraceRecoversLostAnswer pins ReuseGrace: when the replica
// that refreshed dies before saving, another replica sends the same refresh
// token again while the provider's reuse grace covers it, and the session
// lives on.
func TestRefreshReuseGraceRecoversLostAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		p.SetGrace(time.Minute)
		shared := NewMemoryStore(nil)
		mortal := newMortalBackend(shared)
		dying := funcRefresher(func(ctx context.Context, rt secret.String) (*idp.Token, error) {
			tok, err := p.Refresh(ctx, rt)
			mortal.kill()
			return tok, err
		})
		edit := func(o *ManagerOptions) { o.ReuseGrace = time.Minute } // LockTTL 30s
		a := newTestManager(t, mortal, nil, dying, edit)
		b := newTestManager(t, shared, nil, p, edit)
		tk := startSession(t, b, p)
		time.Sleep(5 * time.Minute)

		var wg sync.WaitGroup
		wg.Go(func() { _, _ = a.AccessToken(context.Background(), TokenRequest{Ticket: tk}) })
		synctest.Wait() // a refreshed and died
		time.Sleep(b.engine.lockTTL)
		tok, err := b.AccessToken(context.Background(), TokenRequest{Ticket: tk})
		if err != nil || tok.Value != "at-3" {
			t.Errorf("after the lock lapsed: %q, %v; want at-3 from a resend inside the grace", tok.Value.Reveal(), err)
		}
		mortal.bury()
		wg.Wait()
		if calls, reused := p.Stats(); calls != 2 || reused != 0 || p.Graced() != 1 {
			t.Errorf("token endpoint: %d calls, %d reused, %d inside the grace; want 2, 0, 1", calls, reused, p.Graced())
		}
		if rec, _ := stored(t, b, tk); rec.RefreshToken != "rt-3" || !rec.Attempt.IsZero() {
			t.Errorf("stored: %s, attempt %v; want rt-3 and no attempt", rec.RefreshToken.Reveal(), rec.Attempt)
		}
	})
}

// TestForcedRefreshFloor pins the floor on refreshes forced by upstream
// 401s: with an upstream that rejects every token, each request is sent,
// rejected, and retried once with what AccessToken hands out; 20 such
// requests within MinRefreshInterval cost one refresh, and the others are
// handed the rejected token back (so the 401 is passed through).
func TestForcedRefreshFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		m := newTestManager(t, NewMemoryStore(time.Now), time.Now, p, nil)
		tk := startSession(t, m, p)
		for range 20 {
			tok, err := m.AccessToken(ctx, TokenRequest{Ticket: tk})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.AccessToken(ctx, TokenRequest{Ticket: tk, Rejected: tok.Value}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
		}
		if calls, _ := p.Stats(); calls != 1 {
			t.Errorf("20 requests rejected by the upstream caused %d refreshes, want 1", calls)
		}
	})
}

// clientRefuser is a token endpoint that refuses the client (a wrong client
// secret) until fixed, then answers like idptest.TokenEndpoint; a refresh token that
// was never issued gets invalid_grant, as a readiness probe does.
type clientRefuser struct {
	*idptest.TokenEndpoint
	mu      sync.Mutex
	refuse  bool // guarded by mu
	refused int  // guarded by mu
}

func (c *clientRefuser) Refresh(ctx context.Context, rt secret.String) (*idp.Token, error) {
	c.mu.Lock()
	refuse := c.refuse
	if refuse {
		c.refused++
	}
	c.mu.Unlock()
	if refuse {
		return nil, &idp.TokenError{Status: 401, Code: "invalid_client", Sent: true}
	}
	return c.TokenEndpoint.Refresh(ctx, rt)
}

func (c *clientRefuser) set(refuse bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuse = refuse
}

func (c *clientRefuser) refusals() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refused
}

// TestRefreshClientRejected pins what a replica does when the provider
// refuses its client (invalid_client): the session is kept and its refresh
// token untouched; a valid token is still served; an expired one gets
// ErrClientRejected; the replica tries the provider at most once per
// FailureBackoff and counts the refusals; readiness fails, and recovers
// when a probe shows the client accepted again; then the same session
// refreshes.
func TestRefreshClientRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := &clientRefuser{TokenEndpoint: idptest.NewTokenEndpoint(time.Now, 5*time.Minute), refuse: true}
		store := NewMemoryStore(nil)
		m := newTestManager(t, store, nil, p, nil) // FailureBackoff 5s
		tk := startSession(t, m, p.TokenEndpoint)
		if err := m.Ready(ctx); err != nil {
			t.Fatalf("Ready before any refusal: %v", err)
		}

		time.Sleep(4*time.Minute + 30*time.Second) // stale
		if tok, err := m.AccessToken(ctx, TokenRequest{Ticket: tk}); err != nil || tok.Value != "at-1" {
			t.Errorf("stale token: %q, %v; want at-1", tok.Value.Reveal(), err)
		}
		synctest.Wait()
		time.Sleep(30 * time.Second) // expired
		for i := range 10 {
			_, err := m.AccessToken(ctx, TokenRequest{Ticket: tk})
			var ue *UnavailableError
			if !errors.As(err, &ue) || !errors.Is(err, ErrClientRejected) {
				t.Fatalf("expired token, request %d: %v; want *UnavailableError wrapping ErrClientRejected", i, err)
			}
			time.Sleep(time.Second)
		}
		// 40s: the stale refresh, then one try per 5s backoff.
		if got := p.refusals(); got != 3 {
			t.Errorf("the provider was asked %d times, want 3 (once per FailureBackoff)", got)
		}
		if got := counter(m.met.refreshes.WithLabelValues(refreshClientRejected)); got != 3 {
			t.Errorf("refresh{client_rejected} = %v, want 3", got)
		}
		if got := counter(m.met.clientRejected); got != 1 {
			t.Errorf("provider_client_rejected = %v, want 1", got)
		}
		rec, _ := stored(t, m, tk)
		if rec.RefreshToken != "rt-1" || !rec.Attempt.IsZero() || !rec.RetryAt.IsZero() {
			t.Errorf("stored: %s, attempt %v, retry at %v; want rt-1 untouched, no attempt, no shared backoff", rec.RefreshToken.Reveal(), rec.Attempt, rec.RetryAt)
		}
		if err := m.Ready(ctx); !errors.Is(err, ErrClientRejected) {
			t.Errorf("Ready while refused = %v, want ErrClientRejected", err)
		}

		p.set(false) // the client secret is right again at the provider
		time.Sleep(5 * time.Second)
		if err := m.Ready(ctx); err != nil {
			t.Errorf("Ready after the provider accepts the client = %v, want nil", err)
		}
		if got := counter(m.met.clientRejected); got != 0 {
			t.Errorf("provider_client_rejected = %v, want 0", got)
		}
		if tok, err := m.AccessToken(ctx, TokenRequest{Ticket: tk}); err != nil || tok.Value != "at-2" {
			t.Errorf("after recovery: %q, %v; want at-2", tok.Value.Reveal(), err)
		}
		if calls, reused := p.Stats(); reused != 0 || calls != 2 {
			t.Errorf("rotating calls %d (probe included), reused %d; want 2, 0", calls, reused)
		}
	})
}

// slowAnswerIdP completes each call at once (rotating the refresh token,
// the new access token living from that moment) and delivers its answer
// only after delay, or never, to a client that gives up first: a provider
// whose answers a network holds.
type slowAnswerIdP struct {
	*idptest.TokenEndpoint
	mu    sync.Mutex
	delay time.Duration // guarded by mu
}

func (s *slowAnswerIdP) Refresh(ctx context.Context, rt secret.String) (*idp.Token, error) {
	tok, err := s.TokenEndpoint.Refresh(ctx, rt)
	s.mu.Lock()
	delay := s.delay
	s.mu.Unlock()
	select {
	case <-time.After(delay):
		return tok, err
	case <-ctx.Done():
		return nil, &idp.TokenError{Err: ctx.Err(), Sent: true}
	}
}

// TestRefreshAnswerOutlivesToken pins that an access token that has expired
// by the time the provider's answer arrives is never handed out: the
// requests get *UnavailableError, the rotated refresh token is saved, and
// the next request refreshes with it.
func TestRefreshAnswerOutlivesToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := &slowAnswerIdP{TokenEndpoint: idptest.NewTokenEndpoint(time.Now, 5*time.Minute), delay: 6 * time.Minute}
		m := newTestManager(t, NewMemoryStore(nil), nil, p, func(o *ManagerOptions) { o.LockTTL = 10 * time.Minute })
		tk := startSession(t, m, p.TokenEndpoint)
		time.Sleep(5 * time.Minute) // at-1 expired

		if _, err := m.AccessToken(ctx, TokenRequest{Ticket: tk}); err == nil {
			t.Fatal("the request was served during the refresh")
		}
		time.Sleep(6 * time.Minute) // the answer arrives, at-2 already expired
		if err := m.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if rec, _ := stored(t, m, tk); rec.RefreshToken != "rt-2" || !rec.Attempt.IsZero() {
			t.Fatalf("stored %s, attempt %v; want rt-2 saved", rec.RefreshToken.Reveal(), rec.Attempt)
		}
		p.mu.Lock()
		p.delay = 0
		p.mu.Unlock()
		tok, err := m.AccessToken(ctx, TokenRequest{Ticket: tk})
		if err != nil || tok.Value != "at-3" {
			t.Errorf("next request: %q, %v; want at-3", tok.Value.Reveal(), err)
		}
		if calls, reused := p.Stats(); calls != 2 || reused != 0 {
			t.Errorf("calls %d, reused %d; want 2, 0", calls, reused)
		}
	})
}

// TestRefreshNeverHandsOutExpiredToken pins the same for the requests that
// wait for the flight: the one whose answer outlived its token gets
// *UnavailableError, not the token.
func TestRefreshNeverHandsOutExpiredToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := &slowAnswerIdP{TokenEndpoint: idptest.NewTokenEndpoint(time.Now, 5*time.Second), delay: 6 * time.Second}
		m := newTestManager(t, NewMemoryStore(nil), nil, p, func(o *ManagerOptions) {
			o.Ahead = time.Second
			o.Timeout = 10 * time.Second
		})
		tk := startSession(t, m, p.TokenEndpoint)
		time.Sleep(5 * time.Second) // at-1 expired
		tok, err := m.AccessToken(ctx, TokenRequest{Ticket: tk})
		var ue *UnavailableError
		if !errors.As(err, &ue) {
			t.Errorf("AccessToken = %q, %v; want *UnavailableError (at-2 expired on arrival)", tok.Value.Reveal(), err)
		}
	})
}

// TestDrainWaitsForRefreshes pins Drain, which shutdown calls: it returns
// once the refreshes in flight have saved their results, which a refresh
// running in the background after its requests stopped waiting still does;
// and it gives up when its context ends first.
func TestDrainWaitsForRefreshes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := newHangingIdP(5*time.Minute, 20*time.Second)
		m := newTestManager(t, NewMemoryStore(nil), nil, p, nil) // RefreshTimeout 10s, LockTTL 30s
		tk := startSession(t, m, p.TokenEndpoint)
		time.Sleep(5 * time.Minute)
		if _, err := m.AccessToken(ctx, TokenRequest{Ticket: tk}); err == nil {
			t.Fatal("served while the provider hangs")
		}
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := m.Drain(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Drain with 1s left = %v, want context.DeadlineExceeded", err)
		}
		start := time.Now()
		if err := m.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		// The call was sent at 0 and answers at 20s; 11s have passed.
		if got := time.Since(start); got != 9*time.Second {
			t.Errorf("Drain returned after %s, want 9s (when the answer arrived)", got)
		}
		if rec, _ := stored(t, m, tk); rec.AccessToken != "at-2" || !rec.Attempt.IsZero() {
			t.Errorf("after Drain: stored %s, attempt %v; want at-2 saved", rec.AccessToken.Reveal(), rec.Attempt)
		}
	})
}
