package main

import (
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/config"
)

// TestBuildAppRefusedByProxy: when the provider loads but the proxy refuses
// the configuration, buildApp fails at start with the proxy's reason,
// instead of answering 503 and retrying forever (each retry then failing on
// the session metrics already registered).
func TestBuildAppRefusedByProxy(t *testing.T) {
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
routes: [{path: /api/, upstream: "http://127.0.0.1:9"}]
`)
	tests := []struct {
		name    string
		mutate  func(*config.Config)
		wantErr string // "" = builds
	}{
		{"valid", func(*config.Config) {}, ""},
		// Validation refuses this name; a config that bypassed it must
		// still fail loudly.
		{"reserved route name", func(c *config.Config) { c.Routes[0].Name = "auth" }, `routes[0].name: "auth" is reserved`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := config.Load(filepath.Clean(path), nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.mutate(cfg)
			app, err := buildApp(t.Context(), cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("buildApp: %v", err)
				}
				defer app.Close()
				if err := app.Ready(t.Context()); err != nil {
					t.Errorf("Ready = %v, want nil", err)
				}
				return
			}
			if app != nil || !errors.Is(err, errBuild) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("buildApp = %v, %v; want no app and an errBuild error containing %q", app, err, tt.wantErr)
			}
		})
	}
}
