package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// xanoBackend is a contract-test backend that behaves like a Xano
// workspace's authentication endpoints with refresh-token rotation:
//
//	POST /auth/signup {email, password} → 200 {accessToken, refreshToken, user}
//	POST /auth/login  {email, password} → 200 {accessToken, refreshToken, user}
//	                                       401 {message} on a bad password
//	POST /auth/token  {refreshToken}    → 200 {accessToken, refreshToken}
//	                                       (no expires_in: the lifetime is the JWT exp)
//	GET  /api/me      Bearer            → 200 {id, email, jti} or 401 {message}
//
// Refresh tokens are single use: presenting a spent one counts a reuse and
// revokes its whole family (every token issued from the same login), as
// Xano does with rotation. Access tokens are HS256 JWTs carrying sub, jti,
// exp and their family; /api/me refuses an expired one (no leeway) and one
// whose family is revoked. It runs in the test process, so tests read its
// counters directly.
type xanoBackend struct {
	URL string

	ttl          time.Duration
	refreshDelay time.Duration
	key          []byte
	quirks       xanoOptions

	mu       sync.Mutex
	nextID   int
	users    map[string]*xanoUser   // by email; guarded by mu
	refresh  map[string]*xanoSpent  // refresh token → state; guarded by mu
	families map[string]*xanoFamily // by family id; guarded by mu
	issued   map[string]time.Time   // access token jti → exp; guarded by mu
	tokens   []string               // every token value issued; guarded by mu
}

type xanoUser struct {
	ID       int
	Email    string
	Password string
	Stats    xanoStats
}

// xanoStats are one user's exact counters.
type xanoStats struct {
	Logins          int // successful logins and signups
	Refreshes       int // successful refreshes
	RefreshRejected int // refresh calls answered 401 (unknown, spent or revoked token)
	Reuses          int // spent refresh tokens presented again
	MeOK            int // /api/me answered 200
	MeRejected      int // /api/me answered 401
}

type xanoSpent struct {
	family string
	used   bool
}

type xanoFamily struct {
	user    *xanoUser
	revoked bool
}

// xanoClaims are the claims of the backend's access tokens.
type xanoClaims struct {
	Family string `json:"fam"`
	jwt.RegisteredClaims
}

// xanoOptions shape a backend.
type xanoOptions struct {
	// TTL is the access token lifetime (whole seconds in the JWT exp).
	TTL time.Duration
	// RefreshDelay is how long /auth/token takes to answer, to widen the
	// window in which concurrent callers could refresh twice.
	RefreshDelay time.Duration

	// Misbehaviours seen in real backends, for token capture tests:
	// LoginContentType is the Content-Type of login and signup answers
	// (default application/json); LeakOnBadPassword answers a wrong
	// password 401 with a fresh token pair in the body anyway;
	// PlantCookie adds Set-Cookie lines for tokenrelay's own cookies to
	// login and signup answers.
	LoginContentType  string
	LeakOnBadPassword bool
	PlantCookie       bool
}

// startXanoBackend starts a backend for one test, closed when it ends.
func startXanoBackend(t *testing.T, o xanoOptions) *xanoBackend {
	t.Helper()
	x := &xanoBackend{
		ttl:          o.TTL,
		refreshDelay: o.RefreshDelay,
		quirks:       o,
		key:          make([]byte, 32),
		users:        map[string]*xanoUser{},
		refresh:      map[string]*xanoSpent{},
		families:     map[string]*xanoFamily{},
		issued:       map[string]time.Time{},
	}
	_, _ = rand.Read(x.key)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/signup", x.signup)
	mux.HandleFunc("POST /auth/login", x.login)
	mux.HandleFunc("POST /auth/token", x.token)
	mux.HandleFunc("GET /api/me", x.me)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	x.URL = srv.URL
	return x
}

// Stats returns the counters of the user with this email.
func (x *xanoBackend) Stats(t *testing.T, email string) xanoStats {
	t.Helper()
	x.mu.Lock()
	defer x.mu.Unlock()
	u, ok := x.users[email]
	if !ok {
		t.Fatalf("xano: no user %q", email)
	}
	return u.Stats
}

// Expiry returns the exp of the access token with this jti.
func (x *xanoBackend) Expiry(t *testing.T, jti string) time.Time {
	t.Helper()
	x.mu.Lock()
	defer x.mu.Unlock()
	exp, ok := x.issued[jti]
	if !ok {
		t.Fatalf("xano: no access token with jti %q was issued", jti)
	}
	return exp
}

// Tokens returns every access and refresh token issued so far.
func (x *xanoBackend) Tokens() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]string(nil), x.tokens...)
}

// RevokeUser revokes every token family of the user, as an admin action in
// Xano would: their access tokens stop working and their refresh tokens are
// dead.
func (x *xanoBackend) RevokeUser(t *testing.T, email string) {
	t.Helper()
	x.mu.Lock()
	defer x.mu.Unlock()
	u, ok := x.users[email]
	if !ok {
		t.Fatalf("xano: no user %q", email)
	}
	for _, f := range x.families {
		if f.user == u {
			f.revoked = true
		}
	}
}

type xanoCredentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// xanoUserJSON is the "user" object of login answers.
type xanoUserJSON struct {
	ID    int    `json:"id"`
	Email string `json:"email"`
}

type xanoAuthAnswer struct {
	AccessToken  string       `json:"accessToken"`
	RefreshToken string       `json:"refreshToken"`
	User         xanoUserJSON `json:"user"`
}

func (x *xanoBackend) signup(w http.ResponseWriter, r *http.Request) {
	var c xanoCredentials
	if err := json.NewDecoder(r.Body).Decode(&c); err != nil || c.Email == "" || c.Password == "" {
		xanoError(w, http.StatusBadRequest, "email and password are required")
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.users[c.Email]; ok {
		xanoError(w, http.StatusForbidden, "This account is already in use.")
		return
	}
	x.nextID++
	u := &xanoUser{ID: x.nextID, Email: c.Email, Password: c.Password}
	x.users[c.Email] = u
	x.startFamilyLocked(w, u)
}

func (x *xanoBackend) login(w http.ResponseWriter, r *http.Request) {
	var c xanoCredentials
	if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
		xanoError(w, http.StatusBadRequest, "email and password are required")
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	u, ok := x.users[c.Email]
	if ok && u.Password != c.Password && x.quirks.LeakOnBadPassword {
		access, refresh, err := x.issueLocked(u, xanoRandom())
		if err == nil {
			xanoJSON(w, http.StatusUnauthorized, map[string]string{"message": "Invalid Credentials.", "accessToken": access, "refreshToken": refresh})
			return
		}
	}
	if !ok || u.Password != c.Password {
		xanoError(w, http.StatusUnauthorized, "Invalid Credentials.")
		return
	}
	x.startFamilyLocked(w, u)
}

// startFamilyLocked answers a login or signup with a new token family.
func (x *xanoBackend) startFamilyLocked(w http.ResponseWriter, u *xanoUser) {
	fam := xanoRandom()
	x.families[fam] = &xanoFamily{user: u}
	access, refresh, err := x.issueLocked(u, fam)
	if err != nil {
		xanoError(w, http.StatusInternalServerError, err.Error())
		return
	}
	u.Stats.Logins++
	if x.quirks.PlantCookie {
		w.Header()["Set-Cookie"] = []string{"__Host-tokenrelay=planted; Path=/; Secure; HttpOnly", "tokenrelay=planted", "__Host-tokenrelay-login-0123456789abcdef=planted; Path=/; Secure"}
	}
	answer := xanoAuthAnswer{AccessToken: access, RefreshToken: refresh, User: xanoUserJSON{ID: u.ID, Email: u.Email}}
	if ct := x.quirks.LoginContentType; ct != "" {
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(answer)
		return
	}
	xanoJSON(w, http.StatusOK, answer)
}

// issueLocked mints an access token and a refresh token in family fam.
func (x *xanoBackend) issueLocked(u *xanoUser, fam string) (access, refresh string, err error) {
	now := time.Now()
	claims := xanoClaims{Family: fam, RegisteredClaims: jwt.RegisteredClaims{
		// Not the bare user id, so a test can tell the subject mapped
		// from user.id from the JWT's sub.
		Subject:   xanoSubject(u.ID),
		ID:        xanoRandom(),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(x.ttl)),
	}}
	access, err = jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(x.key)
	if err != nil {
		return "", "", fmt.Errorf("xano: sign: %w", err)
	}
	refresh = xanoRandom()
	x.refresh[refresh] = &xanoSpent{family: fam}
	x.issued[claims.ID] = claims.ExpiresAt.Time
	x.tokens = append(x.tokens, access, refresh)
	return access, refresh, nil
}

