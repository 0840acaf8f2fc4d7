package session

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenrelay/tokenrelay/internal/idptest"
	"github.com/tokenrelay/tokenrelay/secret"
)

// TestAdminListAndEnd pins the admin view: two replicas sharing a store
// list a subject's sessions (creation, last use from the sliding ttl,
// expiry, user agent), end one of them by its ID — returning its record
// for revocation, and leaving the others — and then all of them; another
// subject's sessions are untouched, and every entry of an ended session is
// gone from the store.
func TestAdminListAndEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := NewMemoryStore(time.Now)
		escrow := func(o *ManagerOptions) { o.Admin, o.Escrow = true, true }
		r1 := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), escrow)
		r2 := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), escrow)
		create := func(m *Manager, sub, ua, rt string) Ticket {
			rec := testRecord()
			rec.Subject, rec.UserAgent, rec.RefreshToken = sub, ua, secret.String(rt)
			tk, err := m.Create(ctx, rec, ViaLogin)
			if err != nil {
				t.Fatal(err)
			}
			return tk
		}
		start := time.Now()
		a1 := create(r1, "alice", "Chrome 131 on Linux", "rt-a1")
		time.Sleep(10 * time.Minute)
		a2 := create(r2, "alice", "Firefox 128 on macOS", "rt-a2")
		a3 := create(r1, "alice", "", "rt-a3")
		bob := create(r2, "bob", "Safari 17 on iOS", "rt-bob")
		time.Sleep(20 * time.Minute)
		if _, err := r1.Load(ctx, a1); err != nil { // slides a1's idle timeout
			t.Fatal(err)
		}
		time.Sleep(5 * time.Minute)

		list, err := r2.SubjectSessions(ctx, "alice")
		if err != nil || len(list) != 3 {
			t.Fatalf("SubjectSessions(alice) = %d sessions, %v; want 3", len(list), err)
		}
		byUA := map[string]SessionInfo{}
		for _, s := range list {
			byUA[s.UserAgent] = s
			if len(s.ID) != 16 {
				t.Errorf("session ID %q, want 16 characters", s.ID)
			}
		}
		first := byUA["Chrome 131 on Linux"]
		if want := start; !first.CreatedAt.Equal(want) {
			t.Errorf("a1 created %v, want %v", first.CreatedAt, want)
		}
		if want := start.Add(30 * time.Minute); !first.LastUsed.Equal(want) {
			t.Errorf("a1 last used %v, want %v", first.LastUsed, want)
		}
		if want := start.Add(30*time.Minute + time.Hour); !first.ExpiresAt.Equal(want) {
			t.Errorf("a1 expires %v, want %v", first.ExpiresAt, want)
		}
		if s := byUA["Firefox 128 on macOS"]; !s.LastUsed.Equal(start.Add(10 * time.Minute)) {
			t.Errorf("a2 last used %v, want its creation %v", s.LastUsed, start.Add(10*time.Minute))
		}

		// End a2 through the other replica, by its ID.
		ended, err := r1.EndSubjectSessions(ctx, "alice", byUA["Firefox 128 on macOS"].ID)
		if err != nil || len(ended) != 1 || !ended[0].Escrowed || ended[0].RefreshToken.Reveal() != "rt-a2" {
			t.Fatalf("EndSubjectSessions(alice, a2) = %v, %v; want a2's refresh token", ended, err)
		}
		for _, m := range []*Manager{r1, r2} {
			if _, err := m.Load(ctx, a2); !errors.Is(err, ErrNoSession) {
				t.Errorf("a2 after its end: Load = %v, want ErrNoSession", err)
			}
		}
		if _, err := r1.EndSubjectSessions(ctx, "alice", byUA["Firefox 128 on macOS"].ID); !errors.Is(err, ErrNoSession) {
			t.Errorf("ending a2 again = %v, want ErrNoSession", err)
		}
		if _, err := r1.EndSubjectSessions(ctx, "bob", first.ID); !errors.Is(err, ErrNoSession) {
			t.Errorf("ending alice's session as bob's = %v, want ErrNoSession", err)
		}

		ended, err = r2.EndSubjectSessions(ctx, "alice", "")
		if err != nil || len(ended) != 2 {
			t.Fatalf("EndSubjectSessions(alice, all) = %d records, %v; want 2", len(ended), err)
		}
		for _, tk := range []Ticket{a1, a3} {
			if _, err := r1.Load(ctx, tk); !errors.Is(err, ErrNoSession) {
				t.Errorf("alice's session after ending all: Load = %v, want ErrNoSession", err)
			}
		}
		if _, err := r1.Load(ctx, bob); err != nil {
			t.Errorf("bob's session after alice's ended: %v", err)
		}
		if got := testutil.ToFloat64(r1.met.ended.WithLabelValues(string(ReasonAdmin))) + testutil.ToFloat64(r2.met.ended.WithLabelValues(string(ReasonAdmin))); got != 3 {
			t.Errorf("ended{admin} = %v, want 3", got)
		}
		for _, tk := range []Ticket{a1, a2, a3} {
			for _, key := range []string{sessionKey(tk.ID), adminKeyFor(sessionKey(tk.ID))} {
				if _, err := store.Get(ctx, key); !errors.Is(err, ErrNotFound) {
					t.Errorf("%s of an ended session: Get = %v, want ErrNotFound", key, err)
				}
			}
		}
	})
}

