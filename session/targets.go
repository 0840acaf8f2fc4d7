package session

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
)

// The tokens of route targets: a session has one refresh token and, beside
// the login's own access token, one access token per target (an RFC 8707
// resource and scopes) in its record (Record.Tokens). Each is refreshed by
// the engine as the login's token is, in a flight of its own; the flights
// of one session's targets take the session's one lock, so they run one
// after the other, and each reloads the record after locking and spends
// the refresh token the one before it saved. With DPoP, every token
// request of the session is proved with the session's key, and every token
// handed out comes with it.

// TargetRefresher is a Refresher that can also ask for the token of a
// route target and bind tokens to a DPoP key. *idp.Provider implements
// it; without it, only the login's own Bearer token is refreshed.
type TargetRefresher interface {
	RefreshTarget(ctx context.Context, r idp.RefreshRequest) (*idp.Token, error)
}

// refresh calls the provider with rec's refresh token for target, proved
// with the session's DPoP key when it has one.
func (e *engine) refresh(ctx context.Context, rec *Record, target idp.Target) (*idp.Token, error) {
	key := e.keys.get(rec.DPoPKey)
	if target.IsZero() && key == nil {
		return e.refresher.Refresh(ctx, rec.RefreshToken)
	}
	// accessToken checked that e.targets is set.
	return e.targets.RefreshTarget(ctx, idp.RefreshRequest{RefreshToken: rec.RefreshToken, Target: target, DPoP: key})
}

// maxKeys bounds the parsed DPoP keys kept.
const maxKeys = 10000

// dpopKeys caches parsed DPoP keys by their bytes: parsing one derives the
// public key, which would cost every request of a DPoP session a scalar
// multiplication. Its zero value is empty and ready; it is safe for
// concurrent use.
type dpopKeys struct {
	mu sync.Mutex // guards m
	m  map[string]*idp.DPoPKey
}

// get returns the key of raw, nil for none (or one that does not parse,
// which a record written by this package never holds).
func (c *dpopKeys) get(raw []byte) *idp.DPoPKey {
	if len(raw) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.m[string(raw)]; ok {
		return k
	}
	k, err := idp.ParseDPoPKey(raw)
	if err != nil {
		return nil
	}
	if c.m == nil {
		c.m = make(map[string]*idp.DPoPKey)
	}
	for old := range c.m {
		if len(c.m) < maxKeys {
			break
		}
		delete(c.m, old)
	}
	c.m[string(raw)] = k
	return k
}

// targetHolds remembers, in this process, targets whose tokens the
// provider refused, so that a misconfigured route asks again at most once
// per FailureBackoff rather than at every request. Its zero value is empty
// and ready; it is safe for concurrent use.
type targetHolds struct {
	mu sync.Mutex // guards m
	m  map[string]time.Time
}

// hold refuses target until until.
func (h *targetHolds) hold(target string, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[string]time.Time)
	}
	h.m[target] = until
}

// held reports until when target is refused at now.
func (h *targetHolds) held(target string, now time.Time) (time.Time, bool) {
	if target == "" {
		return time.Time{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	until, ok := h.m[target]
	if !ok || !now.Before(until) {
		delete(h.m, target)
		return time.Time{}, false
	}
	return until, true
}

// sessionTurns lets the flights of one session in this process take the
// session's store lock one after the other. They would anyway (the lock
// serialises them), but a flight that waits for another of its own
// process's here watches nothing in the store meanwhile: a storm over
// several targets polls the store no more than one over a single target.
// Its zero value is ready; it is safe for concurrent use.
type sessionTurns struct {
	mu sync.Mutex // guards m
	m  map[string]*turn
}

// turn is one session's: its token (a buffered channel of one) and how
// many flights hold or wait for it.
type turn struct {
	token chan struct{}
	users int
}

// take waits for the session key's turn, until deadline or ctx ends, and
// returns its release.
func (s *sessionTurns) take(ctx context.Context, key string, deadline time.Time) (func(), error) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[string]*turn)
	}
	t := s.m[key]
	if t == nil {
		t = &turn{token: make(chan struct{}, 1)}
		s.m[key] = t
	}
	t.users++
	s.mu.Unlock()
	done := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if t.users--; t.users == 0 {
			delete(s.m, key)
		}
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case t.token <- struct{}{}:
		return func() { <-t.token; done() }, nil
	case <-timer.C:
		done()
		return nil, &UnavailableError{RetryAfter: retrySoon, Err: errLockWait}
	case <-ctx.Done():
		done()
		return nil, fmt.Errorf("session: refresh: %w", ctx.Err())
	}
}
