package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/idptest"
	"github.com/tokenrelay/tokenrelay/secret"
)

func TestClassify(t *testing.T) {
	exp := testEpoch
	const ahead = time.Minute
	tests := []struct {
		name   string
		expiry time.Time
		now    time.Time
		ahead  time.Duration
		want   tokenState
	}{
		{"long before", exp, exp.Add(-time.Hour), ahead, tokenFresh},
		{"1ns before the window", exp, exp.Add(-ahead - time.Nanosecond), ahead, tokenFresh},
		{"window opens", exp, exp.Add(-ahead), ahead, tokenStale},
		{"inside the window", exp, exp.Add(-time.Second), ahead, tokenStale},
		{"1ns before expiry", exp, exp.Add(-time.Nanosecond), ahead, tokenStale},
		{"at expiry", exp, exp, ahead, tokenExpired},
		{"after expiry", exp, exp.Add(time.Nanosecond), ahead, tokenExpired},
		{"no window: 1ns before expiry", exp, exp.Add(-time.Nanosecond), 0, tokenFresh},
		{"no window: at expiry", exp, exp, 0, tokenExpired},
		{"window longer than the lifetime", exp, exp.Add(-time.Hour), 2 * time.Hour, tokenStale},
		{"zero expiry", time.Time{}, exp, ahead, tokenExpired},
	}
	for _, tt := range tests {
		if got := classify(tt.expiry, tt.now, tt.ahead); got != tt.want {
			t.Errorf("%s: classify(%v, %v, %v) = %v, want %v", tt.name, tt.expiry, tt.now, tt.ahead, got, tt.want)
		}
	}
}

// startSession logs in at p and creates the session in m.
func startSession(t testing.TB, m *Manager, p *idptest.TokenEndpoint) Ticket {
	t.Helper()
	at, rt, exp := p.Grant()
	tk, err := m.Create(context.Background(), Record{
		AccessToken: at, RefreshToken: rt, IDToken: "id-0", AccessExpiry: exp,
		Issuer: "https://issuer.example", Subject: "user-1", SID: "sid-1",
	}, ViaLogin)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// stored opens the record of tk as it is in the store.
func stored(t testing.TB, m *Manager, tk Ticket) (*Record, uint64) {
	t.Helper()
	key := sessionKey(tk.ID)
	e, err := m.store.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("stored record: %v", err)
	}
	rec, err := m.seal.openRecord(tk, key, e.Data)
	if err != nil {
		t.Fatalf("stored record: %v", err)
	}
	return rec, e.Version
}

func counter(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// histogramCount returns the sample count and sum of a histogram.
func histogramCount(t testing.TB, h prometheus.Histogram) (uint64, float64) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		t.Fatalf("gather histogram: %v", err)
	}
	hist := mfs[0].GetMetric()[0].GetHistogram()
	return hist.GetSampleCount(), hist.GetSampleSum()
}

func TestRefreshOneCallForConcurrentRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		m := newTestManager(t, NewMemoryStore(time.Now), time.Now, p, nil)
		tk := startSession(t, m, p)
		time.Sleep(5 * time.Minute) // at-1 expired

		const n = 200
		start := make(chan struct{})
		got := make([]AccessToken, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				got[i], errs[i] = m.AccessToken(context.Background(), TokenRequest{Ticket: tk})
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil || got[i].Value != "at-2" {
				t.Fatalf("request %d: %q, %v; want at-2", i, got[i].Value.Reveal(), errs[i])
			}
		}
		if calls, reused := p.Stats(); calls != 1 || reused != 0 {
			t.Errorf("token endpoint calls = %d, reused refresh tokens = %d; want 1, 0", calls, reused)
		}
		// Two writes: the attempt, recorded before the refresh token left,
		// and the result.
		if rec, v := stored(t, m, tk); rec.AccessToken != "at-2" || rec.RefreshToken != "rt-2" || v != 3 || !rec.Attempt.IsZero() {
			t.Errorf("stored = %s/%s v%d attempt %v, want at-2/rt-2 v3 and no attempt", rec.AccessToken.Reveal(), rec.RefreshToken.Reveal(), v, rec.Attempt)
		}
		if got := counter(m.met.refreshes.WithLabelValues(refreshSuccess)); got != 1 {
			t.Errorf("refresh{success} = %v, want 1", got)
		}
	})
}

func TestRefreshMetricsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		release := make(chan struct{})
		p.SetBefore(func(ctx context.Context, rt secret.String) (*idp.Token, error) {
			<-release
			return nil, nil
		})
		m := newTestManager(t, NewMemoryStore(nil), nil, p, nil)
		tk := startSession(t, m, p)
		time.Sleep(5 * time.Minute)

		const n = 200
		var wg sync.WaitGroup
		results := make([]AccessToken, n)
		for i := range n {
			wg.Go(func() {
				tok, err := m.AccessToken(context.Background(), TokenRequest{Ticket: tk})
				if err != nil {
					t.Errorf("request %d: %v", i, err)
				}
				results[i] = tok
			})
		}
		// Every request has joined the one flight, which is inside the
		// token endpoint call.
		synctest.Wait()
		time.Sleep(250 * time.Millisecond) // the token endpoint takes 250ms
		close(release)
		wg.Wait()
		for i, r := range results {
			if r.Value != "at-2" || !r.Refreshed {
				t.Fatalf("request %d got %q (refreshed %v), want at-2 refreshed", i, r.Value.Reveal(), r.Refreshed)
			}
		}
		for name, c := range map[string]struct {
			got  prometheus.Collector
			want float64
		}{
			"refresh{success}":   {m.met.refreshes.WithLabelValues(refreshSuccess), 1},
			"refresh{failed}":    {m.met.refreshes.WithLabelValues(refreshFailed), 0},
			"refresh{rejected}":  {m.met.refreshes.WithLabelValues(refreshRejected), 0},
			"refresh{lost_race}": {m.met.refreshes.WithLabelValues(refreshLostRace), 0},
			"refresh_shared":     {m.met.shared, n - 1},
			"created{login}":     {m.met.created.WithLabelValues(string(ViaLogin)), 1},
		} {
			if got := counter(c.got); got != c.want {
				t.Errorf("%s = %v, want %v", name, got, c.want)
			}
		}
		if count, sum := histogramCount(t, m.met.refreshTime); count != 1 || sum != 0.25 {
			t.Errorf("refresh_duration: count %d sum %v, want 1 and 0.25", count, sum)
		}
		if count, sum := histogramCount(t, m.met.lockWait); count != 1 || sum != 0 {
			t.Errorf("lock_wait: count %d sum %v, want 1 and 0", count, sum)
		}
	})
}

func TestRefreshAcrossReplicas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		store := NewMemoryStore(time.Now)
		replicas := make([]*Manager, 3)
		for i := range replicas {
			replicas[i] = newTestManager(t, store, time.Now, p, nil)
		}
		tk := startSession(t, replicas[0], p)

		const perReplica, cycles = 100, 5
		for cycle := 1; cycle <= cycles; cycle++ {
			time.Sleep(5 * time.Minute) // the current access token expires
			start := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			seen := map[string]int{}
			for _, m := range replicas {
				for range perReplica {
					wg.Go(func() {
						<-start
						tok, err := m.AccessToken(context.Background(), TokenRequest{Ticket: tk})
						if err != nil {
							t.Errorf("cycle %d: %v", cycle, err)
							return
						}
						mu.Lock()
						seen[tok.Value.Reveal()]++
						mu.Unlock()
					})
				}
			}
			close(start)
			wg.Wait()
			want := fmt.Sprintf("at-%d", cycle+1)
			if len(seen) != 1 || seen[want] != 3*perReplica {
				t.Fatalf("cycle %d: tokens handed out %v, want only %s", cycle, seen, want)
			}
			if calls, reused := p.Stats(); calls != cycle || reused != 0 {
				t.Fatalf("cycle %d: token endpoint calls %d, reused %d; want %d, 0", cycle, calls, reused, cycle)
			}
		}
		var success, lost float64
		for _, m := range replicas {
			success += counter(m.met.refreshes.WithLabelValues(refreshSuccess))
			lost += counter(m.met.refreshes.WithLabelValues(refreshLostRace))
		}
		if success != cycles {
			t.Errorf("refresh{success} over replicas = %v, want %d", success, cycles)
		}
		t.Logf("refresh{lost_race} over replicas = %v", lost)
	})
}

func TestRefreshInvalidGrantEndsSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		store := NewMemoryStore(time.Now)
		m := newTestManager(t, store, time.Now, p, nil)
		tk := startSession(t, m, p)
		p.RevokeAll() // the provider revoked the grant
		time.Sleep(5 * time.Minute)

		_, err := m.AccessToken(ctx, TokenRequest{Ticket: tk})
		if !errors.Is(err, ErrSessionExpired) || !errors.Is(err, idp.ErrInvalidGrant) {
			t.Fatalf("AccessToken = %v, want ErrSessionExpired wrapping invalid_grant", err)
		}
		if _, err := m.Load(ctx, tk); !errors.Is(err, ErrNoSession) {
			t.Errorf("Load after invalid_grant = %v, want ErrNoSession", err)
		}
		if members, _ := store.IndexMembers(ctx, sidIndexKey(m.issuer, "sid-1")); len(members) != 0 {
			t.Errorf("sid index after invalid_grant = %q, want empty", members)
		}
		if calls, _ := p.Stats(); calls != 1 {
			t.Errorf("token endpoint calls = %d, want 1", calls)
		}
		if got := counter(m.met.refreshes.WithLabelValues(refreshRejected)); got != 1 {
			t.Errorf("refresh{rejected} = %v, want 1", got)
		}
		if got := counter(m.met.ended.WithLabelValues(string(ReasonRejected))); got != 1 {
			t.Errorf("ended{rejected} = %v, want 1", got)
		}
	})
}

func TestRefreshInvalidGrantAfterAnotherReplicaRotated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		store := NewMemoryStore(time.Now)
		m := newTestManager(t, store, time.Now, p, nil)
		tk := startSession(t, m, p)
		time.Sleep(5 * time.Minute)
		// While our call is in flight another replica (whose view of the lock
		// differs) rotates rt-1 and saves; rt-1 is then dead for us.
		p.SetBefore(func(ctx context.Context, rt secret.String) (*idp.Token, error) {
			rec, v := stored(t, m, tk)
			rec.AccessToken, rec.RefreshToken, rec.AccessExpiry = "at-other", "rt-other", time.Now().Add(5*time.Minute)
			if _, err := m.save(ctx, tk, sessionKey(tk.ID), v, rec); err != nil {
				t.Fatal(err)
			}
			return nil, &idp.TokenError{Code: "invalid_grant", Status: 400, Dead: true}
		})
		tok, err := m.AccessToken(ctx, TokenRequest{Ticket: tk})
		if err != nil || tok.Value != "at-other" {
			t.Fatalf("AccessToken = %q, %v; want the other replica's at-other", tok.Value.Reveal(), err)
		}
		if rec, _ := stored(t, m, tk); rec.RefreshToken != "rt-other" {
			t.Errorf("stored refresh token = %s, want rt-other", rec.RefreshToken.Reveal())
		}
		if got := counter(m.met.refreshes.WithLabelValues(refreshRejected)); got != 0 {
			t.Errorf("refresh{rejected} = %v, want 0", got)
		}
		if got := counter(m.met.refreshes.WithLabelValues(refreshLostRace)); got != 1 {
			t.Errorf("refresh{lost_race} = %v, want 1", got)
		}
	})
}

