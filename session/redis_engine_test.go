package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/idptest"
	"github.com/tokenrelay/tokenrelay/internal/redistest"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session/redisstore"
)

// The refresh engine across replicas on a real Redis: several Managers,
// each with its own client and redisstore.Store as separate processes would have,
// sharing one redis-server, one key prefix, one server secret, one clock and
// one identity provider whose refresh tokens work once.

// engineReplica is one Manager and the store under it.
type engineReplica struct {
	m      *Manager
	store  *redisstore.Store
	client redis.UniversalClient
	prefix string
}

// newEngineReplicas builds n replicas on the package's shared redis-server.
func newEngineReplicas(t *testing.T, n int, now func() time.Time, r Refresher, edit func(*ManagerOptions)) []engineReplica {
	t.Helper()
	srv := redistest.Shared(t)
	prefix := redistest.KeyPrefix(t)
	out := make([]engineReplica, n)
	for i := range out {
		c := newTestRedisClient(t, redisstore.Options{URL: "redis://" + srv.Addr})
		store := redisstore.New(c, redisstore.Options{KeyPrefix: prefix}, nil)
		opts := ManagerOptions{
			Backend:        store,
			Secret:         testSecret,
			Refresher:      r,
			Issuer:         "https://issuer.example",
			Now:            now,
			Registerer:     prometheus.NewRegistry(),
			RefreshOptions: RefreshOptions{Ahead: time.Minute, Timeout: 5 * time.Second},
		}
		if edit != nil {
			edit(&opts)
		}
		m, err := NewManager(opts)
		if err != nil {
			t.Fatalf("NewManager: %v", err)
		}
		out[i] = engineReplica{m: m, store: store, client: c, prefix: prefix}
	}
	return out
}

// lineageRefresher wraps the single-use IdP and attributes every refresh
// call to the session whose refresh-token chain it continues, so the test
// can count calls per session. It also counts invalid_grant answers.
type lineageRefresher struct {
	idp *idptest.TokenEndpoint

	mu            sync.Mutex // guards the fields below
	owner         map[secret.String]int
	calls         map[int]int
	invalidGrants int
}

func newLineageRefresher(p *idptest.TokenEndpoint) *lineageRefresher {
	return &lineageRefresher{idp: p, owner: map[secret.String]int{}, calls: map[int]int{}}
}

// track says that refresh token rt belongs to session i.
func (l *lineageRefresher) track(rt secret.String, i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.owner[rt] = i
}

func (l *lineageRefresher) Refresh(ctx context.Context, rt secret.String) (*idp.Token, error) {
	tok, err := l.idp.Refresh(ctx, rt)
	l.mu.Lock()
	defer l.mu.Unlock()
	session, known := l.owner[rt]
	if !known {
		session = -1
	}
	l.calls[session]++
	if errors.Is(err, idp.ErrInvalidGrant) {
		l.invalidGrants++
	}
	if err == nil && !tok.RefreshToken.IsZero() {
		l.owner[tok.RefreshToken] = session
	}
	return tok, err
}

func (l *lineageRefresher) snapshot() (calls map[int]int, invalidGrants int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	calls = make(map[int]int, len(l.calls))
	for k, v := range l.calls {
		calls[k] = v
	}
	return calls, l.invalidGrants
}

// engineCall is what one AccessToken call returned.
type engineCall struct {
	tok AccessToken
	err error
}

// engineStorm runs callers goroutines per replica at once; each asks every
// session for an access token (starting at a different session) and the
// results are indexed [replica][caller][session].
func engineStorm(replicas []engineReplica, callers int, tickets []Ticket) [][][]engineCall {
	out := make([][][]engineCall, len(replicas))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for r := range replicas {
		out[r] = make([][]engineCall, callers)
		for g := range callers {
			out[r][g] = make([]engineCall, len(tickets))
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				<-start
				for j := range tickets {
					s := (g + j) % len(tickets)
					tok, err := replicas[r].m.AccessToken(ctx, TokenRequest{Ticket: tickets[s]})
					out[r][g][s] = engineCall{tok, err}
				}
			})
		}
	}
	close(start)
	wg.Wait()
	return out
}

