package session

import (
	"reflect"
	"testing/synctest"

	"github.com/tokenrelay/tokenrelay/internal/idptest"

	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testRecord is a session record whose access token expires 10 minutes
// from now.
func testRecord() Record {
	return Record{
		AccessToken: "at-0", RefreshToken: "rt-0", IDToken: "id-0",
		AccessExpiry: time.Now().Add(10 * time.Minute),
		Issuer:       "https://issuer.example", Subject: "user-1", SID: "sid-1",
		Claims: map[string]any{"name": "Ada"},
	}
}

func TestNewManagerValidates(t *testing.T) {
	store := NewMemoryStore(nil)
	idp := idptest.NewTokenEndpoint(time.Now, time.Minute)
	tests := []struct {
		name string
		edit func(*ManagerOptions)
		want string
	}{
		{"no backend", func(o *ManagerOptions) { o.Backend = nil }, "no backend"},
		{"no refresher", func(o *ManagerOptions) { o.Refresher = nil }, "no refresher"},
		{"short secret", func(o *ManagerOptions) { o.Secret = make([]byte, 31) }, "need at least 32"},
		{"short previous secret", func(o *ManagerOptions) { o.PreviousSecrets = [][]byte{make([]byte, 8)} }, "need at least 32"},
		{"lock ttl not above refresh timeout", func(o *ManagerOptions) { o.LockTTL = o.Timeout }, "timeout: must be below refresh.lock_ttl (10s)"},
		{"negative duration", func(o *ManagerOptions) { o.IdleTimeout = -time.Second }, "idle_timeout: must be a positive duration"},
		{"negative reuse grace", func(o *ManagerOptions) { o.ReuseGrace = -time.Second }, "reuse_grace: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := ManagerOptions{Backend: store, Secret: testSecret, Refresher: idp, RefreshOptions: RefreshOptions{Timeout: 10 * time.Second}}
			tt.edit(&opts)
			_, err := NewManager(opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewManager error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	m, err := NewManager(ManagerOptions{Backend: store, Secret: testSecret, Refresher: idp, RefreshOptions: RefreshOptions{Timeout: 3 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.engine.lockTTL, 9*time.Second; got != want {
		t.Errorf("default LockTTL = %v, want 3 × RefreshTimeout = %v", got, want)
	}
	if got, want := m.engine.minForced, 30*time.Second; got != want {
		t.Errorf("default MinRefreshInterval = %v, want %v", got, want)
	}
}

func TestCreateLoadEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := NewMemoryStore(time.Now)
		reg := prometheus.NewRegistry()
		m := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), func(o *ManagerOptions) { o.Registerer = reg })

		rec := testRecord()
		rec.CreatedAt = time.Now().Add(-100 * time.Hour) // ignored: a session starts now
		tk, err := m.Create(ctx, rec, ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		// The store holds the record under a hash of the id, sealed.
		e, err := store.Get(ctx, sessionKey(tk.ID))
		if err != nil {
			t.Fatalf("store.Get(sessionKey) = %v", err)
		}
		if got, want := e.TTL, time.Hour; got != want {
			t.Errorf("new entry TTL = %v, want the idle timeout %v", got, want)
		}
		for _, clear := range []string{"at-0", "rt-0", "id-0", "user-1", "Ada"} {
			if strings.Contains(string(e.Data), clear) {
				t.Errorf("stored data shows %q", clear)
			}
		}

		s, err := m.Load(ctx, tk)
		if err != nil {
			t.Fatal(err)
		}
		want := rec
		want.CreatedAt = time.Now()
		equalRecords(t, &s.Record, &want)
		if got, want := s.Expires, time.Now().Add(time.Hour); !got.Equal(want) {
			t.Errorf("Expires = %v, want %v", got, want)
		}

		// A ticket with the right id but another key owns nothing.
		forged := tk
		forged.Key[3] ^= 1
		if _, err := m.Load(ctx, forged); !errors.Is(err, ErrNoSession) {
			t.Errorf("Load(forged key) = %v, want ErrNoSession", err)
		}
		if _, err := m.End(ctx, forged, ReasonLogout); !errors.Is(err, ErrNoSession) {
			t.Errorf("End(forged key) = %v, want ErrNoSession", err)
		}

		ended, err := m.End(ctx, tk, ReasonLogout)
		if err != nil {
			t.Fatal(err)
		}
		equalRecords(t, ended, &want)
		if _, err := m.Load(ctx, tk); !errors.Is(err, ErrNoSession) {
			t.Errorf("Load after End = %v, want ErrNoSession", err)
		}
		if _, err := m.End(ctx, tk, ReasonLogout); !errors.Is(err, ErrNoSession) {
			t.Errorf("second End = %v, want ErrNoSession", err)
		}
		for _, ix := range []string{sidIndexKey(m.issuer, "sid-1"), subIndexKey(m.issuer, "user-1")} {
			if members, _ := store.IndexMembers(ctx, ix); len(members) != 0 {
				t.Errorf("index %s after End = %q, want empty", ix, members)
			}
		}
		for _, c := range []struct {
			name  string
			value float64
			got   prometheus.Collector
		}{
			{"created login", 1, m.met.created.WithLabelValues(string(ViaLogin))},
			{"created capture", 0, m.met.created.WithLabelValues(string(ViaCapture))},
			{"ended logout", 1, m.met.ended.WithLabelValues(string(ReasonLogout))},
		} {
			if got := testutil.ToFloat64(c.got); got != c.value {
				t.Errorf("%s = %v, want %v", c.name, got, c.value)
			}
		}
	})
}

// TestReplaceEndsEveryOldSession: a login ends the session of every ticket
// the browser sent (tickets without a session are skipped), counts each as
// replaced, and starts the new session under a fresh ticket. A session the
// store fails to end does not stop the login.
func TestReplaceEndsEveryOldSession(t *testing.T) {
	ctx := context.Background()
	store := newFaultyBackend(NewMemoryStore(nil))
	m := newTestManager(t, store, nil, idptest.NewTokenEndpoint(time.Now, time.Minute), nil)
	rec := Record{AccessToken: "at-0", AccessExpiry: time.Now().Add(time.Hour), Subject: "user-1", SID: "sid-1"}
	var old []Ticket
	for range 2 {
		tk, err := m.Create(ctx, rec, ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, tk)
	}
	unknown, err := NewTicket()
	if err != nil {
		t.Fatal(err)
	}
	rec.AccessToken = "at-new"
	tk, err := m.Replace(ctx, append(old, unknown), rec, ViaCapture)
	if err != nil {
		t.Fatalf("Replace: %v", err)
	}
	for i, o := range old {
		if _, err := m.Load(ctx, o); !errors.Is(err, ErrNoSession) {
			t.Errorf("old session %d after Replace: %v, want ErrNoSession", i, err)
		}
		if o == tk {
			t.Errorf("the new session reuses old ticket %d", i)
		}
	}
	if s, err := m.Load(ctx, tk); err != nil || s.AccessToken != "at-new" {
		t.Errorf("new session = %v, %v; want at-new", s, err)
	}
	if members, _ := store.IndexMembers(ctx, sidIndexKey(m.issuer, "sid-1")); len(members) != 1 || members[0] != sessionKey(tk.ID) {
		t.Errorf("sid index = %q, want only the new session", members)
	}
	if got := testutil.ToFloat64(m.met.ended.WithLabelValues(string(ReasonReplaced))); got != 2 {
		t.Errorf("ended{replaced} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.met.created.WithLabelValues(string(ViaCapture))); got != 1 {
		t.Errorf("created{capture} = %v, want 1", got)
	}

	// The store cannot delete: the old session stays (it expires on its
	// own), the login still gets its session.
	store.setFail(opDelete, errors.New("delete refused"))
	again, err := m.Replace(ctx, []Ticket{tk}, rec, ViaLogin)
	if err != nil {
		t.Fatalf("Replace with a failing delete: %v", err)
	}
	if _, err := m.Load(ctx, again); err != nil {
		t.Errorf("new session after a failing delete: %v", err)
	}
}

func TestIdleTimeoutSlidesAtMostOncePerMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := newFaultyBackend(NewMemoryStore(time.Now))
		m := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), nil)
		rec := testRecord()
		rec.AccessExpiry = time.Now().Add(24 * time.Hour)
		tk, err := m.Create(ctx, rec, ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		steps := []struct {
			advance   time.Duration
			wantTouch int
			wantTTL   time.Duration // entry TTL after the call
		}{
			{30 * time.Second, 0, time.Hour - 30*time.Second},
			{30 * time.Second, 0, time.Hour - time.Minute}, // exactly 1m lost: not yet
			{time.Second, 1, time.Hour},
			{59 * time.Second, 0, time.Hour - 59*time.Second},
			{59 * time.Minute, 1, time.Hour},
		}
		for i, st := range steps {
			time.Sleep(st.advance)
			store.resetCounts()
			if _, err := m.AccessToken(ctx, TokenRequest{Ticket: tk}); err != nil {
				t.Fatalf("step %d: AccessToken: %v", i, err)
			}
			if got := store.count(opGet); got != 1 {
				t.Errorf("step %d: %d Gets, want 1", i, got)
			}
			if got := store.count(opTouch); got != st.wantTouch {
				t.Errorf("step %d: %d Touches, want %d", i, got, st.wantTouch)
			}
			e, _ := store.Backend.Get(ctx, sessionKey(tk.ID))
			if e.TTL != st.wantTTL {
				t.Errorf("step %d: TTL = %v, want %v", i, e.TTL, st.wantTTL)
			}
		}
		time.Sleep(time.Hour)
		if _, err := m.Load(ctx, tk); !errors.Is(err, ErrNoSession) {
			t.Errorf("Load after an idle hour = %v, want ErrNoSession", err)
		}
	})
}

func TestAbsoluteLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := NewMemoryStore(time.Now)
		m := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), func(o *ManagerOptions) {
			o.IdleTimeout = time.Hour
			o.MaxLifetime = 150 * time.Minute
		})
		rec := testRecord()
		rec.AccessExpiry = time.Now().Add(24 * time.Hour)
		created := time.Now()
		tk, err := m.Create(ctx, rec, ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		// Used every 50 minutes, the idle timeout never ends it, but the ttl is
		// cut at the absolute lifetime.
		for _, st := range []struct {
			at   time.Duration // since creation
			want time.Duration // Expires, since creation
		}{
			{50 * time.Minute, 110 * time.Minute},
			{100 * time.Minute, 150 * time.Minute},
			{140 * time.Minute, 150 * time.Minute},
		} {
			time.Sleep(created.Add(st.at).Sub(time.Now()))
			s, err := m.Load(ctx, tk)
			if err != nil {
				t.Fatalf("use at %v: %v", st.at, err)
			}
			if want := created.Add(st.want); !s.Expires.Equal(want) {
				t.Errorf("use at %v: Expires = %v, want %v", st.at, s.Expires, want)
			}
		}
		time.Sleep(10 * time.Minute)
		if _, err := m.Load(ctx, tk); !errors.Is(err, ErrNoSession) {
			t.Errorf("Load at the absolute end = %v, want ErrNoSession", err)
		}
	})
}