func TestRefreshTransientFailure(t *testing.T) {
	unavailable := &idp.TokenError{Status: 503}
	tests := []struct {
		name       string
		age        time.Duration // since login; tokens live 5m, ahead 1m
		rejected   secret.String
		cause      error
		wantServed bool
		wantRetry  time.Duration
	}{
		{"stale token served", 4*time.Minute + 30*time.Second, "", unavailable, true, 5 * time.Second},
		{"expired token: unavailable", 5 * time.Minute, "", unavailable, false, 5 * time.Second},
		{"provider Retry-After wins when longer", 5 * time.Minute, "", &idp.TokenError{Status: 429, RetryAfter: 30 * time.Second}, false, 30 * time.Second},
		{"shorter Retry-After: backoff wins", 5 * time.Minute, "", &idp.TokenError{Status: 429, RetryAfter: time.Second}, false, 5 * time.Second},
		{"network error before the request went out", 5 * time.Minute, "", &idp.TokenError{Err: context.DeadlineExceeded}, false, 5 * time.Second},
		{"rejected valid token: not served again", time.Minute, "at-1", unavailable, false, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
				store := NewMemoryStore(time.Now)
				m := newTestManager(t, store, time.Now, p, nil)
				other := newTestManager(t, store, time.Now, p, nil) // another replica
				tk := startSession(t, m, p)
				fail := true
				p.SetBefore(func(context.Context, secret.String) (*idp.Token, error) {
					if fail {
						return nil, tt.cause
					}
					return nil, nil
				})
				time.Sleep(tt.age)

				check := func(m *Manager, step string, wantRetry time.Duration) {
					t.Helper()
					tok, err := m.AccessToken(ctx, TokenRequest{Ticket: tk, Rejected: tt.rejected})
					if derr := m.Drain(ctx); derr != nil {
						t.Fatal(derr)
					}
					if tt.wantServed {
						if err != nil || tok.Value != "at-1" || tok.Refreshed {
							t.Errorf("%s: AccessToken = %q (refreshed %v), %v; want at-1 served", step, tok.Value.Reveal(), tok.Refreshed, err)
						}
						return
					}
					var ue *UnavailableError
					if !errors.As(err, &ue) || ue.RetryAfter != wantRetry {
						t.Errorf("%s: AccessToken error = %v, want *UnavailableError retry %v", step, err, wantRetry)
					}
				}
				check(m, "first", tt.wantRetry)
				if calls, _ := p.Stats(); calls != 1 {
					t.Fatalf("calls = %d, want 1", calls)
				}
				// Inside the backoff nobody calls the provider: the backoff is
				// in the record, so it holds every replica.
				time.Sleep(time.Second)
				check(m, "during backoff", tt.wantRetry-time.Second)
				check(other, "during backoff, another replica", tt.wantRetry-time.Second)
				if calls, _ := p.Stats(); calls != 1 {
					t.Errorf("calls during backoff = %d, want 1", calls)
				}
				// The session was kept...
				if _, err := m.Load(ctx, tk); err != nil {
					t.Fatalf("session lost after a transient failure: %v", err)
				}
				if got := counter(m.met.refreshes.WithLabelValues(refreshFailed)); got != 1 {
					t.Errorf("refresh{failed} = %v, want 1", got)
				}
				// ...and after the backoff the next request refreshes (in the
				// background when its token is still valid).
				fail = false
				time.Sleep(tt.wantRetry - time.Second)
				tok, err := other.AccessToken(ctx, TokenRequest{Ticket: tk, Rejected: tt.rejected})
				if derr := other.Drain(ctx); derr != nil {
					t.Fatal(derr)
				}
				want := secret.String("at-2")
				if tt.wantServed {
					want = "at-1"
				}
				if err != nil || tok.Value != want {
					t.Errorf("after backoff: %q, %v; want %s", tok.Value.Reveal(), err, want.Reveal())
				}
				if rec, _ := stored(t, m, tk); rec.AccessToken != "at-2" || !rec.RetryAt.IsZero() || !rec.Attempt.IsZero() {
					t.Errorf("stored after backoff: %s, retry at %v, attempt %v; want at-2 and no backoff or attempt", rec.AccessToken.Reveal(), rec.RetryAt, rec.Attempt)
				}
				if calls, reused := p.Stats(); calls != 2 || reused != 0 {
					t.Errorf("calls %d, reused %d; want 2, 0", calls, reused)
				}
			})
		})
	}
}

func TestRefreshRejectedToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		m := newTestManager(t, NewMemoryStore(time.Now), time.Now, p, nil)
		tk := startSession(t, m, p)
		steps := []struct {
			rejected  secret.String
			want      secret.String
			wantCalls int
		}{
			{"", "at-1", 0},          // fresh: used
			{"at-1", "at-2", 1},      // the upstream refused at-1: forced refresh
			{"at-1", "at-2", 1},      // a late retry for at-1: the store already has newer
			{"something", "at-2", 1}, // not the stored token: no refresh
			{"at-2", "at-2", 1},      // refused again right after a refresh: passed on
			{"at-2", "at-3", 2},      // refused again MinRefreshInterval later
		}
		for i, st := range steps {
			if i == 5 {
				time.Sleep(m.engine.minForced)
			}
			tok, err := m.AccessToken(ctx, TokenRequest{Ticket: tk, Rejected: st.rejected})
			if err != nil || tok.Value != st.want {
				t.Errorf("step %d: AccessToken(rejected %s) = %v, %v; want %s", i, st.rejected.Reveal(), tok.Value.Reveal(), err, st.want.Reveal())
			}
			if calls, _ := p.Stats(); calls != st.wantCalls {
				t.Errorf("step %d: calls = %d, want %d", i, calls, st.wantCalls)
			}
		}
	})
}

// funcRefresher adapts a function to Refresher.
type funcRefresher func(ctx context.Context, rt secret.String) (*idp.Token, error)

func (f funcRefresher) Refresh(ctx context.Context, rt secret.String) (*idp.Token, error) {
	return f(ctx, rt)
}

func TestRefreshKeepsRefreshAndIDTokenWhenNoneReturned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var calls []secret.String
		r := funcRefresher(func(_ context.Context, rt secret.String) (*idp.Token, error) {
			calls = append(calls, rt)
			return &idp.Token{AccessToken: secret.String(fmt.Sprintf("at-new-%d", len(calls))), Expiry: time.Now().Add(5 * time.Minute)}, nil
		})
		m := newTestManager(t, NewMemoryStore(time.Now), time.Now, r, nil)
		rec := testRecord()
		rec.RefreshExpiry = time.Now().Add(24 * time.Hour)
		tk, err := m.Create(ctx, rec, ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 2; i++ {
			time.Sleep(10 * time.Minute)
			tok, err := m.AccessToken(ctx, TokenRequest{Ticket: tk})
			if want := secret.String(fmt.Sprintf("at-new-%d", i)); err != nil || tok.Value != want {
				t.Fatalf("refresh %d: %q, %v; want %s", i, tok.Value.Reveal(), err, want.Reveal())
			}
			got, _ := stored(t, m, tk)
			if got.RefreshToken != "rt-0" || got.IDToken != "id-0" || !got.RefreshExpiry.Equal(rec.RefreshExpiry) {
				t.Errorf("refresh %d: stored refresh %s, id %s, refresh expiry %v; want rt-0, id-0, %v",
					i, got.RefreshToken.Reveal(), got.IDToken.Reveal(), got.RefreshExpiry, rec.RefreshExpiry)
			}
		}
		if len(calls) != 2 || calls[0] != "rt-0" || calls[1] != "rt-0" {
			t.Errorf("refresh tokens sent = %v, want rt-0 twice (the provider does not rotate)", calls)
		}
	})
}

func TestNoRefreshToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		m := newTestManager(t, NewMemoryStore(time.Now), time.Now, p, nil)
		rec := testRecord() // at-0 valid 10 minutes
		rec.RefreshToken = ""
		tk, err := m.Create(ctx, rec, ViaCapture)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(9*time.Minute + 30*time.Second) // stale, cannot refresh
		if tok, err := m.AccessToken(ctx, TokenRequest{Ticket: tk}); err != nil || tok.Value != "at-0" {
			t.Errorf("stale without refresh token = %q, %v; want at-0", tok.Value.Reveal(), err)
		}
		time.Sleep(30 * time.Second)
		if _, err := m.AccessToken(ctx, TokenRequest{Ticket: tk}); !errors.Is(err, ErrSessionExpired) {
			t.Errorf("expired without refresh token = %v, want ErrSessionExpired", err)
		}
		if _, err := m.Load(ctx, tk); !errors.Is(err, ErrNoSession) {
			t.Errorf("Load = %v, want ErrNoSession", err)
		}
		if calls, _ := p.Stats(); calls != 0 {
			t.Errorf("calls = %d, want 0", calls)
		}
		if got := counter(m.met.ended.WithLabelValues(string(ReasonExpired))); got != 1 {
			t.Errorf("ended{expired} = %v, want 1", got)
		}
	})
}

