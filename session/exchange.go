package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
)

// Token exchange (RFC 8693): a route's token is obtained by trading the
// session's own access token (refreshed by the engine when due) for one of
// the route's target. Exchanging spends nothing, so it needs neither the
// store lock nor an Attempt: each replica exchanges for itself and keeps
// the result in memory, per session and target, until it is due for
// renewal (RefreshAhead before its expiry), refreshed in the background
// while it is still valid, as the session's own token is.

// Exchanger trades a user's access token for one of a route's target.
// *idp.Provider implements it.
type Exchanger interface {
	ExchangeToken(ctx context.Context, r idp.ExchangeRequest) (*idp.Token, error)
}

var errNoExchanger = errors.New("session: token exchange is not configured (no Exchanger)")

// exchanged is one cached exchanged token.
type exchanged struct {
	value    secret.String
	expiry   time.Time
	obtained time.Time
}

// exchanged is step 1 for a token exchange route: the session's own token
// first, then the cached exchanged token of req.Target, exchanged anew
// when it is stale (in the background), expired or rejected.
func (e *engine) exchanged(ctx context.Context, req TokenRequest) (AccessToken, error) {
	if e.exchanger == nil {
		return AccessToken{}, errNoExchanger
	}
	subject, err := e.accessToken(ctx, TokenRequest{Ticket: req.Ticket, Opened: req.Opened})
	if err != nil {
		return AccessToken{}, err
	}
	key, target := sessionKey(req.Ticket.ID), req.Target.Key()
	now := e.rs.now()
	c, ok := e.exchanges.get(key, target)
	current := AccessToken{Value: c.value, Expiry: c.expiry, DPoP: subject.DPoP}
	state := tokenExpired
	if ok {
		state = classify(c.expiry, now, e.ahead)
	}
	forced := !req.Rejected.IsZero() && req.Rejected == c.value && !now.Before(c.obtained.Add(e.minForced))
	if state == tokenFresh && !forced {
		return current, nil
	}
	if until, held := e.refused.held(exchangeHoldKey(target), now); held {
		if state != tokenExpired && !forced {
			return current, nil
		}
		return AccessToken{}, fmt.Errorf("session: the provider refused this token exchange recently (until %s): %w", until.Format(time.RFC3339), ErrTokenRefused)
	}
	run := func() (any, error) { return e.exchange(context.WithoutCancel(ctx), key, req.Target, subject, c), nil }
	ch := e.flights.DoChan(key+"\x00x"+target, run)
	if state == tokenStale && !forced {
		return current, nil // the exchange goes on in the background
	}
	timer := time.NewTimer(e.refreshTimeout)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return AccessToken{}, fmt.Errorf("session: token exchange: %w", ctx.Err())
	case <-timer.C:
		return AccessToken{}, &UnavailableError{RetryAfter: retrySoon, Err: errRefreshSlow}
	case res := <-ch:
		o := res.Val.(outcome)
		if o.err != nil && !(o.fallback && o.tok.Value != req.Rejected) {
			return AccessToken{}, o.err
		}
		return o.tok, nil
	}
}

// exchangeHoldKey names an exchange target among the refused targets
// (refresh targets have their own names).
func exchangeHoldKey(target string) string { return "exchange " + target }

// exchange makes one token exchange for the session key and caches the
// result; it runs on its own context, bounded by RefreshTimeout. read is
// the cached token the request saw: when an exchange that finished after
// that read has cached a fresh token meanwhile, that one is the answer
// (the request missed that exchange's flight by a moment) and no new
// exchange is made.
func (e *engine) exchange(ctx context.Context, key string, target idp.Target, subject AccessToken, read exchanged) outcome {
	if c, ok := e.exchanges.get(key, target.Key()); ok && c.value != read.value && classify(c.expiry, e.rs.now(), e.ahead) == tokenFresh {
		return outcome{tok: AccessToken{Value: c.value, Expiry: c.expiry, Refreshed: true, DPoP: subject.DPoP}, shared: true}
	}
	ctx, cancel := context.WithTimeout(ctx, e.refreshTimeout)
	defer cancel()
	start := e.rs.now()
	tok, err := e.exchanger.ExchangeToken(ctx, idp.ExchangeRequest{SubjectToken: subject.Value, Target: target, DPoP: subject.DPoP})
	if err == nil && (tok == nil || tok.AccessToken.IsZero()) {
		err = errNoAccessToken
	}
	cached, _ := e.exchanges.get(key, target.Key())
	if err != nil {
		return e.exchangeFailed(ctx, target, cached, subject.DPoP, err)
	}
	e.rs.met.grants.WithLabelValues(grantTokenExchange, grantSuccess).Inc()
	c := exchanged{value: tok.AccessToken, expiry: tok.Expiry, obtained: start}
	e.exchanges.set(key, target.Key(), c)
	return outcome{tok: AccessToken{Value: c.value, Expiry: c.expiry, Refreshed: true, DPoP: subject.DPoP}}
}

// exchangeFailed hands out the still-valid cached token with a transient
// failure, and refuses the target for FailureBackoff when the provider
// refused the exchange itself.
func (e *engine) exchangeFailed(ctx context.Context, target idp.Target, cached exchanged, key *idp.DPoPKey, cause error) outcome {
	var te *idp.TokenError
	if errors.As(cause, &te) && te.Temporary() {
		e.rs.met.grants.WithLabelValues(grantTokenExchange, grantFailed).Inc()
		err := &UnavailableError{RetryAfter: max(e.backoff, te.RetryAfter), Err: cause}
		if classify(cached.expiry, e.rs.now(), e.ahead) != tokenExpired {
			return outcome{tok: AccessToken{Value: cached.value, Expiry: cached.expiry, DPoP: key}, err: err, fallback: true}
		}
		return outcome{err: err}
	}
	e.rs.met.grants.WithLabelValues(grantTokenExchange, grantRefused).Inc()
	e.refused.hold(exchangeHoldKey(target.Key()), e.rs.now().Add(e.backoff))
	e.rs.log.LogAttrs(ctx, slog.LevelWarn, "the provider refused a token exchange: check the route's resource and scopes, and that the client may exchange tokens",
		slog.String("target", target.String()), slog.Any("error", cause))
	return outcome{err: fmt.Errorf("session: token exchange for %s: %w: %w", target, ErrTokenRefused, cause)}
}

// maxExchangeSessions bounds the sessions whose exchanged tokens are kept.
const maxExchangeSessions = 10000

// exchangeCache keeps exchanged tokens per session key and target. Its
// zero value is empty and ready; it is safe for concurrent use.
type exchangeCache struct {
	mu sync.Mutex // guards m
	m  map[string]map[string]exchanged
}

func (c *exchangeCache) get(key, target string) (exchanged, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	x, ok := c.m[key][target]
	return x, ok
}

// set keeps x, dropping other sessions' tokens when maxExchangeSessions
// are kept.
func (c *exchangeCache) set(key, target string, x exchanged) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]map[string]exchanged)
	}
	if c.m[key] == nil {
		for old := range c.m {
			if len(c.m) < maxExchangeSessions {
				break
			}
			delete(c.m, old)
		}
		c.m[key] = make(map[string]exchanged)
	}
	c.m[key][target] = x
}

// forget drops the tokens of an ended session.
func (c *exchangeCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}