func TestAbsoluteLifetimeCheckedOnLoad(t *testing.T) {
	// A replica whose clock runs ahead of the store's sees the lifetime end
	// before the entry expires: it ends the session itself.
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := NewMemoryStore(time.Now)
		limits := func(o *ManagerOptions) {
			o.IdleTimeout = time.Hour
			o.MaxLifetime = time.Hour
		}
		m := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), limits)
		hourAhead := func() time.Time { return time.Now().Add(time.Hour) }
		ahead := newTestManager(t, store, hourAhead, idptest.NewTokenEndpoint(hourAhead, time.Minute), limits)
		tk, err := m.Create(ctx, testRecord(), ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ahead.AccessToken(ctx, TokenRequest{Ticket: tk}); !errors.Is(err, ErrSessionExpired) {
			t.Fatalf("AccessToken after the lifetime = %v, want ErrSessionExpired", err)
		}
		if _, err := store.Get(ctx, sessionKey(tk.ID)); !errors.Is(err, ErrNotFound) {
			t.Errorf("entry after the lifetime = %v, want deleted", err)
		}
		if got := testutil.ToFloat64(ahead.met.ended.WithLabelValues(string(ReasonLifetime))); got != 1 {
			t.Errorf("ended{lifetime} = %v, want 1", got)
		}
	})
}

