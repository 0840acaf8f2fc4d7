package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestRouteTokens: against the real OP with resource indicators, client
// credentials and token exchange switched on, each route's upstream (which
// verifies the token's audience) receives only its own token: the user's
// token of its resource, one per resource and kept in the session;
// tokenrelay's own client-credentials token, with no session at all; a
// token exchanged for the route's resource. check-config --discover finds
// nothing to object to.
func TestRouteTokens(t *testing.T) {
	t.Parallel()
	const user = "route-tokens-user"
	var ups map[string]*audUpstream
	s := startStack(t, stackOptions{
		OPArgs: []string{"--resources=" + strings.Join([]string{resOrders, resBilling, resService, resReports}, ","), "--client-credentials", "--token-exchange"},
		Configure: func(s *stack, _ int, yaml string) string {
			ups = map[string]*audUpstream{
				"orders":  newAudUpstream(t, s.OP, resOrders, false),
				"billing": newAudUpstream(t, s.OP, resBilling, false),
				"service": newAudUpstream(t, s.OP, resService, false),
				"reports": newAudUpstream(t, s.OP, resReports, false),
			}
			return routesYAML(t, yaml, fmt.Sprintf(`  - {path: /orders/, upstream: %q, resource: %q}
  - {path: /billing/, upstream: %q, resource: %q}
  - {path: /service/, upstream: %q, token: client, resource: %q}
  - {path: /reports/, upstream: %q, token: exchange, resource: %q}
  - {path: /api/, upstream: %q, resource: %q}
  - {path: /, upstream: %q, auth: none}
`, ups["orders"].URL, resOrders, ups["billing"].URL, resBilling, ups["service"].URL, resService,
				ups["reports"].URL, resReports, s.Tap.URL, apiResource, s.APIURL))
		},
	})
	b := newBrowser(t)
	b.login(t, s.RelayURL, "/api/whoami", user)

	var orders1, orders2, billing1, billing2 audSeen
	getJSON(t, b, s.RelayURL+"/orders/a", &orders1)
	getJSON(t, b, s.RelayURL+"/billing/a", &billing1)
	getJSON(t, b, s.RelayURL+"/orders/b", &orders2)
	getJSON(t, b, s.RelayURL+"/billing/b", &billing2)
	for _, c := range []struct {
		got  audSeen
		want string
	}{{orders1, resOrders}, {orders2, resOrders}, {billing1, resBilling}, {billing2, resBilling}} {
		if c.got.Aud != c.want || c.got.Sub != user {
			t.Errorf("upstream of %s saw aud %q sub %q, want %q and %q", c.want, c.got.Aud, c.got.Sub, c.want, user)
		}
	}
	if orders1.JTI != orders2.JTI || billing1.JTI != billing2.JTI || orders1.JTI == billing1.JTI {
		t.Errorf("orders tokens %s %s, billing tokens %s %s: want one token per resource, kept", orders1.JTI, orders2.JTI, billing1.JTI, billing2.JTI)
	}

	// tokenrelay's own token, with no session.
	anon := newBrowser(t)
	var svc1, svc2 audSeen
	getJSON(t, anon, s.RelayURL+"/service/a", &svc1)
	getJSON(t, anon, s.RelayURL+"/service/b", &svc2)
	if svc1.Aud != resService || svc1.ClientID != opClientID || svc1.Sub != opClientID || svc1.JTI != svc2.JTI {
		t.Errorf("service upstream saw %+v then %+v, want the client's own token for %s, kept", svc1, svc2, resService)
	}

	// A token exchanged for the reports resource, for the user.
	var rep1, rep2 audSeen
	getJSON(t, b, s.RelayURL+"/reports/a", &rep1)
	getJSON(t, b, s.RelayURL+"/reports/b", &rep2)
	if rep1.Aud != resReports || rep1.Sub != user || rep1.ClientID != opClientID || rep1.JTI != rep2.JTI {
		t.Errorf("reports upstream saw %+v then %+v, want an exchanged token of %s for %s, kept", rep1, rep2, resReports, user)
	}
	// Without a session, the user's routes are not forwarded.
	if o := anon.get(t, s.RelayURL+"/orders/a", http.Header{"Accept": {"application/json"}}); o.Status != http.StatusUnauthorized {
		t.Errorf("orders without a session = %d, want 401", o.Status)
	}

	for name, u := range ups {
		if _, refused := u.Seen(); len(refused) != 0 {
			t.Errorf("the %s upstream refused tokens: %q", name, refused)
		}
	}
	st, fs := s.OP.Stats(t), s.OP.FeatureStats(t)
	if st.RefreshSuccess != 3 || fs.ClientCredentials != 1 || fs.TokenExchange != 1 {
		t.Errorf("OP: %d refreshes, %d client credentials grants, %d token exchanges; want 3 (one per resource: api, orders, billing), 1, 1", st.RefreshSuccess, fs.ClientCredentials, fs.TokenExchange)
	}
	if out, err := exec.Command(bins.tokenrelay, "check-config", "--discover", "-config", s.ConfigPath).CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "config OK") {
		t.Errorf("check-config --discover = %v:\n%s\nwant config OK", err, out)
	}
}