// TestRefreshGhostLockHolder pins the wait for a lock whose holder died
// before recording an attempt: a request waits exactly RefreshTimeout,
// watching with backoff rather than spinning, and gets *UnavailableError;
// once the lock has lapsed the next request refreshes.
func TestRefreshGhostLockHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		store := newFaultyBackend(NewMemoryStore(nil))
		m := newTestManager(t, store, nil, p, nil) // RefreshTimeout 10s, LockTTL 30s
		tk := startSession(t, m, p)
		time.Sleep(5 * time.Minute)
		// A replica took the lock and died.
		if ok, err := store.TryLock(ctx, lockKey(tk.ID), "ghost", m.engine.lockTTL); !ok || err != nil {
			t.Fatalf("ghost TryLock = %v, %v", ok, err)
		}
		store.resetCounts()
		start := time.Now()
		_, err := m.AccessToken(ctx, TokenRequest{Ticket: tk})
		var ue *UnavailableError
		if !errors.As(err, &ue) || ue.RetryAfter != retrySoon {
			t.Fatalf("AccessToken = %v, want *UnavailableError retry %v", err, retrySoon)
		}
		if got := time.Since(start); got != m.engine.refreshTimeout {
			t.Errorf("gave up after %v, want exactly RefreshTimeout %v", got, m.engine.refreshTimeout)
		}
		if err := m.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		// Watching, not spinning: polls back off to 50-100ms.
		polls := store.count(opLock)
		if min, max := int(m.engine.refreshTimeout/pollMax), int(m.engine.refreshTimeout/(pollMax/2))+20; polls < min || polls > max {
			t.Errorf("%d TryLock calls in %v, want between %d and %d", polls, m.engine.refreshTimeout, min, max)
		}
		if count, sum := histogramCount(t, m.met.lockWait); count != 1 || sum != m.engine.refreshTimeout.Seconds() {
			t.Errorf("lock_wait: count %d sum %v, want 1 and %v", count, sum, m.engine.refreshTimeout.Seconds())
		}

		time.Sleep(m.engine.lockTTL - m.engine.refreshTimeout) // the ghost's lock lapses
		tok, err := m.AccessToken(ctx, TokenRequest{Ticket: tk})
		if err != nil || tok.Value != "at-2" {
			t.Fatalf("AccessToken = %q, %v; want at-2 after the ghost's lock lapsed", tok.Value.Reveal(), err)
		}
		if calls, reused := p.Stats(); calls != 1 || reused != 0 {
			t.Errorf("calls %d reused %d; want 1, 0", calls, reused)
		}
	})
}

func TestRefreshWaitGivesUpWhenHolderKeepsLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		store := NewMemoryStore(nil)
		m := newTestManager(t, store, nil, p, nil)
		tk := startSession(t, m, p)
		time.Sleep(5 * time.Minute)
		// A misbehaving holder whose lock outlives LockTTL.
		if ok, _ := store.TryLock(ctx, lockKey(tk.ID), "ghost", time.Hour); !ok {
			t.Fatal("ghost TryLock failed")
		}
		for range 3 {
			start := time.Now()
			_, err := m.AccessToken(ctx, TokenRequest{Ticket: tk})
			var ue *UnavailableError
			if !errors.As(err, &ue) || ue.RetryAfter != retrySoon {
				t.Fatalf("AccessToken = %v, want *UnavailableError retry %v", err, retrySoon)
			}
			if got := time.Since(start); got != m.engine.refreshTimeout {
				t.Errorf("gave up after %v, want RefreshTimeout %v", got, m.engine.refreshTimeout)
			}
			synctest.Wait() // the flight has ended too
		}
		if calls, _ := p.Stats(); calls != 0 {
			t.Errorf("calls = %d, want 0", calls)
		}
		if _, err := m.Load(ctx, tk); err != nil {
			t.Errorf("session lost: %v", err)
		}
		if err := m.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestRefreshSurvivesImpatientCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		entered, release := make(chan struct{}), make(chan struct{})
		p.SetBefore(func(ctx context.Context, rt secret.String) (*idp.Token, error) {
			close(entered)
			select {
			case <-release:
				return nil, nil
			case <-ctx.Done():
				return nil, fmt.Errorf("flight cancelled: %w", ctx.Err())
			}
		})
		m := newTestManager(t, NewMemoryStore(nil), nil, p, nil)
		tk := startSession(t, m, p)
		time.Sleep(5 * time.Minute)

		impatient, cancel := context.WithCancel(context.Background())
		errA := make(chan error, 1)
		go func() {
			_, err := m.AccessToken(impatient, TokenRequest{Ticket: tk})
			errA <- err
		}()
		<-entered
		resB := make(chan AccessToken, 1)
		go func() {
			tok, err := m.AccessToken(context.Background(), TokenRequest{Ticket: tk})
			if err != nil {
				t.Errorf("patient caller: %v", err)
			}
			resB <- tok
		}()
		synctest.Wait() // B has joined the flight
		cancel()
		if err := <-errA; !errors.Is(err, context.Canceled) {
			t.Errorf("impatient caller error = %v, want context.Canceled", err)
		}
		close(release)
		if tok := <-resB; tok.Value != "at-2" {
			t.Errorf("patient caller got %q, want at-2", tok.Value.Reveal())
		}
		if calls, _ := p.Stats(); calls != 1 {
			t.Errorf("calls = %d, want 1", calls)
		}
		if got := counter(m.met.shared); got != 1 {
			t.Errorf("refresh_shared = %v, want 1", got)
		}
	})
}

