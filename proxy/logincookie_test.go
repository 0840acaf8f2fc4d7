package proxy

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// loginState starts a login from f's browser and returns its state.
func loginState(t *testing.T, f *authFixture, returnTo string) string {
	t.Helper()
	w := f.serve(httptest.NewRequest("GET", "/.auth/login?return_to="+url.QueryEscape(returnTo), nil))
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil || w.Code != http.StatusFound || loc.Query().Get("state") == "" {
		t.Fatalf("login: %d to %q (%v)", w.Code, w.Header().Get("Location"), err)
	}
	return loc.Query().Get("state")
}

// TestLoginCostsTheStoreNothing: logins that never come back from the
// provider write nothing to the store, however many there are; only a
// completed login writes (its session, its index entries, one claim).
func TestLoginCostsTheStoreNothing(t *testing.T) {
	atAuthTestNow(t, func(t *testing.T) {
		f := newManagerFixture(t)
		for i := range 1000 {
			w := f.serveFromOtherBrowser(httptest.NewRequest("GET", "/.auth/login?return_to=/", nil))
			if w.Code != http.StatusFound {
				t.Fatalf("login %d: %d", i, w.Code)
			}
		}
		if n := f.store.Len(); n != 0 {
			t.Fatalf("1000 abandoned logins left %d store items, want 0", n)
		}
		state := loginState(t, f, "/")
		if w := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, state), nil)); w.Code != http.StatusFound {
			t.Fatalf("callback: %d %s", w.Code, w.Body)
		}
		// Session, sid index, sub index, used-state claim.
		if n := f.store.Len(); n != 4 {
			t.Errorf("a completed login left %d store items, want 4", n)
		}
	})
}

// TestPendingLoginsBounded: one browser may have maxPendingLogins logins in
// flight; starting more drops the oldest (whose callback then fails closed),
// and the newest ones still complete.
func TestPendingLoginsBounded(t *testing.T) {
	atAuthTestNow(t, func(t *testing.T) {
		f := newManagerFixture(t)
		var states []string
		for i := range maxPendingLogins + 3 {
			states = append(states, loginState(t, f, "/tab/"+string(rune('a'+i))))
			time.Sleep(time.Second)
		}
		if got := len(f.jar); got != maxPendingLogins {
			t.Fatalf("the browser holds %d binding cookies, want %d", got, maxPendingLogins)
		}
		for i, st := range states {
			_, held := f.jar[loginCookieName(st)]
			if want := i >= 3; held != want {
				t.Errorf("login %d: binding cookie held = %v, want %v", i, held, want)
			}
		}
		for i, st := range states {
			w := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, st), nil))
			switch {
			case i < 3 && w.Code != http.StatusBadRequest:
				t.Errorf("callback of dropped login %d: %d, want 400", i, w.Code)
			case i >= 3 && (w.Code != http.StatusFound || w.Header().Get("Location") != "/tab/"+string(rune('a'+i))):
				t.Errorf("callback of login %d: %d to %q, want 302 to its tab", i, w.Code, w.Header().Get("Location"))
			}
		}
	})
}

// TestPendingLoginsByteBudget: logins with the longest return_to the proxy
// accepts still keep the browser's binding cookies under
// pendingLoginBudget bytes, and the newest login completes.
func TestPendingLoginsByteBudget(t *testing.T) {
	atAuthTestNow(t, func(t *testing.T) {
		f := newManagerFixture(t)
		long := "/" + strings.Repeat("p", maxReturnTo-1)
		var last string
		for range 4 {
			last = loginState(t, f, long)
			time.Sleep(time.Second)
			size := 0
			for _, c := range f.jar {
				size += len(c.Name) + len(c.Value)
			}
			if size > pendingLoginBudget {
				t.Fatalf("binding cookies hold %d bytes, want at most %d", size, pendingLoginBudget)
			}
		}
		w := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, last), nil))
		if w.Code != http.StatusFound || w.Header().Get("Location") != long {
			t.Errorf("callback of the newest login: %d, want 302 to its return_to", w.Code)
		}
	})
}

