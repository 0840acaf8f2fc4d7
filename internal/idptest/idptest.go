// Package idptest holds the test double of an identity provider's token
// endpoint that the session engine's, the proxy's and the benchmark's tests
// share: refresh tokens are single-use, as at a provider that rotates them,
// so a test can count exactly how many refreshes were made and whether a
// refresh token was ever presented twice.
//
// Tests that need the real thing — an OpenID Provider with its own
// rotation, reuse detection and grant revocation — run against
// examples/demo/op in e2e/.
package idptest

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
)

// TokenEndpoint answers refresh grants (it implements session.Refresher
// and session.TargetRefresher; client credentials and token exchange too)
// with single-use refresh tokens: each live refresh token is exchanged once
// for a new pair at-N/rt-N, and a spent one is refused with invalid_grant
// and counted as reused, unless it comes back within the reuse grace.
//
// TokenEndpoint is safe for concurrent use.
type TokenEndpoint struct {
	now      func() time.Time
	lifetime time.Duration

	mu      sync.Mutex // guards everything below
	grace   time.Duration
	latency time.Duration
	before  func(ctx context.Context, rt secret.String) (*idp.Token, error)
	live    map[secret.String]bool
	spent   map[secret.String]time.Time // when each spent token was first used
	seen    []secret.String             // every refresh token presented, in order
	targets []idp.Target                // the target of every refresh, in order
	clients int                         // client credentials grants
	exch    int                         // token exchanges
	calls   int
	reused  int
	graced  int
	issued  int
}

// NewTokenEndpoint returns an endpoint whose access tokens live lifetime
// from their issue on clock now (nil: time.Now).
func NewTokenEndpoint(now func() time.Time, lifetime time.Duration) *TokenEndpoint {
	if now == nil {
		now = time.Now
	}
	return &TokenEndpoint{now: now, lifetime: lifetime, live: map[secret.String]bool{}, spent: map[secret.String]time.Time{}}
}

// SetGrace sets the provider's reuse grace: a spent refresh token presented
// again within d of its first use gets new tokens and counts as graced, not
// reused.
func (p *TokenEndpoint) SetGrace(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.grace = d
}

// SetLatency makes every answer take d (on the clock of the caller's
// timers), or end early with the caller's context.
func (p *TokenEndpoint) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// SetBefore installs a hook that runs first on every call, before any
// token is spent: a non-nil token or error it returns is the answer, and
// spends nothing. nil removes it.
func (p *TokenEndpoint) SetBefore(f func(ctx context.Context, rt secret.String) (*idp.Token, error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.before = f
}

// Grant issues a first token pair, as a login would.
func (p *TokenEndpoint) Grant() (at, rt secret.String, exp time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issueLocked()
}

func (p *TokenEndpoint) issueLocked() (at, rt secret.String, exp time.Time) {
	p.issued++
	at = secret.String(fmt.Sprintf("at-%d", p.issued))
	rt = secret.String(fmt.Sprintf("rt-%d", p.issued))
	p.live[rt] = true
	return at, rt, p.now().Add(p.lifetime)
}

// RevokeAll kills every live refresh token, as a provider that revoked the
// grant: the next refresh gets invalid_grant.
func (p *TokenEndpoint) RevokeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.live)
}

// Refresh exchanges a live refresh token for a new pair.
func (p *TokenEndpoint) Refresh(ctx context.Context, rt secret.String) (*idp.Token, error) {
	return p.RefreshTarget(ctx, idp.RefreshRequest{RefreshToken: rt})
}

// RefreshTarget is Refresh for a target, with DPoP: the access token names
// the target ("at-N@<target key>") and, when the request is proved, the
// key's thumbprint ("…#<jkt>"), so a test sees which token went where.
func (p *TokenEndpoint) RefreshTarget(ctx context.Context, r idp.RefreshRequest) (*idp.Token, error) {
	rt := r.RefreshToken
	p.mu.Lock()
	p.calls++
	p.seen = append(p.seen, rt)
	p.targets = append(p.targets, r.Target)
	first, spent := p.spent[rt]
	graced := spent && p.grace > 0 && p.now().Before(first.Add(p.grace))
	switch {
	case graced:
		p.graced++
	case spent:
		p.reused++
	}
	before, latency := p.before, p.latency
	p.mu.Unlock()
	if before != nil {
		if tok, err := before(ctx, rt); tok != nil || err != nil {
			return tok, err
		}
	}
	if latency > 0 {
		t := time.NewTimer(latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, &idp.TokenError{Err: ctx.Err()}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.live[rt] && !graced {
		return nil, &idp.TokenError{Code: "invalid_grant", Status: http.StatusBadRequest, Dead: true}
	}
	if !graced {
		delete(p.live, rt)
		p.spent[rt] = p.now()
	}
	at, next, exp := p.issueLocked()
	at, typ := named(at, r.Target, r.DPoP)
	return &idp.Token{AccessToken: at, RefreshToken: next, TokenType: typ, Expiry: exp}, nil
}

// named is the access token at issued for target and bound to key, and
// its token type.
func named(at secret.String, target idp.Target, key *idp.DPoPKey) (secret.String, string) {
	if !target.IsZero() {
		at += secret.String("@" + target.Key())
	}
	if key == nil {
		return at, "Bearer"
	}
	return at + secret.String("#"+key.Thumbprint()), "DPoP"
}

// ClientCredentials issues tokenrelay's own token for target:
// "ct-N@<target key>[#<jkt>]".
func (p *TokenEndpoint) ClientCredentials(ctx context.Context, target idp.Target, key *idp.DPoPKey) (*idp.Token, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clients++
	at, typ := named(secret.String(fmt.Sprintf("ct-%d", p.clients)), target, key)
	return &idp.Token{AccessToken: at, TokenType: typ, Expiry: p.now().Add(p.lifetime)}, nil
}

// ExchangeToken trades a subject token for one of the target:
// "xt-N(<subject>)@<target key>[#<jkt>]".
func (p *TokenEndpoint) ExchangeToken(ctx context.Context, r idp.ExchangeRequest) (*idp.Token, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exch++
	at, typ := named(secret.String(fmt.Sprintf("xt-%d(%s)", p.exch, r.SubjectToken.Reveal())), r.Target, r.DPoP)
	return &idp.Token{AccessToken: at, TokenType: typ, Expiry: p.now().Add(p.lifetime)}, nil
}

// Targets returns the target of every refresh so far, in order.
func (p *TokenEndpoint) Targets() []idp.Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.targets)
}

// Grants reports the client credentials grants and token exchanges so far.
func (p *TokenEndpoint) Grants() (clientCredentials, exchanges int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clients, p.exch
}

// Stats reports the refresh calls so far and how many presented a refresh
// token already spent (outside the grace): what the engine must never do.
func (p *TokenEndpoint) Stats() (calls, reused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls, p.reused
}

// Graced reports how many calls presented a spent refresh token within the
// reuse grace.
func (p *TokenEndpoint) Graced() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.graced
}

// Presented returns every refresh token presented so far, in order.
func (p *TokenEndpoint) Presented() []secret.String {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen)
}