func TestRefreshUnsavedRotationIsNeverReplayed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		store := newFaultyBackend(NewMemoryStore(time.Now))
		m := newTestManager(t, store, time.Now, p, nil)
		tk := startSession(t, m, p)
		time.Sleep(5 * time.Minute)

		// The attempt is recorded; the store fails once the provider has
		// answered.
		p.SetBefore(func(context.Context, secret.String) (*idp.Token, error) {
			store.setFail(opUpdate, errors.New("redis: connection reset"))
			return nil, nil
		})
		tok, err := m.AccessToken(ctx, TokenRequest{Ticket: tk})
		if err != nil || tok.Value != "at-2" {
			t.Fatalf("AccessToken with the save failing = %q, %v; want at-2 served", tok.Value.Reveal(), err)
		}
		if rec, _ := stored(t, m, tk); rec.RefreshToken != "rt-1" {
			t.Fatalf("fixture: store has %s, want the spent rt-1", rec.RefreshToken.Reveal())
		}
		p.SetBefore(nil)
		store.setFail(opUpdate, nil)
		time.Sleep(5 * time.Minute) // at-2 expired too
		tok, err = m.AccessToken(ctx, TokenRequest{Ticket: tk})
		if err != nil || tok.Value != "at-3" {
			t.Fatalf("next refresh = %q, %v; want at-3", tok.Value.Reveal(), err)
		}
		if calls, reused := p.Stats(); calls != 2 || reused != 0 {
			t.Errorf("calls %d reused %d; want 2, 0 (rt-1 must not be sent again)", calls, reused)
		}
		if rec, _ := stored(t, m, tk); rec.RefreshToken != "rt-3" {
			t.Errorf("stored refresh token %s, want rt-3", rec.RefreshToken.Reveal())
		}
		if got := counter(m.met.storeErrors.WithLabelValues(opUpdate)); got != 1 {
			t.Errorf("store_errors{update} = %v, want 1", got)
		}
	})
}

// A flight watching another replica's refresh looks again after a quarter
// of the time it has waited (between pollMin and pollMax), jittered down
// to half of that at most.
func TestPollWait(t *testing.T) {
	for _, tt := range []struct{ waited, w time.Duration }{
		{0, pollMin},
		{5 * time.Millisecond, pollMin},
		{40 * time.Millisecond, 10 * time.Millisecond},
		{200 * time.Millisecond, 50 * time.Millisecond},
		{time.Second, pollMax},
		{time.Hour, pollMax},
	} {
		for range 100 {
			if got := pollWait(tt.waited); got < tt.w/2 || got > tt.w {
				t.Fatalf("pollWait(%v) = %v, want within [%v, %v]", tt.waited, got, tt.w/2, tt.w)
			}
		}
	}
}
