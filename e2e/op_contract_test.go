package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestOPContract checks the facts the other end-to-end tests rely on, with a
// minimal relying party written here instead of tokenrelay: the OP's login
// pages can be driven by the browser helper; a code grant yields a refresh
// token and a JWT access token that verifies against the JWKS; refresh
// tokens rotate; a reused refresh token is answered invalid_grant, revokes
// the grant, and is counted — so the "no refresh token reuse" checks of the
// other tests can fail.
func TestOPContract(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	if bins.root == "" {
		t.Fatalf("e2e: module root unknown: %v", bins.err)
	}

	rp := &miniRP{}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	o := startOP(t, opOptions{RelayURL: srv.URL, AccessTTL: 60 * time.Second})
	rp.configure(t, o, srv.URL)

	b := newBrowser(t)
	res := b.login(t, srv.URL, "/done", "alice")
	if got, want := res.Final.URL.Path, "/done"; got != want {
		t.Fatalf("login ended at %s, want %s", res.Final.URL, want)
	}
	code := res.CallbackURL.Query().Get("code")
	if code == "" {
		t.Fatalf("callback %s has no code", res.CallbackURL.Redacted())
	}

	first := rp.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {srv.URL + "/.auth/callback"}, "code_verifier": {rp.verifier}})
	if first.Status != http.StatusOK || first.RefreshToken == "" || first.IDToken == "" {
		t.Fatalf("code exchange: status %d, refresh token present %t, ID token present %t, error %q; want 200 with both",
			first.Status, first.RefreshToken != "", first.IDToken != "", first.Error)
	}
	claims := o.VerifyAccessToken(t, first.AccessToken)
	if got, want := claims.Subject, "alice"; got != want {
		t.Errorf("access token sub = %q, want %q", got, want)
	}
	if got, want := claims.Scope, "api:read"; got != want {
		t.Errorf("access token scope = %q, want %q", got, want)
	}
	// tokenrelay keeps the user's claims from the ID token (the JWT access
	// token is not accepted by userinfo), and back-channel logout needs sid.
	var id struct {
		Email string `json:"email"`
		Name  string `json:"name"`
		SID   string `json:"sid"`
	}
	if _, _, err := jwt.NewParser().ParseUnverified(first.IDToken, jwt.MapClaims{}); err != nil {
		t.Fatalf("ID token: %v", err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(first.IDToken, ".")[1])
	if err != nil || json.Unmarshal(payload, &id) != nil {
		t.Fatalf("ID token payload: %v", err)
	}
	if id.Email != "alice@example.test" || id.Name != "alice" || id.SID == "" {
		t.Errorf("ID token claims email=%q name=%q sid=%q, want alice@example.test, alice and a sid", id.Email, id.Name, id.SID)
	}
	if got, want := first.ExpiresIn, 60; got != want {
		t.Errorf("expires_in = %d, want %d", got, want)
	}

	refresh := func(rt string) tokenAnswer {
		return rp.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	}
	second := refresh(first.RefreshToken)
	if second.Status != http.StatusOK || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatalf("refresh: status %d, error %q, rotated %t; want 200 with a new refresh token",
			second.Status, second.Error, second.RefreshToken != first.RefreshToken)
	}
	reused := refresh(first.RefreshToken)
	if got, want := reused.Status, http.StatusBadRequest; got != want || reused.Error != "invalid_grant" {
		t.Errorf("reusing a rotated refresh token: status %d error %q, want %d invalid_grant", got, reused.Error, want)
	}
	// Reuse revokes the whole grant: the newest refresh token is dead too.
	if after := refresh(second.RefreshToken); after.Error != "invalid_grant" {
		t.Errorf("refresh with the newest token after a reuse: error %q, want invalid_grant", after.Error)
	}

	got := o.Stats(t)
	want := opStats{CodeSuccess: 1, RefreshSuccess: 1, RefreshError: 2, InvalidGrant: 2, RefreshReused: 1, RefreshConsumed: 1, GrantsRevoked: 1}
	if got != want {
		t.Errorf("OP stats = %+v\nwant %+v", got, want)
	}
	o.Reset(t)
	if got := o.Stats(t); got != (opStats{}) {
		t.Errorf("OP stats after reset = %+v, want zero", got)
	}
}

// miniRP is the smallest relying party that can log in at the OP:
// /.auth/login redirects with state and PKCE, /.auth/callback checks the
// state and redirects to the return path. The test exchanges the code.
type miniRP struct {
	mu       sync.Mutex
	authURL  string // guarded by mu
	tokenURL string // guarded by mu
	state    string // guarded by mu
	verifier string // guarded by mu
	returnTo string // guarded by mu
}

func (rp *miniRP) configure(t *testing.T, o *op, base string) {
	t.Helper()
	resp, err := o.client.Get(o.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.state, rp.verifier = rand.Text(), rand.Text()+rand.Text()
	sum := sha256.Sum256([]byte(rp.verifier))
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {opClientID},
		"redirect_uri":          {base + "/.auth/callback"},
		"scope":                 {"openid offline_access profile email api:read"},
		"state":                 {rp.state},
		"nonce":                 {rand.Text()},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
		"prompt":                {"consent"},
	}
	rp.authURL = doc.AuthorizationEndpoint + "?" + q.Encode()
	rp.tokenURL = doc.TokenEndpoint
}

func (rp *miniRP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	switch r.URL.Path {
	case "/.auth/login":
		rp.returnTo = r.URL.Query().Get("return_to")
		http.Redirect(w, r, rp.authURL, http.StatusFound)
	case "/.auth/callback":
		if r.URL.Query().Get("state") != rp.state {
			http.Error(w, "bad state", http.StatusBadRequest)
			return
		}
		http.Redirect(w, r, rp.returnTo, http.StatusFound)
	default:
		w.WriteHeader(http.StatusOK)
	}
}

// tokenAnswer is a token endpoint answer, success or error.
type tokenAnswer struct {
	Status       int
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	ExpiresIn    int    `json:"expires_in"`
	Error        string `json:"error"`
}

// token posts to the token endpoint with client_secret_basic.
func (rp *miniRP) token(t *testing.T, form url.Values) tokenAnswer {
	t.Helper()
	rp.mu.Lock()
	tokenURL := rp.tokenURL
	rp.mu.Unlock()
	req, err := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(opClientID), url.QueryEscape(opClientSecret))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("token endpoint: %v", err)
	}
	defer resp.Body.Close()
	var a tokenAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("token endpoint: decode: %v", err)
	}
	a.Status = resp.StatusCode
	return a
}