// TestDPoP: with DPoP on (and the OP asking for its nonce), the session's
// tokens are bound to the session's key: the upstream verifies each
// request's proof (htm, htu, ath, iat, a fresh jti) and that the token's
// cnf.jkt is the proof's key, before and after a refresh.
func TestDPoP(t *testing.T) {
	t.Parallel()
	const user = "dpop-user"
	var up *audUpstream
	s := startStack(t, stackOptions{
		AccessTTL: 4 * time.Second,
		OPArgs:    []string{"--resources=" + resOrders, "--dpop-nonce"},
		Configure: func(s *stack, _ int, yaml string) string {
			up = newAudUpstream(t, s.OP, resOrders, true)
			yaml = editYAML(t, yaml, "  auth_params:\n", "  dpop: true\n  auth_params:\n")
			return routesYAML(t, yaml, fmt.Sprintf("  - {path: /orders/, upstream: %q, resource: %q}\n  - {path: /, upstream: %q, auth: none}\n", up.URL, resOrders, s.APIURL))
		},
	})
	b := newBrowser(t)
	res := b.login(t, s.RelayURL, "/orders/whoami", user)
	var first audSeen
	if err := json.Unmarshal(res.Final.Body, &first); err != nil || res.Final.Status != http.StatusOK {
		t.Fatalf("after login: %d %s", res.Final.Status, res.Final.Body)
	}
	if first.Aud != resOrders || first.Sub != user || first.JKT == "" {
		t.Fatalf("first request: %+v, want a DPoP-bound token of %s for %s", first, resOrders, user)
	}
	waitUntil(t, time.Now().Add(5*time.Second), 10*time.Second) // the token has expired
	var second, third audSeen
	getJSON(t, b, s.RelayURL+"/orders/whoami", &second)
	getJSON(t, b, s.RelayURL+"/orders/whoami", &third)
	if second.JTI == first.JTI || second.JKT != first.JKT || third.JTI != second.JTI {
		t.Errorf("after expiry: %+v then %+v, want a new token bound to the same session key %s, then kept", second, third, first.JKT)
	}
	seen, refused := up.Seen()
	if len(refused) != 0 || len(seen) != 3 {
		t.Errorf("the upstream accepted %d requests and refused %q; want 3 and none", len(seen), refused)
	}
	st, fs := s.OP.Stats(t), s.OP.FeatureStats(t)
	if fs.TokenErrors["use_dpop_nonce"] < 1 || st.RefreshSuccess != 2 || st.CodeSuccess != 1 {
		t.Errorf("OP: %v token errors, %d code grants, %d refreshes; want a use_dpop_nonce answered, 1, 2", fs.TokenErrors, st.CodeSuccess, st.RefreshSuccess)
	}
}