func TestEndBySIDAndSubject(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := NewMemoryStore(time.Now)
		m := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), nil)
		create := func(sid, sub string) Ticket {
			rec := testRecord()
			rec.SID, rec.Subject = sid, sub
			tk, err := m.Create(ctx, rec, ViaLogin)
			if err != nil {
				t.Fatal(err)
			}
			return tk
		}
		a1, a2 := create("sid-a", "alice"), create("sid-a", "alice")
		a3 := create("sid-b", "alice")
		bob := create("sid-c", "bob")
		noSID := create("", "carol")

		check := func(step string, live map[Ticket]bool) {
			t.Helper()
			for tk, want := range live {
				_, err := m.Load(ctx, tk)
				if got := err == nil; got != want {
					t.Errorf("%s: session %v live = %v (%v), want %v", step, tk, got, err, want)
				}
			}
		}
		if n, err := m.EndBySID(ctx, "sid-a"); n != 2 || err != nil {
			t.Fatalf("EndBySID(sid-a) = %d, %v; want 2", n, err)
		}
		check("after EndBySID", map[Ticket]bool{a1: false, a2: false, a3: true, bob: true, noSID: true})
		// alice's index still lists a1 and a2; they are gone and not counted.
		if n, err := m.EndBySubject(ctx, "alice"); n != 1 || err != nil {
			t.Fatalf("EndBySubject(alice) = %d, %v; want 1", n, err)
		}
		check("after EndBySubject", map[Ticket]bool{a3: false, bob: true, noSID: true})
		for _, tc := range []struct {
			name string
			f    func() (int, error)
		}{
			{"repeat sid", func() (int, error) { return m.EndBySID(ctx, "sid-a") }},
			{"unknown sid", func() (int, error) { return m.EndBySID(ctx, "nope") }},
			{"empty sid", func() (int, error) { return m.EndBySID(ctx, "") }},
			{"empty sub", func() (int, error) { return m.EndBySubject(ctx, "") }},
		} {
			if n, err := tc.f(); n != 0 || err != nil {
				t.Errorf("%s = %d, %v; want 0, nil", tc.name, n, err)
			}
		}
		if n, err := m.EndBySubject(ctx, "carol"); n != 1 || err != nil {
			t.Errorf("EndBySubject(carol) = %d, %v; want 1", n, err)
		}
		check("end", map[Ticket]bool{bob: true, noSID: false})
		if got := testutil.ToFloat64(m.met.ended.WithLabelValues(string(ReasonBackchannel))); got != 4 {
			t.Errorf("ended{backchannel} = %v, want 4", got)
		}
	})
}