// TestLoginClearsDeadBindings: binding cookies that no longer open (expired
// by their sealed time, or garbage) are cleared by the next login.
func TestLoginClearsDeadBindings(t *testing.T) {
	atAuthTestNow(t, func(t *testing.T) {
		f := newManagerFixture(t)
		old := loginState(t, f, "/")
		time.Sleep(10 * time.Minute)
		f.jar["__Host-tokenrelay-login-AAAAAAAAAAAAAAAA"] = &http.Cookie{Name: "__Host-tokenrelay-login-AAAAAAAAAAAAAAAA", Value: "garbage"}
		fresh := loginState(t, f, "/")
		if len(f.jar) != 1 || f.jar[loginCookieName(fresh)] == nil {
			t.Errorf("binding cookies after the next login: %v, want only %s (the expired %s and the garbage one cleared)", f.jar, loginCookieName(fresh), loginCookieName(old))
		}
	})
}

// TestCallbackBindingFailsClosed: a binding cookie that was altered, moved
// to another login's name, or outlived the login state TTL (kept past its
// Max-Age) gives 400 invalid_state, calls no token endpoint, and is cleared.
func TestCallbackBindingFailsClosed(t *testing.T) {
	tests := []struct {
		name  string
		alter func(f *authFixture, state, other string)
	}{
		{"value altered", func(f *authFixture, state, _ string) {
			c := f.jar[loginCookieName(state)]
			b := []byte(c.Value)
			if i := len(b) / 2; b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			c.Value = string(b)
		}},
		{"value truncated", func(f *authFixture, state, _ string) {
			c := f.jar[loginCookieName(state)]
			c.Value = c.Value[:len(c.Value)-4]
		}},
		{"another login's value", func(f *authFixture, state, other string) {
			f.jar[loginCookieName(state)].Value = f.jar[loginCookieName(other)].Value
		}},
		{"older than the login state TTL", func(f *authFixture, _, _ string) {
			time.Sleep(10 * time.Minute)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			atAuthTestNow(t, func(t *testing.T) {
				f := newManagerFixture(t)
				other := loginState(t, f, "/other")
				state := loginState(t, f, "/mine")
				tt.alter(f, state, other)
				w := f.serve(httptest.NewRequest("GET", authCallbackURL(authTestCode, state), nil))
				if e := decodeAuthError(t, w); w.Code != http.StatusBadRequest || e.Error != "invalid_state" {
					t.Fatalf("callback: %d %q, want 400 invalid_state", w.Code, e.Error)
				}
				if len(f.p.exchanges) != 0 {
					t.Errorf("the code was exchanged %d times, want 0", len(f.p.exchanges))
				}
				if _, held := f.jar[loginCookieName(state)]; held {
					t.Errorf("the binding cookie was not cleared")
				}
				if sessionCookieSet(w) {
					t.Errorf("a session cookie was set")
				}
			})
		})
	}
}

// TestConcurrentCallbacksOneWins: the same callback (state, code and binding
// cookie) sent many times at once creates exactly one session; the others
// get 400 invalid_state.
func TestConcurrentCallbacksOneWins(t *testing.T) {
	atAuthTestNow(t, func(t *testing.T) {
		f := newManagerFixture(t)
		state := loginState(t, f, "/")
		binding := *f.jar[loginCookieName(state)]
		const n = 20
		codes := make(chan int, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				r := httptest.NewRequest("GET", authCallbackURL(authTestCode, state), nil)
				r.AddCookie(&binding)
				codes <- f.serveFromOtherBrowser(r).Code
			})
		}
		wg.Wait()
		close(codes)
		got := map[int]int{}
		for c := range codes {
			got[c]++
		}
		if got[http.StatusFound] != 1 || got[http.StatusBadRequest] != n-1 {
			t.Errorf("answers %v, want one 302 and %d 400", got, n-1)
		}
		// Session, sid index, sub index, one claim.
		if items := f.store.Len(); items != 4 {
			t.Errorf("%d store items, want 4 (one session)", items)
		}
	})
}
