package idp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// backchannelLogoutEvent is the member of a logout token's events claim
// (OIDC Back-Channel Logout 1.0 §2.4).
const backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// ErrReplayedLogoutToken is returned by VerifyLogoutToken for a jti it has
// already accepted.
var ErrReplayedLogoutToken = errors.New("idp: logout token replayed")

// VerifyLogoutToken validates a back-channel logout token (OIDC
// Back-Channel Logout 1.0 §2.4 and §2.6):
//
//   - signature from the JWKS with the ID-token algorithm rules (no none,
//     no HS*), iss equal to the issuer, aud containing the client id;
//   - JOSE typ, when present, "logout+jwt" (or "application/logout+jwt");
//   - iat present, not in the future beyond ClockSkew and not older than
//     LogoutTokenMaxAge plus ClockSkew; exp checked when present;
//   - events a JSON object whose member
//     http://schemas.openid.net/event/backchannel-logout is a JSON object;
//   - sid or sub present, nonce absent;
//   - jti present and never accepted before (ErrReplayedLogoutToken).
//
// The replay cache is in memory, per replica and bounded
// (ReplayCacheSize, oldest evicted first): a token replayed to another
// replica within its age window is accepted there, which only ends
// sessions that the first delivery already ended.
func (p *Provider) VerifyLogoutToken(ctx context.Context, raw string) (*LogoutToken, error) {
	lt, err := p.verifyLogoutToken(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("idp: logout token: %w", err)
	}
	return lt, nil
}

func (p *Provider) verifyLogoutToken(ctx context.Context, raw string) (*LogoutToken, error) {
	claims, tok, err := p.parseSigned(ctx, raw)
	if err != nil {
		return nil, err
	}
	if typ, ok := tok.Header["typ"]; ok {
		s, _ := typ.(string)
		s = strings.ToLower(s)
		if s != "logout+jwt" && s != "application/logout+jwt" {
			return nil, fmt.Errorf("typ %q is not logout+jwt", s)
		}
	}
	iat, err := claims.GetIssuedAt()
	if err != nil || iat == nil {
		return nil, errors.New("no iat")
	}
	now := p.opts.Now()
	oldest := now.Add(-p.opts.LogoutTokenMaxAge - p.opts.clockSkew())
	if iat.Before(oldest) {
		return nil, errors.New("iat too old")
	}
	events, ok := claims["events"].(map[string]any)
	if !ok {
		return nil, errors.New("events is missing or not an object")
	}
	if ev, ok := events[backchannelLogoutEvent].(map[string]any); !ok || ev == nil {
		return nil, errors.New("events has no back-channel logout event object")
	}
	if _, ok := claims["nonce"]; ok {
		return nil, errors.New("nonce is present")
	}
	sub, subOK := optionalString(claims, "sub")
	sid, sidOK := optionalString(claims, "sid")
	if !subOK || !sidOK {
		return nil, errors.New("sub or sid is not a string")
	}
	if sub == "" && sid == "" {
		return nil, errors.New("neither sid nor sub")
	}
	jti, ok := optionalString(claims, "jti")
	if !ok || jti == "" {
		return nil, errors.New("no jti")
	}
	// Past iat+max age+skew the token is refused as too old anyway, so
	// the jti need not be remembered longer.
	until := iat.Add(p.opts.LogoutTokenMaxAge + p.opts.clockSkew())
	if !p.replay.add(jti, until, now) {
		return nil, ErrReplayedLogoutToken
	}
	return &LogoutToken{Issuer: p.opts.Issuer, Subject: sub, SID: sid, JTI: jti, IssuedAt: iat.Time}, nil
}

// optionalString reads a string claim: ok is false when present with
// another type.
func optionalString(claims map[string]any, name string) (string, bool) {
	v, present := claims[name]
	if !present {
		return "", true
	}
	s, ok := v.(string)
	return s, ok
}

// replayCache remembers accepted logout-token jti values until they could
// no longer pass the age check. It is safe for concurrent use.
type replayCache struct {
	max int

	mu sync.Mutex // guards seen and order
	// seen maps a jti to when it may be forgotten.
	seen map[string]time.Time
	// order holds the keys in insertion order, for expiry and eviction.
	order []string
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[string]time.Time)}
}

// add records key until the given time and reports whether it was new. When
// full it forgets the oldest entry.
func (c *replayCache) add(key string, until, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Drop expired entries from the front. Insertion order is close to
	// expiry order (until = iat + a constant), so this keeps the cache
	// small without a scan.
	for len(c.order) > 0 {
		front := c.order[0]
		if t, ok := c.seen[front]; ok && t.After(now) {
			break
		}
		delete(c.seen, front)
		c.order = c.order[1:]
	}
	if t, ok := c.seen[key]; ok && t.After(now) {
		return false
	}
	for len(c.seen) >= c.max && len(c.order) > 0 {
		delete(c.seen, c.order[0])
		c.order = c.order[1:]
	}
	if _, ok := c.seen[key]; !ok {
		c.order = append(c.order, key)
	}
	c.seen[key] = until
	return true
}

// len reports the number of remembered keys.
func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