// TestPrivateKeyJWT: a client that authenticates with private_key_jwt
// logs in and refreshes: the OP accepts tokenrelay's assertions (each with
// its own jti, for the OP's issuer, kid the key's thumbprint), and refuses
// one of them sent again.
func TestPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	const clientID = "tokenrelay-pkjwt"
	dir := t.TempDir()
	keyFile, jwksFile, kid := writeClientKey(t, dir)
	var rec *tokenRecorder
	s := startStack(t, stackOptions{
		AccessTTL: 4 * time.Second,
		OPArgs:    []string{"--pkjwt-client-id=" + clientID, "--pkjwt-jwks=" + jwksFile},
		Configure: func(s *stack, _ int, yaml string) string {
			rec = newTokenRecorder(t, s.OP.Issuer)
			return editYAML(t, yaml, fmt.Sprintf("  client_id: %q\n  client_secret: %q\n  auth_method: client_secret_basic\n", opClientID, opClientSecret),
				fmt.Sprintf("  client_id: %q\n  private_key_file: %q\n  token_endpoint: %q\n", clientID, keyFile, rec.URL+"/token"))
		},
	})
	b := newBrowser(t)
	res := b.login(t, s.RelayURL, "/api/whoami", "pkjwt-user")
	first := decodeWhoami(t, res.Final)
	waitUntil(t, time.Unix(first.Exp, 0).Add(100*time.Millisecond), 10*time.Second)
	if second := decodeWhoami(t, b.get(t, s.RelayURL+"/api/whoami", nil)); second.JTI == first.JTI {
		t.Fatal("after expiry the API saw the same token: no refresh")
	}
	forms := rec.Forms()
	if len(forms) != 2 {
		t.Fatalf("token requests = %d, want 2 (code, refresh)", len(forms))
	}
	jtis := map[string]bool{}
	for i, f := range forms {
		if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || f.Get("client_secret") != "" {
			t.Errorf("request %d: %v, want a JWT client assertion and no secret", i, f)
		}
		var c jwt.RegisteredClaims
		tok, _, err := jwt.NewParser().ParseUnverified(f.Get("client_assertion"), &c)
		if err != nil {
			t.Fatalf("request %d: assertion: %v", i, err)
		}
		if tok.Header["kid"] != kid || c.Issuer != clientID || c.Subject != clientID || len(c.Audience) != 1 || c.Audience[0] != s.OP.Issuer {
			t.Errorf("request %d: kid %v iss %q sub %q aud %q, want kid %s, %s, %s, [%s]", i, tok.Header["kid"], c.Issuer, c.Subject, c.Audience, kid, clientID, clientID, s.OP.Issuer)
		}
		jtis[c.ID] = true
	}
	if len(jtis) != 2 {
		t.Errorf("2 assertions had %d distinct jtis, want 2", len(jtis))
	}
	// An assertion the OP accepted once is refused the second time.
	resp, err := http.PostForm(s.OP.Issuer+"/token", forms[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"invalid_client"`) {
		t.Errorf("replayed assertion: %d %s, want 401 invalid_client", resp.StatusCode, body)
	}
}

// writeClientKey writes a new P-256 key as PEM (for tokenrelay) and its
// public half as a JWKS (for the OP), and returns the files and the key's
// RFC 7638 thumbprint, its kid.
func writeClientKey(t *testing.T, dir string) (keyFile, jwksFile, kid string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	x, y := b64(key.X.FillBytes(make([]byte, 32))), b64(key.Y.FillBytes(make([]byte, 32)))
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	kid = b64(sum[:])
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"}}})
	jwksFile = filepath.Join(dir, "client-jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile, jwksFile, kid
}

// tokenRecorder stands in front of the OP's token endpoint and records
// every request's form.
type tokenRecorder struct {
	URL   string
	mu    sync.Mutex
	forms []url.Values
}

func newTokenRecorder(t *testing.T, issuer string) *tokenRecorder {
	t.Helper()
	target, _ := url.Parse(issuer)
	r := &tokenRecorder{}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		form, _ := url.ParseQuery(string(body))
		r.mu.Lock()
		r.forms = append(r.forms, form)
		r.mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Forms returns the forms of the requests so far.
func (r *tokenRecorder) Forms() []url.Values {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]url.Values(nil), r.forms...)
}

// TestPushedAuthorization: an OP that requires pushed authorization
// requests gets them: the browser goes to the OP with nothing but the
// client id and the request_uri, and the login works. check-config
// --discover explains a configuration that would not push, and a client
// route this OP cannot serve.
func TestPushedAuthorization(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{OPArgs: []string{"--require-par"}})
	b := newBrowser(t)
	res := b.login(t, s.RelayURL, "/api/whoami", "par-user")
	if got := decodeWhoami(t, res.Final); got.Sub != "par-user" {
		t.Fatalf("after login the API saw sub %q", got.Sub)
	}
	loc, err := url.Parse(res.Start.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	if len(q) != 2 || q.Get("client_id") != opClientID || !strings.HasPrefix(q.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
		t.Errorf("the browser went to %s, want only client_id and a request_uri", loc.Redacted())
	}
	if fs := s.OP.FeatureStats(t); fs.PAR != 1 || fs.AuthPushed != 1 || fs.AuthPlain != 0 {
		t.Errorf("OP: %d pushed requests, %d pushed and %d plain authorization requests; want 1, 1, 0", fs.PAR, fs.AuthPushed, fs.AuthPlain)
	}

	cfg, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	conflicting := editYAML(t, string(cfg), "  auth_params:\n", "  par: never\n  auth_params:\n")
	conflicting = editYAML(t, conflicting, "routes:\n", "routes:\n  - {path: /service/, upstream: \"http://127.0.0.1:9\", token: client}\n")
	path := filepath.Join(t.TempDir(), "conflicting.yaml")
	if err := os.WriteFile(path, []byte(conflicting), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bins.tokenrelay, "check-config", "--discover", "-config", path).CombinedOutput()
	for _, want := range []string{
		"provider.par: never, but the provider requires pushed authorization requests (require_pushed_authorization_requests)",
		"routes[0].token: client needs the client_credentials grant, which the provider does not list",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check-config --discover:\n%s\nwant it to say %q", out, want)
		}
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("check-config --discover exit = %v, want 2", err)
	}
}
