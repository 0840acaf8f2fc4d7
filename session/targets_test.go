package session

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/idptest"
	"github.com/tokenrelay/tokenrelay/secret"
)

var (
	targetA = idp.NewTarget("https://a.example", nil)
	targetB = idp.NewTarget("https://b.example", []string{"b:read"})
)

// overlapWatch counts the token endpoint calls in progress and remembers
// the most at once.
type overlapWatch struct {
	mu      sync.Mutex
	now     int
	maxSeen int
}

func (o *overlapWatch) enter() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.now++
	o.maxSeen = max(o.maxSeen, o.now)
}

func (o *overlapWatch) leave() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.now--
}

// watchedEndpoint is an idptest.TokenEndpoint whose refreshes take a while
// and are watched for overlap.
type watchedEndpoint struct {
	*idptest.TokenEndpoint
	watch *overlapWatch
}

func (w watchedEndpoint) RefreshTarget(ctx context.Context, r idp.RefreshRequest) (*idp.Token, error) {
	w.watch.enter()
	defer w.watch.leave()
	return w.TokenEndpoint.RefreshTarget(ctx, r)
}

func (w watchedEndpoint) Refresh(ctx context.Context, rt secret.String) (*idp.Token, error) {
	return w.RefreshTarget(ctx, idp.RefreshRequest{RefreshToken: rt})
}

// TestTargetsShareOneRefreshToken: a session's login token and the tokens
// of two resources, all expired, asked for at once by 3 replicas × 40
// requests per target, over several cycles, against a provider whose
// refresh tokens work once: exactly one refresh per target per cycle,
// never two at the same time (each spends the refresh token the one before
// it saved), no refresh token presented twice, and every request gets the
// token of its own target.
func TestTargetsShareOneRefreshToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		p.SetLatency(200 * time.Millisecond) // long enough to overlap, were the flights not serialised
		w := watchedEndpoint{p, &overlapWatch{}}
		store := NewMemoryStore(time.Now)
		replicas := make([]*Manager, 3)
		for i := range replicas {
			replicas[i] = newTestManager(t, store, time.Now, w, nil)
		}
		tk := startSession(t, replicas[0], p)
		targets := []idp.Target{{}, targetA, targetB}

		const perTarget, cycles = 40, 3
		for cycle := 1; cycle <= cycles; cycle++ {
			time.Sleep(6 * time.Minute) // every token has expired
			start := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			seen := map[string]map[string]int{} // target key → token → count
			for _, m := range replicas {
				for _, target := range targets {
					for range perTarget {
						wg.Go(func() {
							<-start
							tok, err := m.AccessToken(context.Background(), TokenRequest{Ticket: tk, Target: target})
							if err != nil {
								t.Errorf("cycle %d, %s: %v", cycle, target, err)
								return
							}
							mu.Lock()
							defer mu.Unlock()
							if seen[target.Key()] == nil {
								seen[target.Key()] = map[string]int{}
							}
							seen[target.Key()][tok.Value.Reveal()]++
						})
					}
				}
			}
			close(start)
			wg.Wait()
			for _, target := range targets {
				got := seen[target.Key()]
				if len(got) != 1 {
					t.Fatalf("cycle %d, %s: tokens handed out %v, want one", cycle, target, got)
				}
				for tok := range got {
					if target.IsZero() && strings.Contains(tok, "@") || !target.IsZero() && !strings.HasSuffix(tok, "@"+target.Key()) {
						t.Errorf("cycle %d: %s was handed %q, another target's token", cycle, target, tok)
					}
				}
			}
			calls, reused := p.Stats()
			t.Logf("cycle %d: %d calls, %d reused", cycle, calls, reused)
			if calls != cycle*len(targets) || reused != 0 {
				t.Fatalf("cycle %d: token endpoint calls %d, reused refresh tokens %d; want %d, 0", cycle, calls, reused, cycle*len(targets))
			}
		}
		if w.watch.maxSeen != 1 {
			t.Errorf("at most %d refreshes of the session ran at once, want 1", w.watch.maxSeen)
		}
		presented := p.Presented()
		for i := 1; i < len(presented); i++ {
			if presented[i] != secret.String(fmt.Sprintf("rt-%d", i+1)) {
				t.Errorf("refresh %d presented %s, want rt-%d: the one the refresh before it returned", i+1, presented[i].Reveal(), i+1)
			}
		}
		rec, _ := stored(t, replicas[0], tk)
		if len(rec.Tokens) != 2 {
			t.Errorf("record holds %d target tokens, want 2", len(rec.Tokens))
		}
	})
}