// TestLoginStates: a login state round-trips through its sealed cookie value
// without touching the store; it stops opening LoginStateTTL after the
// creation time sealed inside it; and ClaimLogin lets it through once, with
// a claim that lives only as long as the state could.
func TestLoginStates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := NewMemoryStore(time.Now)
		m := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), nil)
		st := LoginState{State: "st-1", Nonce: "n", Verifier: "v", ReturnTo: "/app"}
		value, err := m.SealLogin(st)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.SealLogin(LoginState{}); err == nil {
			t.Errorf("SealLogin(empty state) succeeded")
		}
		if n := store.Len(); n != 0 {
			t.Fatalf("sealing a login wrote %d store items, want 0", n)
		}
		got, err := m.OpenLogin(value)
		want := st
		want.CreatedAt = time.Now().UTC() // as sealed: no monotonic reading
		if err != nil || !reflect.DeepEqual(*got, want) {
			t.Fatalf("OpenLogin = %+v, %v; want %+v", got, err, want)
		}
		for name, v := range map[string]string{
			"empty":           "",
			"not base64url":   value[:20] + "+/" + value[22:],
			"padded":          value + "=",
			"truncated":       value[:len(value)-2],
			"another value":   "A" + value[1:],
			"oversized":       strings.Repeat("A", maxSealedLogin+4),
			"plain base64url": "c3QtMQ",
		} {
			if v == value {
				continue
			}
			if _, err := m.OpenLogin(v); !errors.Is(err, ErrUnknownState) {
				t.Errorf("OpenLogin(%s) = %v, want ErrUnknownState", name, err)
			}
		}

		// The first ClaimLogin wins; the claim expires with the state.
		time.Sleep(4 * time.Minute)
		if err := m.LoginUnused(ctx, got); err != nil {
			t.Fatalf("LoginUnused before the claim = %v, want nil", err)
		}
		if n := store.Len(); n != 0 {
			t.Fatalf("LoginUnused wrote %d store items, want 0", n)
		}
		if err := m.ClaimLogin(ctx, got); err != nil {
			t.Fatalf("ClaimLogin = %v", err)
		}
		if err := m.LoginUnused(ctx, got); !errors.Is(err, ErrUnknownState) {
			t.Errorf("LoginUnused after the claim = %v, want ErrUnknownState", err)
		}
		if err := m.ClaimLogin(ctx, got); !errors.Is(err, ErrUnknownState) {
			t.Errorf("second ClaimLogin = %v, want ErrUnknownState", err)
		}
		e, err := store.Get(ctx, usedStateKey("st-1"))
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("the claim is a session entry: %+v, %v", e, err)
		}
		time.Sleep(6*time.Minute - time.Nanosecond)
		if _, err := m.OpenLogin(value); err != nil {
			t.Errorf("OpenLogin just before LoginStateTTL = %v, want it to open", err)
		}
		time.Sleep(time.Nanosecond)
		if _, err := m.OpenLogin(value); !errors.Is(err, ErrUnknownState) {
			t.Errorf("OpenLogin at LoginStateTTL = %v, want ErrUnknownState", err)
		}
		if err := m.ClaimLogin(ctx, got); !errors.Is(err, ErrUnknownState) {
			t.Errorf("ClaimLogin of an expired state = %v, want ErrUnknownState", err)
		}
		if ok, err := store.Claim(ctx, usedStateKey("st-1"), time.Minute); !ok || err != nil {
			t.Errorf("the claim outlived the state: Claim = %v, %v; want true", ok, err)
		}
		// A state sealed long ago (a stale cookie) does not open.
		old, err := m.SealLogin(LoginState{State: "old", CreatedAt: time.Now().Add(-10 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.OpenLogin(old); !errors.Is(err, ErrUnknownState) {
			t.Errorf("OpenLogin(created 10m ago) = %v, want ErrUnknownState", err)
		}
	})
}

// TestLoginStateSecretRotation: a login started before a secret rotation
// still completes after it.
func TestLoginStateSecretRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := NewMemoryStore(time.Now)
		before := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), nil)
		value, err := before.SealLogin(LoginState{State: "st-1"})
		if err != nil {
			t.Fatal(err)
		}
		next := bytes.Repeat([]byte{7}, 32)
		after := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), func(o *ManagerOptions) {
			o.Secret, o.PreviousSecrets = next, [][]byte{testSecret}
		})
		if st, err := after.OpenLogin(value); err != nil || st.State != "st-1" {
			t.Errorf("OpenLogin after rotation = %+v, %v; want st-1", st, err)
		}
		dropped := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), func(o *ManagerOptions) {
			o.Secret = next
		})
		if _, err := dropped.OpenLogin(value); !errors.Is(err, ErrUnknownState) {
			t.Errorf("OpenLogin once the old secret is dropped = %v, want ErrUnknownState", err)
		}
	})
}

func TestStoreFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store := newFaultyBackend(NewMemoryStore(time.Now))
		m := newTestManager(t, store, time.Now, idptest.NewTokenEndpoint(time.Now, time.Minute), nil)
		tk, err := m.Create(ctx, testRecord(), ViaLogin)
		if err != nil {
			t.Fatal(err)
		}
		down := errors.New("connection refused")
		tests := []struct {
			op   string
			call func() error
		}{
			{opGet, func() error { _, err := m.Load(ctx, tk); return err }},
			{opGet, func() error { _, err := m.AccessToken(ctx, TokenRequest{Ticket: tk}); return err }},
			{opGet, func() error { _, err := m.End(ctx, tk, ReasonLogout); return err }},
			{opIndexAdd, func() error { _, err := m.Create(ctx, testRecord(), ViaLogin); return err }},
			{opCreate, func() error { _, err := m.Create(ctx, Record{}, ViaLogin); return err }},
			{opDelete, func() error { _, err := m.End(ctx, tk, ReasonLogout); return err }},
			{opIndexList, func() error { _, err := m.EndBySID(ctx, "sid-1"); return err }},
			{opClaim, func() error { return m.ClaimLogin(ctx, &LoginState{State: "s", CreatedAt: time.Now()}) }},
			{opClaim, func() error { return m.LoginUnused(ctx, &LoginState{State: "s", CreatedAt: time.Now()}) }},
			{opPing, func() error { return m.Ready(ctx) }},
		}
		for _, tt := range tests {
			store.setFail(tt.op, down)
			before := testutil.ToFloat64(m.met.storeErrors.WithLabelValues(tt.op))
			err := tt.call()
			store.setFail(tt.op, nil)
			if !errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, down) {
				t.Errorf("%s failing: error = %v, want ErrStoreUnavailable wrapping the cause", tt.op, err)
			}
			if got := testutil.ToFloat64(m.met.storeErrors.WithLabelValues(tt.op)) - before; got != 1 {
				t.Errorf("%s failing: store_errors{op=%s} grew by %v, want 1", tt.op, tt.op, got)
			}
			// The session survives every store failure.
			if _, err := m.Load(ctx, tk); err != nil {
				t.Fatalf("%s failing: session lost: %v", tt.op, err)
			}
		}
		// A client that went away is not a store failure.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		store.setFail(opGet, context.Canceled)
		_, err = m.Load(cctx, tk)
		store.setFail(opGet, nil)
		if errors.Is(err, ErrStoreUnavailable) || !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Load = %v, want context.Canceled and not ErrStoreUnavailable", err)
		}
		// A failed Touch does not fail the request.
		time.Sleep(5 * time.Minute)
		store.setFail(opTouch, down)
		if _, err := m.Load(ctx, tk); err != nil {
			t.Errorf("Load with Touch failing = %v, want the session", err)
		}
		store.setFail(opTouch, nil)
		if got := testutil.ToFloat64(m.met.storeErrors.WithLabelValues(opTouch)); got != 1 {
			t.Errorf("store_errors{op=touch} = %v, want 1", got)
		}
	})
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	newTestManager(t, NewMemoryStore(nil), nil, idptest.NewTokenEndpoint(time.Now, time.Minute), func(o *ManagerOptions) { o.Registerer = reg })
	for name, want := range map[string]int{
		"tokenrelay_refresh_total":             6,
		"tokenrelay_provider_client_rejected":  1,
		"tokenrelay_refresh_duration_seconds":  1,
		"tokenrelay_refresh_shared_total":      1,
		"tokenrelay_refresh_lock_wait_seconds": 1,
		"tokenrelay_sessions_created_total":    2,
		"tokenrelay_sessions_ended_total":      8,
		"tokenrelay_store_errors_total":        12,
	} {
		if got, err := testutil.GatherAndCount(reg, name); err != nil || got != want {
			t.Errorf("series of %s = %d, %v; want %d pre-initialised", name, got, err, want)
		}
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) != 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
	// A second manager on the same registry is refused, not silently
	// merged.
	_, err = NewManager(ManagerOptions{Backend: NewMemoryStore(nil), Secret: testSecret, Refresher: idptest.NewTokenEndpoint(time.Now, time.Minute), Registerer: reg})
	if err == nil {
		t.Errorf("second NewManager on one registry succeeded")
	}
}
