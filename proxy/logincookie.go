package proxy

import (
	"cmp"
	"crypto/subtle"
	"net/http"
	"slices"
	"time"

	"github.com/tokenrelay/tokenrelay/session"
)

// The login-binding cookie holds a login's whole state, sealed by the
// session manager, so a login that never comes back from the provider costs
// the server nothing. One cookie per login keeps parallel tabs apart; these
// bounds keep a browser's Cookie header small however many logins it
// starts (a cross-site page can make a browser start logins at will).
const (
	// maxPendingLogins is how many logins one browser may have in flight;
	// starting another drops the oldest.
	maxPendingLogins = 5
	// pendingLoginBudget bounds the bytes (names and values) of the
	// binding cookies a browser carries, so long return_to values cannot
	// push its Cookie header past a front proxy's limit (nginx: 8 KiB a
	// line by default). One cookie with the longest return_to fits.
	pendingLoginBudget = 4096
	// maxLoginCookiesRead bounds the binding cookies of one request that
	// are opened, whatever a hand-made Cookie header holds.
	maxLoginCookiesRead = 16
)

// pendingLogin is a live binding cookie the browser sent.
type pendingLogin struct {
	name    string
	size    int
	created time.Time
}

// bindLogin sets the binding cookie of st, whose sealed form is value, and
// expires what would push the browser past maxPendingLogins or
// pendingLoginBudget: binding cookies that no longer open (expired, sealed
// under a retired secret, tampered) first, then the oldest live ones.
func (a *authHandler) bindLogin(w http.ResponseWriter, r *http.Request, st *session.LoginState, value string) {
	name := a.cookie.LoginCookieName(st.State)
	live := a.pendingLogins(w, r)
	total := len(name) + len(value)
	for _, p := range live {
		total += p.size
	}
	for len(live) > 0 && (len(live)+1 > maxPendingLogins || total > pendingLoginBudget) {
		a.cookie.ClearLogin(w, live[0].name)
		total -= live[0].size
		live = live[1:]
	}
	a.cookie.SetLogin(w, name, value, a.loginTTL)
}

// pendingLogins returns r's live binding cookies, oldest first, and clears
// those that do not open.
func (a *authHandler) pendingLogins(w http.ResponseWriter, r *http.Request) []pendingLogin {
	var live []pendingLogin
	seen := map[string]bool{}
	for _, c := range r.Cookies() {
		if !a.cookie.IsLoginCookie(c.Name) || seen[c.Name] {
			continue
		}
		if len(seen) == maxLoginCookiesRead {
			break
		}
		seen[c.Name] = true
		st, err := a.states.OpenLogin(c.Value)
		if err != nil {
			a.cookie.ClearLogin(w, c.Name)
			continue
		}
		live = append(live, pendingLogin{name: c.Name, size: len(c.Name) + len(c.Value), created: st.CreatedAt})
	}
	slices.SortStableFunc(live, func(x, y pendingLogin) int { return x.created.Compare(y.created) })
	return live
}

// boundLogin returns the login state of state from r's binding cookie, when
// r carries one that opens, has not expired and holds exactly that state.
// This binding is the login CSRF defence (RFC 6749 §10.12): without it, an
// attacker could start a login in their own browser and send the victim the
// callback URL with the attacker's code and state.
func (a *authHandler) boundLogin(r *http.Request, state string) (*session.LoginState, bool) {
	name := a.cookie.LoginCookieName(state)
	if name == "" {
		return nil, false
	}
	cookies := r.CookiesNamed(name)
	// Without __Host- a sibling host could add a cookie of the same name;
	// the browser's own is one of the first few.
	for _, c := range cookies[:min(len(cookies), maxPendingLogins)] {
		st, err := a.states.OpenLogin(c.Value)
		if err == nil && subtle.ConstantTimeCompare([]byte(st.State), []byte(state)) == 1 {
			return st, true
		}
	}
	return nil, false
}

// unbindLogin expires the binding cookie of state, when state can name one,
// so a callback is single-use from the browser's point of view whatever its
// outcome.
func (a *authHandler) unbindLogin(w http.ResponseWriter, state string) {
	if name := a.cookie.LoginCookieName(state); name != "" {
		a.cookie.ClearLogin(w, name)
	}
}

// loginTTLOrDefault is the binding cookie's Max-Age: the session manager's
// login state TTL, which also bounds the sealed state's own age.
func loginTTLOrDefault(d time.Duration) time.Duration {
	return cmp.Or(max(d, 0), session.LifetimeOptions{}.WithDefaults().LoginStateTTL)
}