// TestTargetTokenFirstUse: a route target's first request refreshes for it
// even though the login's own token is fresh, and never gets that token.
func TestTargetTokenFirstUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		m := newTestManager(t, NewMemoryStore(time.Now), time.Now, p, nil)
		tk := startSession(t, m, p)
		own, err := m.AccessToken(context.Background(), TokenRequest{Ticket: tk})
		if err != nil || own.Value != "at-1" {
			t.Fatalf("login token: %q, %v", own.Value.Reveal(), err)
		}
		a, err := m.AccessToken(context.Background(), TokenRequest{Ticket: tk, Target: targetA})
		if err != nil || a.Value.Reveal() != "at-2@"+targetA.Key() || !a.Refreshed {
			t.Fatalf("first request for %s: %q (refreshed %v), %v; want a token of its own", targetA, a.Value.Reveal(), a.Refreshed, err)
		}
		// The rotation left the login's token as it was.
		if own, _ := m.AccessToken(context.Background(), TokenRequest{Ticket: tk}); own.Value != "at-1" {
			t.Errorf("login token after a target's refresh = %q, want at-1", own.Value.Reveal())
		}
		if got := p.Targets(); len(got) != 1 || got[0] != targetA {
			t.Errorf("refresh targets = %v, want [%v]", got, targetA)
		}
	})
}

// TestTargetRefused: a provider that refuses a target's resource spends
// nothing and ends nothing: the request gets ErrTokenRefused, the session
// and its other tokens go on, and the target is asked for again only after
// the failure backoff.
func TestTargetRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		p.SetBefore(func(ctx context.Context, rt secret.String) (*idp.Token, error) {
			return nil, nil
		})
		refusing := targetRefuser{p, targetB}
		m := newTestManager(t, NewMemoryStore(time.Now), time.Now, refusing, nil)
		tk := startSession(t, m, p)
		for range 3 {
			_, err := m.AccessToken(context.Background(), TokenRequest{Ticket: tk, Target: targetB})
			if !errors.Is(err, ErrTokenRefused) {
				t.Fatalf("refused target: %v, want ErrTokenRefused", err)
			}
		}
		if calls, _ := p.Stats(); calls != 0 {
			t.Errorf("refresh calls that spent a token = %d, want 0", calls)
		}
		if refusing.count() != 1 {
			t.Errorf("the provider was asked %d times within the backoff, want 1", refusing.count())
		}
		rec, _ := stored(t, m, tk)
		if !rec.Attempt.IsZero() || rec.RefreshToken != "rt-1" {
			t.Errorf("record after the refusal: attempt %v, refresh token %s; want none, rt-1", rec.Attempt, rec.RefreshToken.Reveal())
		}
		if a, err := m.AccessToken(context.Background(), TokenRequest{Ticket: tk, Target: targetA}); err != nil || a.Value.Reveal() != "at-2@"+targetA.Key() {
			t.Errorf("another target after the refusal: %q, %v", a.Value.Reveal(), err)
		}
		time.Sleep(6 * time.Second) // the backoff is over
		_, _ = m.AccessToken(context.Background(), TokenRequest{Ticket: tk, Target: targetB})
		if refusing.count() != 2 {
			t.Errorf("after the backoff the provider was asked %d times, want 2", refusing.count())
		}
	})
}

// targetRefuser answers invalid_target for one target and passes the rest
// to the endpoint.
type targetRefuser struct {
	*idptest.TokenEndpoint
	refused idp.Target
}

var refusals sync.Map // *idptest.TokenEndpoint → *int

func (r targetRefuser) count() int {
	v, _ := refusals.LoadOrStore(r.TokenEndpoint, new(int))
	return *v.(*int)
}

func (r targetRefuser) RefreshTarget(ctx context.Context, req idp.RefreshRequest) (*idp.Token, error) {
	if req.Target == r.refused {
		v, _ := refusals.LoadOrStore(r.TokenEndpoint, new(int))
		*v.(*int)++
		return nil, &idp.TokenError{Code: "invalid_target", Status: http.StatusBadRequest, Sent: true}
	}
	return r.TokenEndpoint.RefreshTarget(ctx, req)
}

