package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/tokenrelay/tokenrelay/config"
)

// runCmd runs the CLI in-process and returns exit code, stdout and stderr.
func runCmd(t *testing.T, environ []string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr, environ)
	return code, stdout.String(), stderr.String()
}

func TestVersion(t *testing.T) {
	code, stdout, stderr := runCmd(t, nil, "version")
	want := "tokenrelay dev " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	if code != 0 || stdout != want || stderr != "" {
		t.Errorf("version = %d, %q, %q; want 0, %q, \"\"", code, stdout, stderr, want)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // prefix
		wantStderr string // prefix
	}{
		{"unknown command", []string{"frobnicate"}, 2, "", `tokenrelay: unknown command "frobnicate"`},
		{"help", []string{"help"}, 0, "tokenrelay — OAuth2/OIDC token handler", ""},
		{"bad flag", []string{"check-config", "--nope"}, 2, "", "flag provided but not defined: -nope"},
		{"flag -h", []string{"gen-secret", "-h"}, 0, "", "Usage of gen-secret"},
		{"stray argument", []string{"version", "extra"}, 2, "", `tokenrelay version: unexpected argument "extra"`},
		{"serve flag without command", []string{"--config", "/nonexistent/tokenrelay.yaml"}, 2, "", "tokenrelay: config: open /nonexistent/tokenrelay.yaml: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, nil, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if !strings.HasPrefix(stdout, tt.wantStdout) || (tt.wantStdout == "" && stdout != "") {
				t.Errorf("stdout = %q, want prefix %q", stdout, tt.wantStdout)
			}
			if !strings.HasPrefix(stderr, tt.wantStderr) || (tt.wantStderr == "" && stderr != "") {
				t.Errorf("stderr = %q, want prefix %q", stderr, tt.wantStderr)
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	valid := writeFile(t, dir, "valid.yaml", minimalYAML)
	secretFile := writeFile(t, dir, "secret", "0123456789abcdef0123456789abcdef\n")
	noWarnings := writeFile(t, dir, "quiet.yaml", minimalYAML+"session: {secret_file: "+secretFile+"}\n")
	invalid := writeFile(t, dir, "invalid.yaml", `
listen: nope
provider: {issuer: "http://id.example.com", client_id: x, clientsecret: y}
routes: [{path: api, upstream: "http://127.0.0.1:1"}]
`)
	semantic := writeFile(t, dir, "semantic.yaml", `
public_url: https://app.example.com
provider: {issuer: "http://id.example.com"}
session: {store: redis, redis: {url: "redis://127.0.0.1:6379"}}
routes: [{path: api, upstream: "127.0.0.1:1"}]
`)

	tests := []struct {
		name       string
		args       []string
		environ    []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{
			name:     "valid with warnings",
			args:     []string{"check-config", "--config", valid},
			wantCode: 0,
			wantStdout: "config OK\n" +
				"warning: session.secret: not set: a random secret is generated at start, and sessions end with the process\n",
		},
		{
			name:       "valid without warnings",
			args:       []string{"check-config", "-config", noWarnings},
			wantCode:   0,
			wantStdout: "config OK\n",
		},
		{
			name:     "unknown key and unknown variable",
			args:     []string{"check-config", "--config", invalid},
			environ:  []string{"TOKENRELAY_LISTN=:1"},
			wantCode: 2,
			// The input problems first, then what validation finds in the
			// keys that did load.
			wantStderr: invalid + " is invalid (6 problems):\n" +
				`  provider.clientsecret: unknown key (line 3); did you mean "client_secret"?` + "\n" +
				"  TOKENRELAY_LISTN: unknown variable; did you mean TOKENRELAY_LISTEN?\n" +
				`  listen: must be host:port or :port (got "nope")` + "\n" +
				`  public_url: required: the redirect URI is public_url + "/.auth/callback"` + "\n" +
				"  provider.issuer: must be an https URL (http allowed only for loopback)\n" +
				`  routes[0].path: must be a path starting with "/"` + "\n",
		},
		{
			name:     "every validation problem at once",
			args:     []string{"check-config", "--config", semantic},
			wantCode: 2,
			wantStderr: semantic + " is invalid (5 problems):\n" +
				"  provider.issuer: must be an https URL (http allowed only for loopback)\n" +
				"  provider.client_id: required with provider.type oidc\n" +
				"  session.secret: required with store redis\n" +
				`  routes[0].path: must be a path starting with "/"` + "\n" +
				"  routes[0].upstream: must be an http or https URL\n",
		},
		{
			// A pod with service links in a namespace with Services named
			// tokenrelay and tokenrelay-redis.
			name: "Kubernetes service links",
			args: []string{"check-config", "-config", noWarnings},
			environ: []string{
				"TOKENRELAY_SERVICE_HOST=10.96.0.10",
				"TOKENRELAY_SERVICE_PORT=8080",
				"TOKENRELAY_SERVICE_PORT_TOKENRELAY=8080",
				"TOKENRELAY_PORT=tcp://10.96.0.10:8080",
				"TOKENRELAY_PORT_8080_TCP=tcp://10.96.0.10:8080",
				"TOKENRELAY_PORT_8080_TCP_PROTO=tcp",
				"TOKENRELAY_PORT_8080_TCP_PORT=8080",
				"TOKENRELAY_PORT_8080_TCP_ADDR=10.96.0.10",
				"TOKENRELAY_REDIS_SERVICE_HOST=10.96.0.11",
				"TOKENRELAY_REDIS_PORT_6379_TCP_ADDR=10.96.0.11",
			},
			wantCode:   0,
			wantStdout: "config OK\n",
		},
		{
			name:       "service links do not hide a misspelt variable",
			args:       []string{"check-config", "-config", noWarnings},
			environ:    []string{"TOKENRELAY_SERVICE_HOST=10.96.0.10", "TOKENRELAY_REFRESH_AHEDA=30s"},
			wantCode:   2,
			wantStderr: noWarnings + " is invalid (1 problem):\n  TOKENRELAY_REFRESH_AHEDA: unknown variable; did you mean TOKENRELAY_REFRESH_AHEAD?\n",
		},
		{
			name:       "missing file",
			args:       []string{"check-config", "--config", dir + "/missing.yaml"},
			wantCode:   2,
			wantStderr: "tokenrelay: config: open " + dir + "/missing.yaml: no such file or directory\n",
		},
		{
			name: "environment only",
			args: []string{"check-config", "--config", ""},
			environ: []string{
				"TOKENRELAY_PUBLIC_URL=https://app.example.com",
				"TOKENRELAY_PROVIDER_ISSUER=https://id.example.com",
				"TOKENRELAY_PROVIDER_CLIENT_ID=spa",
				"TOKENRELAY_SESSION_SECRET=0123456789abcdef0123456789abcdef",
				"TOKENRELAY_ROUTES_0_PATH=/",
				"TOKENRELAY_ROUTES_0_UPSTREAM=http://127.0.0.1:3000",
			},
			wantCode:   0,
			wantStdout: "config OK\n",
		},
		{
			name:       "environment only, invalid",
			args:       []string{"check-config", "--config="},
			wantCode:   2,
			wantStderr: "configuration (environment) is invalid (4 problems):\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tt.environ, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d", code, tt.wantCode)
			}
			if stdout != tt.wantStdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, tt.wantStdout)
			}
			if tt.name == "environment only, invalid" {
				stderr = stderr[:strings.Index(stderr, "\n")+1]
			}
			if stderr != tt.wantStderr {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr, tt.wantStderr)
			}
		})
	}
}

