package idptest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
)

// TestRefreshTokensAreSingleUse pins the double's contract: a live refresh
// token is exchanged once for the next pair; presenting it again is
// invalid_grant and counts as a reuse, unless within the reuse grace.
func TestRefreshTokensAreSingleUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := NewTokenEndpoint(nil, 5*time.Minute)
		at, rt, exp := p.Grant()
		if at != "at-1" || rt != "rt-1" || !exp.Equal(time.Now().Add(5*time.Minute)) {
			t.Fatalf("Grant = %s, %s, %v; want at-1, rt-1, now+5m", at.Reveal(), rt.Reveal(), exp)
		}
		tok, err := p.Refresh(ctx, rt)
		if err != nil || tok.AccessToken != "at-2" || tok.RefreshToken != "rt-2" {
			t.Fatalf("first Refresh = %+v, %v; want at-2/rt-2", tok, err)
		}
		if _, err := p.Refresh(ctx, rt); !errors.Is(err, idp.ErrInvalidGrant) {
			t.Errorf("second Refresh with rt-1 = %v, want invalid_grant", err)
		}
		if calls, reused := p.Stats(); calls != 2 || reused != 1 {
			t.Errorf("Stats = %d calls, %d reused; want 2, 1", calls, reused)
		}

		p.SetGrace(time.Minute)
		if _, err := p.Refresh(ctx, "rt-2"); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Refresh(ctx, "rt-2"); err != nil {
			t.Errorf("rt-2 again within the grace: %v, want new tokens", err)
		}
		time.Sleep(time.Minute)
		if _, err := p.Refresh(ctx, "rt-2"); !errors.Is(err, idp.ErrInvalidGrant) {
			t.Errorf("rt-2 again after the grace: %v, want invalid_grant", err)
		}
		if calls, reused := p.Stats(); calls != 5 || reused != 2 || p.Graced() != 1 {
			t.Errorf("Stats = %d calls, %d reused, %d graced; want 5, 2, 1", calls, reused, p.Graced())
		}
		want := []secret.String{"rt-1", "rt-1", "rt-2", "rt-2", "rt-2"}
		if got := p.Presented(); !slices.Equal(got, want) {
			t.Errorf("Presented = %v, want %v", got, want)
		}
	})
}

// TestHooksAndRevocation: a before hook answers without spending the
// token; RevokeAll kills every live token; a latency longer than the
// caller's patience ends with the caller's context, spending nothing.
func TestHooksAndRevocation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := NewTokenEndpoint(nil, time.Minute)
		_, rt, _ := p.Grant()
		hookErr := &idp.TokenError{Status: 503}
		p.SetBefore(func(context.Context, secret.String) (*idp.Token, error) { return nil, hookErr })
		if _, err := p.Refresh(ctx, rt); !errors.Is(err, hookErr) {
			t.Errorf("Refresh with the hook = %v, want the hook's error", err)
		}
		p.SetBefore(nil)

		p.SetLatency(time.Second)
		short, cancel := context.WithTimeout(ctx, time.Millisecond)
		defer cancel()
		if _, err := p.Refresh(short, rt); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Refresh past the caller's deadline = %v, want DeadlineExceeded", err)
		}
		if _, err := p.Refresh(ctx, rt); err != nil {
			t.Errorf("Refresh after a hook and a timeout = %v; want rt-1 still live", err)
		}
		p.RevokeAll()
		if _, err := p.Refresh(ctx, "rt-2"); !errors.Is(err, idp.ErrInvalidGrant) {
			t.Errorf("Refresh after RevokeAll = %v, want invalid_grant", err)
		}
	})
}