func (x *xanoBackend) token(w http.ResponseWriter, r *http.Request) {
	var in struct {
		RefreshToken string `json:"refreshToken"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.RefreshToken == "" {
		xanoError(w, http.StatusBadRequest, "refreshToken is required")
		return
	}
	if x.refreshDelay > 0 {
		timer := time.NewTimer(x.refreshDelay)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			return
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	rt, ok := x.refresh[in.RefreshToken]
	if !ok {
		xanoError(w, http.StatusUnauthorized, "Invalid token.")
		return
	}
	f := x.families[rt.family]
	switch {
	case rt.used:
		// Reuse: someone holds a copy. The whole family dies.
		f.user.Stats.Reuses++
		f.user.Stats.RefreshRejected++
		f.revoked = true
		xanoError(w, http.StatusUnauthorized, "Token has already been used.")
		return
	case f.revoked:
		f.user.Stats.RefreshRejected++
		xanoError(w, http.StatusUnauthorized, "Token has been revoked.")
		return
	}
	rt.used = true
	access, refresh, err := x.issueLocked(f.user, rt.family)
	if err != nil {
		xanoError(w, http.StatusInternalServerError, err.Error())
		return
	}
	f.user.Stats.Refreshes++
	xanoJSON(w, http.StatusOK, map[string]string{"accessToken": access, "refreshToken": refresh})
}

func (x *xanoBackend) me(w http.ResponseWriter, r *http.Request) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	var claims xanoClaims
	var err error
	if !ok {
		err = errors.New("no bearer token")
	} else {
		_, err = jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return x.key, nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	var f *xanoFamily
	if err == nil {
		if f = x.families[claims.Family]; f == nil || f.revoked {
			err = errors.New("revoked")
		}
	}
	if err != nil {
		if f != nil {
			f.user.Stats.MeRejected++
		} else if u := x.userByIDLocked(claims.Subject); u != nil {
			u.Stats.MeRejected++
		}
		xanoError(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	f.user.Stats.MeOK++
	xanoJSON(w, http.StatusOK, map[string]any{"id": f.user.ID, "email": f.user.Email, "jti": claims.ID})
}

// userByIDLocked finds a user by the decimal id of a token's sub (an
// expired token's claims are still decoded).
func (x *xanoBackend) userByIDLocked(sub string) *xanoUser {
	for _, u := range x.users {
		if xanoSubject(u.ID) == sub {
			return u
		}
	}
	return nil
}

// xanoSubject is the sub claim of a user's access tokens.
func xanoSubject(id int) string { return fmt.Sprintf("xano-user-%d", id) }

func xanoRandom() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func xanoJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func xanoError(w http.ResponseWriter, status int, msg string) {
	xanoJSON(w, status, map[string]string{"message": msg})
}

// TestXanoBackendContract checks the contract-test backend itself, without
// tokenrelay: what the end-to-end test relies on must hold.
func TestXanoBackendContract(t *testing.T) {
	t.Parallel()
	x := startXanoBackend(t, xanoOptions{TTL: time.Hour})
	c := &http.Client{Timeout: 10 * time.Second}
	call := func(method, path, bearer string, body any) (int, map[string]any) {
		t.Helper()
		var rd *strings.Reader
		if body != nil {
			data, _ := json.Marshal(body)
			rd = strings.NewReader(string(data))
		} else {
			rd = strings.NewReader("")
		}
		req, _ := http.NewRequest(method, x.URL+path, rd)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return resp.StatusCode, out
	}
	const email = "eve@example.com"
	if st, _ := call("POST", "/auth/signup", "", xanoCredentials{email, "pw"}); st != 200 {
		t.Fatalf("signup = %d", st)
	}
	if st, _ := call("POST", "/auth/signup", "", xanoCredentials{email, "pw"}); st != 403 {
		t.Errorf("second signup = %d, want 403", st)
	}
	if st, body := call("POST", "/auth/login", "", xanoCredentials{email, "bad"}); st != 401 || body["message"] != "Invalid Credentials." {
		t.Errorf("bad password = %d %v, want 401 Invalid Credentials.", st, body)
	}
	st, login := call("POST", "/auth/login", "", xanoCredentials{email, "pw"})
	access, _ := login["accessToken"].(string)
	refresh1, _ := login["refreshToken"].(string)
	if st != 200 || access == "" || refresh1 == "" || login["user"] == nil {
		t.Fatalf("login = %d %v", st, login)
	}
	if st, me := call("GET", "/api/me", access, nil); st != 200 || me["email"] != email {
		t.Errorf("/api/me = %d %v", st, me)
	}
	if st, _ := call("GET", "/api/me", access+"x", nil); st != 401 {
		t.Errorf("/api/me with a bad signature = %d, want 401", st)
	}
	st, rot := call("POST", "/auth/token", "", map[string]string{"refreshToken": refresh1})
	refresh2, _ := rot["refreshToken"].(string)
	if _, has := rot["expires_in"]; st != 200 || refresh2 == "" || refresh2 == refresh1 || has || len(rot) != 2 {
		t.Fatalf("refresh = %d %v, want exactly a new accessToken and refreshToken", st, rot)
	}
	// Reuse of the spent token kills the family: the rotated token too.
	if st, _ := call("POST", "/auth/token", "", map[string]string{"refreshToken": refresh1}); st != 401 {
		t.Errorf("reuse = %d, want 401", st)
	}
	if st, _ := call("POST", "/auth/token", "", map[string]string{"refreshToken": refresh2}); st != 401 {
		t.Errorf("refresh with the family revoked = %d, want 401", st)
	}
	if st, _ := call("GET", "/api/me", access, nil); st != 401 {
		t.Errorf("/api/me with the family revoked = %d, want 401", st)
	}
	want := xanoStats{Logins: 2, Refreshes: 1, RefreshRejected: 2, Reuses: 1, MeOK: 1, MeRejected: 2}
	if got := x.Stats(t, email); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
}