func TestGenSecret(t *testing.T) {
	code, first, stderr := runCmd(t, nil, "gen-secret")
	if code != 0 || stderr != "" {
		t.Fatalf("gen-secret = %d, stderr %q", code, stderr)
	}
	_, second, _ := runCmd(t, nil, "gen-secret")
	if first == second {
		t.Errorf("two gen-secret runs printed the same secret")
	}
	if got, want := len(first), 44; got != want { // 43 characters and a newline
		t.Errorf("len(output) = %d, want %d", got, want)
	}

	// The output, saved to a file as-is (with its newline), is a session
	// secret a Redis configuration accepts.
	dir := t.TempDir()
	secretFile := writeFile(t, dir, "session-secret", first)
	path := writeFile(t, dir, "redis.yaml", minimalYAML+`session:
  store: redis
  secret_file: `+secretFile+`
  redis: {url: "redis://127.0.0.1:6379/0"}
`)
	if code, stdout, stderr := runCmd(t, nil, "check-config", "--config", path); code != 0 || stdout != "config OK\n" {
		t.Errorf("check-config with the generated secret = %d, %q, %q; want 0, \"config OK\\n\"", code, stdout, stderr)
	}
	cfg, _, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Session.Secret.Reveal(), strings.TrimSuffix(first, "\n"); got != want {
		t.Errorf("loaded secret %q, want the generated %q", got, want)
	}
}

func TestHealthcheck(t *testing.T) {
	var gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		if r.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + closed.Addr().String() + "/healthz"
	closed.Close()

	tests := []struct {
		name       string
		url        string
		wantCode   int
		wantStderr string
	}{
		{"healthy", srv.URL + "/healthz", 0, ""},
		{"unhealthy", srv.URL + "/readyz", 1, "healthcheck: " + srv.URL + "/readyz answered 503 Service Unavailable\n"},
		{"refused", refused, 1, "healthcheck: Get \"" + refused + "\": dial tcp " + strings.TrimSuffix(strings.TrimPrefix(refused, "http://"), "/healthz") + ": connect: connection refused\n"},
		{"bad url", "http://[::1", 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, nil, "healthcheck", "--url", tt.url)
			if code != tt.wantCode || stdout != "" {
				t.Errorf("healthcheck = %d, stdout %q; want %d, \"\"", code, stdout, tt.wantCode)
			}
			if tt.wantStderr != "" && stderr != tt.wantStderr {
				t.Errorf("stderr = %q, want %q", stderr, tt.wantStderr)
			}
		})
	}
	if gotPath != "/readyz" {
		t.Errorf("last path seen = %q, want /readyz", gotPath)
	}
}