// TestAdminKillSwitch pins the kill switch, which needs no escrow: every
// session created before it stops opening, on the replica that pulled it
// at once and on another within killCheckInterval (reading the store at
// most once per interval), while sessions created afterwards live.
func TestAdminKillSwitch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := newFaultyBackend(NewMemoryStore(time.Now))
		view := func(o *ManagerOptions) { o.Admin = true }
		r1 := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), view)
		r2 := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), view)
		old, err := r1.Create(ctx, testRecord(), ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r2.Load(ctx, old); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		if _, err := r1.EndAll(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := r1.Load(ctx, old); !errors.Is(err, ErrNoSession) {
			t.Errorf("replica 1 right after its kill: Load = %v, want ErrNoSession", err)
		}
		store.resetCounts()
		if _, err := r2.Load(ctx, old); err != nil {
			t.Errorf("replica 2 within the check interval still serves the old copy: Load = %v", err)
		}
		if got := store.count(opGet); got != 1 {
			t.Errorf("replica 2 read the store %d times for one load, want 1 (the kill entry is not read again)", got)
		}
		time.Sleep(killCheckInterval)
		if _, err := r2.Load(ctx, old); !errors.Is(err, ErrNoSession) {
			t.Errorf("replica 2 a check interval after the kill: Load = %v, want ErrNoSession", err)
		}
		time.Sleep(time.Millisecond)
		fresh, err := r2.Create(ctx, testRecord(), ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range []*Manager{r1, r2} {
			if _, err := m.Load(ctx, fresh); err != nil {
				t.Errorf("replica %d: a session created after the kill: Load = %v", i+1, err)
			}
		}
		if list, err := r1.SubjectSessions(ctx, "user-1"); err != nil || len(list) != 1 {
			t.Errorf("SubjectSessions after the kill = %d sessions, %v; want only the new one", len(list), err)
		}
	})
}