// TestDPoPSession: a session with a DPoP key refreshes every token with
// proofs of that key, and hands each out with the key.
func TestDPoPSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		m := newTestManager(t, NewMemoryStore(time.Now), time.Now, p, nil)
		key, err := idp.NewDPoPKey()
		if err != nil {
			t.Fatal(err)
		}
		at, rt, exp := p.Grant()
		tk, err := m.Create(context.Background(), Record{AccessToken: at, RefreshToken: rt, AccessExpiry: exp, DPoPKey: key.Bytes()}, ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(6 * time.Minute)
		for _, target := range []idp.Target{{}, targetA} {
			tok, err := m.AccessToken(context.Background(), TokenRequest{Ticket: tk, Target: target})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(tok.Value.Reveal(), "#"+key.Thumbprint()) || tok.DPoP == nil || tok.DPoP.Thumbprint() != key.Thumbprint() {
				t.Errorf("%s: token %q with key %v; want it bound to and handed out with the session's key", target, tok.Value.Reveal(), tok.DPoP)
			}
		}
	})
}

// TestClientTokensAcrossReplicas: tokenrelay's own token of a target,
// asked for by 3 replicas × 50 requests at once, is obtained once and
// shared through the store; it is renewed once ahead of its expiry (the
// stale token served meanwhile); each target has its own; with DPoP every
// replica binds it to the same key.
func TestClientTokensAcrossReplicas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		store := NewMemoryStore(time.Now)
		replicas := make([]*Manager, 3)
		for i := range replicas {
			replicas[i] = newTestManager(t, store, time.Now, p, func(o *ManagerOptions) {
				o.ClientGrant, o.ClientDPoP = p, true
			})
		}
		burst := func(target idp.Target) map[string]int {
			start := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			seen := map[string]int{}
			for _, m := range replicas {
				for range 50 {
					wg.Go(func() {
						<-start
						tok, err := m.ClientToken(context.Background(), target, "")
						if err != nil {
							t.Errorf("%s: %v", target, err)
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
			return seen
		}
		first := burst(targetA)
		if cc, _ := p.Grants(); cc != 1 || len(first) != 1 {
			t.Fatalf("first burst: %d grants, tokens %v; want 1 grant and one token", cc, first)
		}
		for tok := range first {
			if !strings.HasPrefix(tok, "ct-1@"+targetA.Key()+"#") {
				t.Errorf("client token %q, want ct-1 for %s, bound", tok, targetA)
			}
		}
		// Within refresh.ahead of expiry: the stale token is served, and
		// one renewal runs in the background.
		time.Sleep(4*time.Minute + 30*time.Second)
		stale := burst(targetA)
		// The replicas that lost the lock watch the store with backoff
		// (at most pollMax between looks) and serve the stale token
		// until they see the renewed one.
		time.Sleep(pollMax)
		synctest.Wait()
		if cc, _ := p.Grants(); cc != 2 {
			t.Fatalf("stale burst: %d grants, want 2 (one renewal)", cc)
		}
		for tok := range stale {
			if !strings.HasPrefix(tok, "ct-1@") && !strings.HasPrefix(tok, "ct-2@") {
				t.Errorf("stale burst: token %q, want the stale ct-1 or the renewed ct-2", tok)
			}
		}
		renewed := burst(targetA)
		for tok := range renewed {
			if !strings.HasPrefix(tok, "ct-2@") || len(renewed) != 1 {
				t.Errorf("after renewal: tokens %v, want only ct-2", renewed)
			}
		}
		if other := burst(targetB); len(other) != 1 {
			t.Errorf("another target: tokens %v, want one", other)
		}
		if cc, _ := p.Grants(); cc != 3 {
			t.Errorf("grants = %d, want 3", cc)
		}
		raw, err := store.Get(context.Background(), clientTokenKey(targetA.Key()))
		if err != nil || strings.Contains(string(raw.Data), "ct-2") {
			t.Errorf("stored client token: %v; it must be sealed (no token in clear)", err)
		}
	})
}

// TestExchangedTokens: a token exchange route's token is obtained once per
// session and target, with the login's own token as subject, cached until
// it is due, and exchanged again when the upstream rejects it (no more
// than once per min_interval).
func TestExchangedTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		m := newTestManager(t, NewMemoryStore(time.Now), time.Now, p, func(o *ManagerOptions) { o.Exchanger = p })
		tk := startSession(t, m, p)
		var wg sync.WaitGroup
		got := make([]AccessToken, 30)
		for i := range got {
			wg.Go(func() {
				var err error
				got[i], err = m.AccessToken(context.Background(), TokenRequest{Ticket: tk, Target: targetA, Exchange: true})
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		want := "xt-1(at-1)@" + targetA.Key()
		for i, tok := range got {
			if tok.Value.Reveal() != want {
				t.Fatalf("request %d: %q, want %q", i, tok.Value.Reveal(), want)
			}
		}
		if _, x := p.Grants(); x != 1 {
			t.Fatalf("exchanges = %d, want 1", x)
		}
		// Rejected within min_interval: no new exchange; the same token
		// comes back, so the upstream's 401 stands.
		if tok, _ := m.AccessToken(context.Background(), TokenRequest{Ticket: tk, Target: targetA, Exchange: true, Rejected: got[0].Value}); tok.Value.Reveal() != want {
			t.Errorf("rejected within min_interval: %q, want the same token (no new exchange)", tok.Value.Reveal())
		}
		if _, x := p.Grants(); x != 1 {
			t.Fatalf("exchanges after a rejection within min_interval = %d, want 1", x)
		}
		time.Sleep(31 * time.Second)
		tok, err := m.AccessToken(context.Background(), TokenRequest{Ticket: tk, Target: targetA, Exchange: true, Rejected: got[0].Value})
		if err != nil || tok.Value.Reveal() != "xt-2(at-1)@"+targetA.Key() {
			t.Errorf("after a rejection: %q, %v; want a new exchange", tok.Value.Reveal(), err)
		}
		// Once the login token expires, it is refreshed first and the
		// exchange uses the new one.
		time.Sleep(5 * time.Minute)
		tok, err = m.AccessToken(context.Background(), TokenRequest{Ticket: tk, Target: targetA, Exchange: true})
		if err != nil || tok.Value.Reveal() != "xt-3(at-2)@"+targetA.Key() {
			t.Errorf("after expiry: %q, %v; want an exchange of the refreshed login token", tok.Value.Reveal(), err)
		}
		if _, err := m.End(context.Background(), tk, ReasonLogout); err != nil {
			t.Fatal(err)
		}
		if _, ok := m.engine.exchanges.get(sessionKey(tk.ID), targetA.Key()); ok {
			t.Error("exchanged token kept after the session ended")
		}
	})
}

// TestRecordTargetsAndKey: a record's target tokens and DPoP key survive
// sealing; a target token that has expired is dropped at the next save.
func TestRecordTargetsAndKey(t *testing.T) {
	rec := &Record{
		AccessToken: "at", RefreshToken: "rt", AccessExpiry: testEpoch.Add(time.Minute), CreatedAt: testEpoch,
		RefreshedAt: testEpoch, DPoPKey: []byte("0123456789abcdef0123456789abcdef"),
		Tokens: []TargetToken{
			{Target: targetA.Key(), Value: "a.b.c", Expiry: testEpoch.Add(time.Hour), RefreshedAt: testEpoch},
			{Target: targetB.Key(), Value: "opaque token", Expiry: testEpoch.Add(-time.Second)},
		},
	}
	b, err := encodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Tokens) != fmt.Sprint(rec.Tokens) || string(got.DPoPKey) != string(rec.DPoPKey) {
		t.Errorf("decoded tokens %v key %q, want %v %q", got.Tokens, got.DPoPKey, rec.Tokens, rec.DPoPKey)
	}
	got.setHeld(targetA.Key(), "a2", testEpoch.Add(2*time.Hour), testEpoch)
	if len(got.Tokens) != 1 || got.Tokens[0].Value != "a2" || got.AccessToken != "at" {
		t.Errorf("after setHeld: %v, login token %q; want only the new token of A (B's had expired), the login's kept", got.Tokens, got.AccessToken.Reveal())
	}
	later := testEpoch.Add(30 * time.Minute) // the login's token has expired
	got.setHeld(targetA.Key(), "a3", testEpoch.Add(3*time.Hour), later)
	if got.AccessToken != "" || !got.AccessExpiry.Equal(rec.AccessExpiry) {
		t.Errorf("after the login's token expired: %q (expiry %v), want no token and its expiry kept", got.AccessToken.Reveal(), got.AccessExpiry)
	}
	for _, bad := range [][]byte{append(b, 4), append(b[:len(b):len(b)], 2, 1)} {
		if _, err := decodeRecord(bad); err == nil {
			t.Errorf("decodeRecord(% x…) succeeded, want malformed (unknown or repeated section)", bad[len(bad)-2:])
		}
	}
}
