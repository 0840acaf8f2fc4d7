package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/redistest"
)

// TestReplicasShareAssertionKeys: with a route that sends the identity
// assertion, two replicas on one Redis (one server secret) serve the same
// JWKS, with one key: the key ring lives in the session store, so any
// replica's assertion verifies against any replica's keys. Without such a
// route there is no key ring and no JWKS.
func TestReplicasShareAssertionKeys(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	path := writeFile(t, t.TempDir(), "tokenrelay.yaml", `
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
public_url: http://localhost:8080
provider:
  type: custom
  token_endpoint: http://127.0.0.1:9/auth/token
  custom:
    refresh_request: {format: json, body: {refreshToken: "{{refresh_token}}"}}
    token_response: {access_token: accessToken, refresh_token: refreshToken}
session:
  store: redis
  secret: "0123456789abcdef0123456789abcdef"
  redis: {url: "redis://`+srv.Addr+`/0"}
routes:
  - {path: /api/, upstream: "http://127.0.0.1:9", identity: {assertion: true}}
  - {path: /plain/, upstream: "http://127.0.0.1:9"}
`)
	jwks := func(mutate func(*config.Config)) (int, string) {
		t.Helper()
		cfg, _, err := config.Load(filepath.Clean(path), nil)
		if err != nil {
			t.Fatal(err)
		}
		mutate(cfg)
		app, err := buildApp(t.Context(), cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatalf("buildApp: %v", err)
		}
		defer app.Close()
		w := httptest.NewRecorder()
		app.Handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/.auth/jwks.json", nil))
		body, _ := io.ReadAll(w.Result().Body)
		return w.Code, string(body)
	}
	keep := func(*config.Config) {}
	codeA, a := jwks(keep)
	codeB, b := jwks(keep)
	if codeA != 200 || a != b || strings.Count(a, `"kid"`) != 1 {
		t.Errorf("replica A serves %d %s, replica B %d %s; want one and the same key", codeA, a, codeB, b)
	}
	code, _ := jwks(func(c *config.Config) { c.Routes[0].Identity = nil })
	if code != http.StatusNotFound {
		t.Errorf("without a route sending the assertion: jwks.json = %d, want 404", code)
	}
}

// TestProviderClaimsExtended: the claims the policies and identity headers
// read are added to provider.claims, once each, after the configured ones.
func TestProviderClaimsExtended(t *testing.T) {
	cfg, _, err := config.Load(filepath.Clean(writeFile(t, t.TempDir(), "tokenrelay.yaml", `
public_url: http://localhost:8080
provider: {issuer: "http://127.0.0.1:9", client_id: spa, claims: [sub, email]}
policy: {email_domains: [example.com]}
routes:
  - path: /api/
    upstream: "http://127.0.0.1:9"
    policy: {groups_claim: realm_access.roles, groups: [admin], expression: 'claims.tenant == "a"', step_up: {acr_values: [gold]}}
    identity: {headers: {X-Dept: department}}
`)), nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := providerOptions(cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"sub", "email", "email_verified", "realm_access", "tenant", "acr", "department"}
	if !slices.Equal(o.Claims, want) {
		t.Errorf("provider claims = %q, want %q", o.Claims, want)
	}
	if !slices.Equal(cfg.Provider.Claims, []string{"sub", "email"}) {
		t.Errorf("the configuration's provider.claims changed to %q", cfg.Provider.Claims)
	}
}