// TestAdminWithoutEscrow pins the admin view with escrow off (the
// default): the admin entry holds no session key, so the server secret
// and a store dump together still open no record; the subject's sessions
// are listed and ended all the same (the record deleted unopened, on
// every replica, with its sub index entry and admin entry), and each is
// reported not escrowed, with no refresh token to revoke.
func TestAdminWithoutEscrow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := NewMemoryStore(time.Now)
		view := func(o *ManagerOptions) { o.Admin = true }
		r1 := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), view)
		r2 := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), view)
		var alice []Ticket
		for range 2 {
			rec := testRecord()
			rec.Subject, rec.UserAgent, rec.RefreshToken = "alice", "Chrome 131 on Linux", "rt-alice"
			tk, err := r1.Create(ctx, rec, ViaLogin)
			if err != nil {
				t.Fatal(err)
			}
			alice = append(alice, tk)
		}
		key := sessionKey(alice[0].ID)
		raw, err := store.Get(ctx, adminKeyFor(key))
		if err != nil {
			t.Fatal(err)
		}
		entry, err := r2.seal.openAdmin(key, raw.Data)
		if err != nil || entry.escrowed || entry.key != ([16]byte{}) || entry.userAgent != "Chrome 131 on Linux" {
			t.Fatalf("admin entry opened with the server secret = %+v, %v; want no key, the user agent", entry, err)
		}

		list, err := r2.SubjectSessions(ctx, "alice")
		if err != nil || len(list) != 2 {
			t.Fatalf("SubjectSessions(alice) = %d sessions, %v; want 2", len(list), err)
		}
		ended, err := r2.EndSubjectSessions(ctx, "alice", shortID(key))
		if err != nil || len(ended) != 1 || ended[0].Escrowed || !ended[0].RefreshToken.IsZero() || ended[0].ID != shortID(key) {
			t.Fatalf("EndSubjectSessions(alice, first) = %+v, %v; want one, not escrowed, no refresh token", ended, err)
		}
		for i, m := range []*Manager{r1, r2} {
			if _, err := m.Load(ctx, alice[0]); !errors.Is(err, ErrNoSession) {
				t.Errorf("replica %d: the ended session: Load = %v, want ErrNoSession", i+1, err)
			}
			if _, err := m.Load(ctx, alice[1]); err != nil {
				t.Errorf("replica %d: the other session: Load = %v", i+1, err)
			}
		}
		if _, err := store.Get(ctx, adminKeyFor(key)); !errors.Is(err, ErrNotFound) {
			t.Errorf("the ended session's admin entry: Get = %v, want ErrNotFound", err)
		}
		members, err := store.IndexMembers(ctx, subIndexKey(r1.issuer, "alice"))
		if err != nil || len(members) != 1 || members[0] != sessionKey(alice[1].ID) {
			t.Errorf("alice's sub index = %q, %v; want only the other session", members, err)
		}
		if got := testutil.ToFloat64(r2.met.ended.WithLabelValues(string(ReasonAdmin))); got != 1 {
			t.Errorf("ended{admin} = %v, want 1", got)
		}
	})
}

// TestAdminDisabled pins that a Manager without the admin view keeps no
// admin entries, reads no kill switch, and refuses the admin calls.
func TestAdminDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := newFaultyBackend(NewMemoryStore(time.Now))
		m := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), nil)
		tk, err := m.Create(ctx, testRecord(), ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		if got := store.count(opCreate); got != 1 {
			t.Errorf("Create wrote %d entries without escrow, want 1 (the record)", got)
		}
		store.resetCounts()
		if _, err := m.Load(ctx, tk); err != nil {
			t.Fatal(err)
		}
		if got := store.count(opGet); got != 1 {
			t.Errorf("Load read %d entries without escrow, want 1", got)
		}
		if _, err := m.SubjectSessions(ctx, "user-1"); !errors.Is(err, ErrAdminDisabled) {
			t.Errorf("SubjectSessions = %v, want ErrAdminDisabled", err)
		}
		if _, err := m.EndSubjectSessions(ctx, "user-1", ""); !errors.Is(err, ErrAdminDisabled) {
			t.Errorf("EndSubjectSessions = %v, want ErrAdminDisabled", err)
		}
		if _, err := m.EndAll(ctx); !errors.Is(err, ErrAdminDisabled) {
			t.Errorf("EndAll = %v, want ErrAdminDisabled", err)
		}
	})
}
