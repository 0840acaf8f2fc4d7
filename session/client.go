package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
)

// clientState remembers whether the provider refuses this replica's client
// (invalid_client, unauthorized_client and the like: a wrong client secret,
// a disabled client, a wrong token endpoint). That is a fault of this
// replica's configuration, not of any session, so no session ends for it:
// requests keep their still-valid tokens or get ErrClientRejected, this
// replica tries the provider again at most once per FailureBackoff, and
// readiness fails until the provider accepts the client again, which a
// successful refresh or a readiness probe shows.
//
// A probe is a refresh grant with a random token that was never issued:
// the provider answers invalid_grant once it accepts the client again, and
// nothing is spent. Probes run only from readiness checks, only while the
// client is refused, at most once per FailureBackoff.
type clientState struct {
	mu       sync.Mutex
	since    time.Time // when the refusals began; zero while accepted
	retryAt  time.Time // before it, refreshes here fail fast
	probedAt time.Time // the last readiness probe
}

// errClientRefused is the readiness error while the provider refuses the
// client.
var errClientRefused = fmt.Errorf("session: readiness: %w", ErrClientRejected)

// clientRejected records that the provider refused the client at now.
func (e *engine) clientRejected(ctx context.Context, now time.Time, cause error) {
	e.client.mu.Lock()
	first := e.client.since.IsZero()
	if first {
		e.client.since = now
	}
	e.client.retryAt = now.Add(e.backoff)
	e.client.mu.Unlock()
	e.rs.met.clientRejected.Set(1)
	e.rs.log.LogAttrs(ctx, slog.LevelError,
		"the identity provider rejects tokenrelay's client: check provider.client_id, the client secret, provider.auth_method and the token endpoint; sessions are kept, and this replica reports not ready until the provider accepts the client",
		slog.Bool("first", first), slog.Any("error", cause))
}

// clientAccepted records that the provider accepted the client.
func (e *engine) clientAccepted(ctx context.Context) {
	e.client.mu.Lock()
	was := e.client.since
	e.client.since, e.client.retryAt, e.client.probedAt = time.Time{}, time.Time{}, time.Time{}
	e.client.mu.Unlock()
	if !was.IsZero() {
		e.rs.met.clientRejected.Set(0)
		e.rs.log.LogAttrs(ctx, slog.LevelInfo, "the identity provider accepts tokenrelay's client again",
			slog.Duration("refused_for", e.rs.now().Sub(was)))
	}
}

// clientHold reports until when refreshes on this replica fail fast because
// the provider refuses the client.
func (e *engine) clientHold(now time.Time) (time.Time, bool) {
	e.client.mu.Lock()
	defer e.client.mu.Unlock()
	if e.client.since.IsZero() || !now.Before(e.client.retryAt) {
		return time.Time{}, false
	}
	return e.client.retryAt, true
}

// checkClient is the readiness check of the client: nil while the provider
// accepts it; otherwise it probes (at most once per FailureBackoff) and
// fails until a probe or a refresh shows the client accepted.
func (e *engine) checkClient(ctx context.Context) error {
	now := e.rs.now()
	e.client.mu.Lock()
	refused := !e.client.since.IsZero()
	probe := refused && !now.Before(e.client.probedAt.Add(e.backoff))
	if probe {
		e.client.probedAt = now
	}
	e.client.mu.Unlock()
	if !refused {
		return nil
	}
	if !probe {
		return errClientRefused
	}
	token, err := probeToken()
	if err != nil {
		return err
	}
	_, err = e.refresher.Refresh(ctx, token)
	switch {
	case err == nil, errors.Is(err, idp.ErrInvalidGrant):
		e.clientAccepted(ctx)
		return nil
	case errors.Is(err, idp.ErrClientRejected):
		e.clientRejected(ctx, now, err)
	}
	return errClientRefused
}

// probeToken is a refresh token no provider ever issued.
func probeToken() (secret.String, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session: probe token: %w", err)
	}
	return secret.String("tokenrelay-readiness-probe-" + hex.EncodeToString(b[:])), nil
}
