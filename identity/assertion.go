package identity

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxCachedAssertions bounds one route's assertion cache. When it is full
// of live entries the cache starts over: an assertion is cheap to sign
// again, memory is not to be spent without bound.
const maxCachedAssertions = 10000

// registered are the claims the assertion sets itself; a mapped claim of
// one of these names is not copied.
var registered = map[string]bool{"iss": true, "sub": true, "aud": true, "exp": true, "nbf": true, "iat": true, "jti": true}

// Signer signs identity assertions for the routes that send one.
type Signer struct {
	keys     *KeyRing
	issuer   string
	lifetime time.Duration
	header   string
	now      func() time.Time
}

// NewSigner returns a signer whose assertions name issuer (the public URL)
// as iss and last o.Lifetime. It reads the key ring's clock.
func NewSigner(keys *KeyRing, issuer string, o AssertionOptions) *Signer {
	o = o.withDefaults()
	return &Signer{keys: keys, issuer: issuer, lifetime: o.Lifetime, header: textproto.CanonicalMIMEHeaderKey(o.Header), now: keys.now}
}

// NewRoute builds what a route tells its upstream. audience is the route's
// upstream URL, the assertion's aud. s may be nil when o.Assertion is off.
func NewRoute(o Options, audience string, s *Signer) (*Route, error) {
	rt := &Route{plan: newHeaderPlan(o), audience: audience}
	if o.Assertion {
		if s == nil {
			return nil, errors.New("identity: the route sends an assertion but no signer is configured")
		}
		rt.signer = &signer{Signer: s, cache: &assertionCache{}}
		rt.header = s.header
	}
	return rt, nil
}

// signer is a Signer with one route's cache.
type signer struct {
	*Signer
	cache *assertionCache
}

// assertion returns a signed assertion for u, from the cache while it has
// more than half its lifetime left.
func (s *signer) assertion(ctx context.Context, u *User, audience string, plan *headerPlan, cacheKey string) (string, error) {
	now := s.now()
	if cacheKey != "" {
		if tok, ok := s.cache.get(cacheKey, u.Subject, now); ok {
			return tok, nil
		}
	}
	tok, err := s.sign(ctx, u, audience, plan, now)
	if err != nil {
		return "", err
	}
	if cacheKey != "" {
		s.cache.put(cacheKey, u.Subject, tok, now, now.Add(s.lifetime/2))
	}
	return tok, nil
}

// sign makes a new assertion: iss, aud, sub, iat, exp and the route's
// mapped claims, with their JSON values (arrays stay arrays).
func (s *Signer) sign(ctx context.Context, u *User, audience string, plan *headerPlan, now time.Time) (string, error) {
	claims := jwt.MapClaims{
		"iss": s.issuer,
		"aud": audience,
		"sub": u.Subject,
		"iat": now.Unix(),
		"exp": now.Add(s.lifetime).Unix(),
	}
	for _, m := range plan.headers {
		if registered[m.claim] {
			continue
		}
		if v, ok := u.Claim(m.claim); ok {
			claims[m.claim] = v
		}
	}
	k := s.keys.current(ctx).signingKey(now)
	tok := jwt.NewWithClaims(k.method(), claims)
	tok.Header["kid"] = k.id
	signed, err := tok.SignedString(k.private)
	if err != nil {
		return "", fmt.Errorf("identity: sign assertion: %w", err)
	}
	return signed, nil
}

// assertionCache keeps one route's signed assertions by session.
type assertionCache struct {
	mu      sync.Mutex // guards entries
	entries map[string]cachedAssertion
}

type cachedAssertion struct {
	subject string
	token   string
	until   time.Time
}

func (c *assertionCache) get(key, subject string, now time.Time) (string, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || e.subject != subject || !now.Before(e.until) {
		return "", false
	}
	return e.token, true
}

// put caches token until until. A full cache first drops what has
// expired, and starts over if that is not enough.
func (c *assertionCache) put(key, subject, token string, now, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]cachedAssertion{}
	}
	if len(c.entries) >= maxCachedAssertions {
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxCachedAssertions {
			clear(c.entries)
		}
	}
	c.entries[key] = cachedAssertion{subject: subject, token: token, until: until}
}
