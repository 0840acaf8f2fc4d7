package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

const (
	opClientID     = "tokenrelay-e2e"
	opClientSecret = "e2e-client-secret-not-for-production"
	// apiResource is the audience of the OP's JWT access tokens.
	apiResource = "urn:tokenrelay:demo-api"
)

// opOptions configure one OpenID Provider.
type opOptions struct {
	// RelayURL is tokenrelay's public URL: the redirect URI, the
	// post-logout redirect URI and the back-channel logout URI derive
	// from it.
	RelayURL  string
	AccessTTL time.Duration
	// Args are more flags of op.js (its test-only features).
	Args []string
}

// op is a running node oidc-provider.
type op struct {
	Issuer string
	proc   *process
	client *http.Client
}

// opStats are the OP's counters (GET /__stats).
type opStats struct {
	CodeSuccess        int `json:"code_success"`
	CodeError          int `json:"code_error"`
	RefreshSuccess     int `json:"refresh_success"`
	RefreshError       int `json:"refresh_error"`
	InvalidGrant       int `json:"invalid_grant"`
	RefreshReused      int `json:"refresh_reused"`
	RefreshConsumed    int `json:"refresh_consumed"`
	Revocations        int `json:"revocations"`
	GrantsRevoked      int `json:"grants_revoked"`
	Introspections     int `json:"introspections"`
	EndSession         int `json:"end_session"`
	BackchannelSuccess int `json:"backchannel_success"`
	BackchannelError   int `json:"backchannel_error"`
	ServerError        int `json:"server_error"`
}

// opFeatureStats are the OP's counters of its test-only features (GET
// /__stats too).
type opFeatureStats struct {
	ClientCredentials int            `json:"client_credentials"`
	TokenExchange     int            `json:"token_exchange"`
	PAR               int            `json:"par"`
	AuthPushed        int            `json:"auth_pushed"`
	AuthPlain         int            `json:"auth_plain"`
	TokenErrors       map[string]int `json:"token_errors"`
}

// FeatureStats reads the OP's counters of its test-only features.
func (o *op) FeatureStats(t *testing.T) opFeatureStats {
	t.Helper()
	resp, err := o.client.Get(o.Issuer + "/__stats")
	if err != nil {
		t.Fatalf("op stats: %v", err)
	}
	defer resp.Body.Close()
	var s opFeatureStats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("op stats: %v", err)
	}
	return s
}

var opReady = regexp.MustCompile(`OP ready on (http://\S+)`)

// startOP starts examples/demo/op/op.js on a free port. Without node or
// node_modules it skips the test, or fails it under CI=true.
func startOP(t *testing.T, o opOptions) *op {
	t.Helper()
	dir := filepath.Join(bins.root, "examples", "demo", "op")
	node, err := exec.LookPath("node")
	missing := ""
	switch {
	case err != nil:
		missing = "node is not installed"
	default:
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err != nil {
			missing = "examples/demo/op/node_modules is missing (run: npm ci --prefix examples/demo/op)"
		}
	}
	if missing != "" {
		if inCI() {
			t.Fatalf("e2e: %s; CI=true requires the OpenID Provider", missing)
		}
		t.Skipf("e2e: %s; skipping (CI=true makes this a failure)", missing)
	}
	ttl := int(o.AccessTTL / time.Second)
	if ttl <= 0 {
		ttl = 30
	}
	rp := strings.TrimSuffix(o.RelayURL, "/")
	args := append([]string{"op.js",
		"--port=0",
		"--client-id=" + opClientID,
		"--client-secret=" + opClientSecret,
		"--redirect-uris=" + rp + "/.auth/callback",
		"--post-logout-redirect-uris=" + rp + "/",
		"--backchannel-logout-uri=" + rp + "/.auth/backchannel-logout",
		"--resource=" + apiResource,
		"--access-ttl=" + strconv.Itoa(ttl),
	}, o.Args...)
	p := startProcess(t, "op", dir, []string{"DEBUG=oidc-provider:error"}, node, args...)
	m := p.waitOutput(t, opReady, 90*time.Second)
	o2 := &op{Issuer: m[1], proc: p, client: &http.Client{Timeout: 5 * time.Second}}
	waitReady(t, p, o2.Issuer+"/.well-known/openid-configuration", 10*time.Second)
	return o2
}

// Stats reads the OP's counters.
func (o *op) Stats(t *testing.T) opStats {
	t.Helper()
	resp, err := o.client.Get(o.Issuer + "/__stats")
	if err != nil {
		t.Fatalf("op stats: %v", err)
	}
	defer resp.Body.Close()
	var s opStats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("op stats: %v", err)
	}
	return s
}

// Reset zeroes the OP's counters.
// BackchannelLogout makes the OP send a back-channel logout token for the
// account's session sid to the client's back-channel logout URI (through its
// test-only /__backchannel-logout hook); the OP answers 200 only when
// tokenrelay accepted the token.
func (o *op) BackchannelLogout(t *testing.T, account, sid string) {
	t.Helper()
	resp, err := o.client.Post(o.Issuer+"/__backchannel-logout?account="+url.QueryEscape(account)+"&sid="+url.QueryEscape(sid), "", nil)
	if err != nil {
		t.Fatalf("op back-channel logout: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		t.Fatalf("op back-channel logout = %d %s, want 200: tokenrelay did not accept the logout token", resp.StatusCode, body)
	}
}

func (o *op) Reset(t *testing.T) {
	t.Helper()
	resp, err := o.client.Post(o.Issuer+"/__reset", "", nil)
	if err != nil {
		t.Fatalf("op reset: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("op reset: status %d", resp.StatusCode)
	}
}

// accessClaims are the claims of the OP's JWT access tokens.
type accessClaims struct {
	Scope    string `json:"scope"`
	ClientID string `json:"client_id"`
	jwt.RegisteredClaims
}

// VerifyAccessToken checks raw against the OP's JWKS as a resource server
// would, and returns its claims.
func (o *op) VerifyAccessToken(t *testing.T, raw string) *accessClaims {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	keys, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{o.Issuer + "/jwks"}, keyfunc.Override{Client: o.client})
	if err != nil {
		t.Fatalf("jwks: %v", err)
	}
	var c accessClaims
	tok, err := jwt.ParseWithClaims(raw, &c, keys.KeyfuncCtx(ctx),
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(o.Issuer),
		jwt.WithAudience(apiResource),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	if err != nil {
		t.Fatalf("the access token does not verify against the OP's JWKS: %v", err)
	}
	if got, want := fmt.Sprint(tok.Header["typ"]), "at+jwt"; got != want {
		t.Errorf("access token typ = %q, want %q", got, want)
	}
	return &c
}