// TestRedisEngineRefreshStorm: 3 replicas × 200 goroutines on expired
// sessions, over several expiry cycles, make exactly one token endpoint call
// per session per cycle, never reuse a refresh token, and all get the new
// access token.
func TestRedisEngineRefreshStorm(t *testing.T) {
	const (
		nReplicas = 3
		callers   = 200
		sessions  = 4
		cycles    = 3
		life      = 5 * time.Minute
	)
	ctx := context.Background()
	clock := newManualClock()
	provider := idptest.NewTokenEndpoint(clock.Now, life)
	ref := newLineageRefresher(provider)
	replicas := newEngineReplicas(t, nReplicas, clock.Now, ref, nil)

	tickets := make([]Ticket, sessions)
	prev := make([]secret.String, sessions)
	for i := range tickets {
		at, rt, exp := provider.Grant()
		ref.track(rt, i)
		rec := Record{
			AccessToken: at, RefreshToken: rt, AccessExpiry: exp,
			Issuer: "https://issuer.example", Subject: fmt.Sprintf("user-%d", i), SID: fmt.Sprintf("sid-%d", i),
		}
		tk, err := replicas[i%nReplicas].m.Create(ctx, rec, ViaLogin)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		tickets[i], prev[i] = tk, at
	}

	for cycle := 1; cycle <= cycles; cycle++ {
		clock.Advance(life + time.Minute) // every access token has expired
		start := time.Now()
		results := engineStorm(replicas, callers, tickets)
		t.Logf("cycle %d: %d AccessToken calls in %s", cycle, nReplicas*callers*sessions, time.Since(start).Round(time.Millisecond))

		failures := 0
		for s := range tickets {
			want := results[0][0][s].tok.Value
			for r := range results {
				for g := range results[r] {
					c := results[r][g][s]
					switch {
					case c.err != nil:
						if failures++; failures <= 5 {
							t.Errorf("cycle %d, replica %d, caller %d, session %d: %v", cycle, r, g, s, c.err)
						}
					case c.tok.Value != want:
						if failures++; failures <= 5 {
							t.Errorf("cycle %d, session %d: replica %d caller %d got another access token than replica 0 caller 0", cycle, s, r, g)
						}
					case !c.tok.Expiry.After(clock.Now()):
						t.Errorf("cycle %d, session %d: served a token expiring %v, now %v", cycle, s, c.tok.Expiry, clock.Now())
					}
				}
			}
			if want == prev[s] {
				t.Errorf("cycle %d, session %d: still the access token of the previous cycle", cycle, s)
			}
			prev[s] = want
		}
		if failures > 0 {
			t.Fatalf("cycle %d: %d failed or inconsistent calls", cycle, failures)
		}
		calls, invalid := ref.snapshot()
		for s := range tickets {
			if calls[s] != cycle {
				t.Errorf("after cycle %d: session %d had %d token endpoint calls, want %d (one per cycle)", cycle, s, calls[s], cycle)
			}
		}
		if calls[-1] != 0 || invalid != 0 {
			t.Fatalf("after cycle %d: %d calls with unknown refresh tokens, %d invalid_grant; want 0, 0", cycle, calls[-1], invalid)
		}
	}

	calls, reused := provider.Stats()
	if want := sessions * cycles; calls != want || reused != 0 {
		t.Errorf("token endpoint: %d calls, %d refresh-token reuses; want %d, 0", calls, reused, want)
	}
	var successes float64
	for _, r := range replicas {
		successes += testutil.ToFloat64(r.m.met.refreshes.WithLabelValues(refreshSuccess))
	}
	if want := float64(sessions * cycles); successes != want {
		t.Errorf("tokenrelay_refresh_total{result=success} over the replicas = %v, want %v", successes, want)
	}
}

// TestRedisEngineLockHolderDies: a replica took a session's refresh lock
// and died without unlocking (before recording an attempt). The others wait
// for the lock to lapse, within RefreshTimeout, then exactly one of them
// refreshes, under the lock, and everyone gets its token.
func TestRedisEngineLockHolderDies(t *testing.T) {
	const (
		nReplicas = 3
		callers   = 50
		lockTTL   = 4 * time.Second
		// The ghost took its lock a while ago: what is left of it is
		// well inside the callers' RefreshTimeout (lockTTL / 2).
		ghostTTL = lockTTL / 4
	)
	ctx := context.Background()
	clock := newManualClock()
	provider := idptest.NewTokenEndpoint(clock.Now, 5*time.Minute)
	replicas := newEngineReplicas(t, nReplicas, clock.Now, provider, func(o *ManagerOptions) {
		o.LockTTL = lockTTL
		o.Timeout = lockTTL / 2
	})

	at, rt, exp := provider.Grant()
	tk, err := replicas[0].m.Create(ctx, Record{AccessToken: at, RefreshToken: rt, AccessExpiry: exp, Subject: "user"}, ViaLogin)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	clock.Advance(10 * time.Minute)

	store := replicas[0].store
	raw := replicas[0].client
	lock := replicas[0].prefix + lockKey(tk.ID)
	if ok, err := store.TryLock(ctx, lockKey(tk.ID), "ghost", ghostTTL); !ok || err != nil {
		t.Fatalf("ghost TryLock = %v, %v", ok, err)
	}
	ghostAt := time.Now()

	// Every token endpoint call checks who holds the lock at that moment.
	var mu sync.Mutex
	var holders []string
	var sinceGhost []time.Duration
	provider.SetBefore(func(ctx context.Context, _ secret.String) (*idp.Token, error) {
		holder, err := raw.Get(ctx, lock).Result()
		if errors.Is(err, redis.Nil) {
			holder = "<nobody>"
		} else if err != nil {
			holder = "<" + err.Error() + ">"
		}
		mu.Lock()
		holders = append(holders, holder)
		sinceGhost = append(sinceGhost, time.Since(ghostAt))
		mu.Unlock()
		return nil, nil
	})

	results := engineStorm(replicas, callers, []Ticket{tk})

	calls, reused := provider.Stats()
	if calls != 1 || reused != 0 {
		t.Fatalf("token endpoint: %d calls, %d reuses; want 1, 0", calls, reused)
	}
	mu.Lock()
	holder, after := holders[0], sinceGhost[0]
	mu.Unlock()
	if holder == "ghost" || holder == "<nobody>" || len(holder) != 32 {
		t.Errorf("during the refresh the lock was held by %q, want a replica's 32-hex owner token", holder)
	}
	t.Logf("the refresh started %s after the ghost took its %s lock", after.Round(time.Millisecond), ghostTTL)
	var want secret.String
	for r := range results {
		for g := range results[r] {
			c := results[r][g][0]
			if c.err != nil {
				t.Fatalf("replica %d caller %d: %v", r, g, c.err)
			}
			if want == "" {
				want = c.tok.Value
			}
			if c.tok.Value != want || c.tok.Value == at {
				t.Fatalf("replica %d caller %d got a different or the expired token", r, g)
			}
		}
	}
}
