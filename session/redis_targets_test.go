package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/idptest"
)

// RefreshTarget makes lineageRefresher a TargetRefresher: every call,
// whatever its target, continues its session's refresh-token chain.
func (l *lineageRefresher) RefreshTarget(ctx context.Context, r idp.RefreshRequest) (*idp.Token, error) {
	tok, err := l.idp.RefreshTarget(ctx, r)
	l.mu.Lock()
	defer l.mu.Unlock()
	session, known := l.owner[r.RefreshToken]
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

// TestRedisEngineTargetsStorm: 3 replicas on a real Redis, 4 sessions with
// two resources each, 60 goroutines per replica asking every session for
// both resources at once, over several expiry cycles: exactly one refresh
// per session and resource per cycle, no refresh token presented twice, no
// invalid_grant, and every request gets the one token of its session and
// resource.
func TestRedisEngineTargetsStorm(t *testing.T) {
	const (
		nReplicas = 3
		callers   = 60
		sessions  = 4
		cycles    = 3
		life      = 5 * time.Minute
	)
	ctx := context.Background()
	clock := newManualClock()
	provider := idptest.NewTokenEndpoint(clock.Now, life)
	ref := newLineageRefresher(provider)
	replicas := newEngineReplicas(t, nReplicas, clock.Now, ref, nil)
	targets := []idp.Target{targetA, targetB}

	tickets := make([]Ticket, sessions)
	for i := range tickets {
		at, rt, exp := provider.Grant()
		ref.track(rt, i)
		tk, err := replicas[i%nReplicas].m.Create(ctx, Record{AccessToken: at, RefreshToken: rt, AccessExpiry: exp, Subject: fmt.Sprintf("user-%d", i)}, ViaLogin)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		tickets[i] = tk
	}

	for cycle := 1; cycle <= cycles; cycle++ {
		clock.Advance(life + time.Minute)
		got := make(map[string]map[string]int) // session/target → token → count
		for _, target := range targets {
			results := engineStormTarget(replicas, callers, tickets, target)
			for r := range results {
				for g := range results[r] {
					for s, c := range results[r][g] {
						if c.err != nil {
							t.Fatalf("cycle %d, %s, replica %d, session %d: %v", cycle, target, r, s, c.err)
						}
						if !strings.HasSuffix(c.tok.Value.Reveal(), "@"+target.Key()) {
							t.Fatalf("cycle %d: %s got %q, another target's token", cycle, target, c.tok.Value.Reveal())
						}
						k := fmt.Sprintf("%d %s", s, target.Key())
						if got[k] == nil {
							got[k] = map[string]int{}
						}
						got[k][c.tok.Value.Reveal()]++
					}
				}
			}
		}
		for k, toks := range got {
			if len(toks) != 1 {
				t.Errorf("cycle %d, session/target %s: %d different tokens handed out, want 1", cycle, k, len(toks))
			}
		}
		calls, invalid := ref.snapshot()
		for s := range tickets {
			if want := cycle * len(targets); calls[s] != want {
				t.Errorf("after cycle %d: session %d had %d refreshes, want %d (one per resource per cycle)", cycle, s, calls[s], want)
			}
		}
		if calls[-1] != 0 || invalid != 0 {
			t.Fatalf("after cycle %d: %d calls with unknown refresh tokens, %d invalid_grant; want 0, 0", cycle, calls[-1], invalid)
		}
	}
	calls, reused := provider.Stats()
	if want := sessions * len(targets) * cycles; calls != want || reused != 0 {
		t.Errorf("token endpoint: %d calls, %d reuses; want %d, 0", calls, reused, want)
	}
	var successes float64
	for _, r := range replicas {
		successes += testutil.ToFloat64(r.m.met.refreshes.WithLabelValues(refreshSuccess))
	}
	if want := float64(sessions * len(targets) * cycles); successes != want {
		t.Errorf("tokenrelay_refresh_total{result=success} over the replicas = %v, want %v", successes, want)
	}
}

// engineStormTarget is engineStorm for both targets at once: half the
// callers of each replica ask for target, the other half for the other
// target of the storm (targetA or targetB), so the two resources of a
// session are refreshed concurrently.
func engineStormTarget(replicas []engineReplica, callers int, tickets []Ticket, target idp.Target) [][][]engineCall {
	other := targetA
	if target == targetA {
		other = targetB
	}
	out := make([][][]engineCall, len(replicas))
	start := make(chan struct{})
	done := make(chan struct{})
	n := 0
	for r := range replicas {
		out[r] = make([][]engineCall, callers)
		for g := range callers {
			out[r][g] = make([]engineCall, len(tickets))
			n++
			go func() {
				defer func() { done <- struct{}{} }()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				<-start
				for j := range tickets {
					s := (g + j) % len(tickets)
					tok, err := replicas[r].m.AccessToken(ctx, TokenRequest{Ticket: tickets[s], Target: target})
					out[r][g][s] = engineCall{tok, err}
					// The other resource of the same session, at the same
					// moment, spends the same refresh-token chain.
					_, _ = replicas[r].m.AccessToken(ctx, TokenRequest{Ticket: tickets[s], Target: other})
				}
			}()
		}
	}
	close(start)
	for range n {
		<-done
	}
	return out
}
