package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/identity"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/proxy"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
	"github.com/tokenrelay/tokenrelay/session/redisstore"
)

// baseYAML is a small valid configuration the tests start from.
const baseYAML = `
public_url: https://app.example.com
provider:
  issuer: https://id.example.com
  client_id: spa
session:
  secret: "0123456789abcdef0123456789abcdef"
routes:
  - path: /api/
    upstream: http://127.0.0.1:3000
  - path: /
    upstream: http://127.0.0.1:5173
    auth: none
`

// memFiles is a readFile over an in-memory file system.
func memFiles(files map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		data, ok := files[name]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		return []byte(data), nil
	}
}

// problemLines returns the lines of a Problems error, or fails the test.
func problemLines(t *testing.T, err error) []string {
	t.Helper()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error = %v (%T), want Problems", err, err)
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return lines
}

func mustParse(t *testing.T, yaml string, environ ...string) (*Config, Warnings) {
	t.Helper()
	cfg, warnings, err := loader{readFile: memFiles(nil)}.load([]byte(yaml), environ)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return cfg, warnings
}

func ptr[T any](v T) *T { return &v }

func TestLoadDefaults(t *testing.T) {
	got, warnings := mustParse(t, baseYAML)
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none", warnings)
	}
	want := &Config{
		Listen:        ":8080",
		AdminListen:   "127.0.0.1:9090", // loopback only by default
		PublicURL:     "https://app.example.com",
		AuthPrefix:    "/.auth",
		ShutdownGrace: 25 * time.Second,
		Log:           LogConfig{Level: "info", Format: "json"},
		TLS: TLSConfig{
			Mode:       "none",
			ACME:       ACMEConfig{CA: "https://acme-v02.api.letsencrypt.org/directory", Challenges: []string{"http-01", "tls-alpn-01"}},
			HTTPListen: ":80",
		},
		Provider: idp.Options{
			Type:                "oidc",
			Issuer:              "https://id.example.com",
			ClientID:            "spa",
			AuthMethod:          "none",
			AuthMethodDefaulted: true,
			PAR:                 "auto",
			Scopes:              []string{"openid", "offline_access", "profile", "email"},
			AccessTokenLifetime: 5 * time.Minute,
			Timeout:             10 * time.Second,
			MaxResponseBytes:    1 << 20,
			ClockSkew:           new(time.Minute),
			Claims:              []string{"sub", "name", "email", "preferred_username"},
			Custom: idp.CustomOptions{
				RefreshRequest: idp.RequestTemplate{Method: "POST", Format: "json"},
				Mapping: idp.ResponseMapping{
					AccessToken:  "access_token",
					RefreshToken: "refresh_token",
					ExpiresIn:    "expires_in",
					IDToken:      "id_token",
				},
			},
			RedirectURL:         "https://app.example.com/.auth/callback",
			LogoutTokenMaxAge:   5 * time.Minute,
			JWKSRefreshInterval: time.Hour,
			JWKSRefreshCooldown: time.Minute,
			ReplayCacheSize:     10000,
		},
		Session: SessionConfig{
			Store:  "memory",
			Secret: "0123456789abcdef0123456789abcdef",
			LifetimeOptions: session.LifetimeOptions{
				IdleTimeout:   24 * time.Hour,
				MaxLifetime:   720 * time.Hour,
				LoginStateTTL: 10 * time.Minute,
			},
			Redis: redisstore.Options{
				KeyPrefix:    "tokenrelay:",
				DialTimeout:  2 * time.Second,
				ReadTimeout:  time.Second,
				WriteTimeout: time.Second,
				OpTimeout:    2 * time.Second,
				LocalCache:   ptr(true),
			},
		},
		Cookie: session.CookieOptions{Name: "__Host-tokenrelay", Secure: ptr(true), SameSite: "lax"},
		Refresh: RefreshConfig{
			RefreshOptions: session.RefreshOptions{
				Ahead:          60 * time.Second,
				Timeout:        10 * time.Second,
				LockTTL:        30 * time.Second,
				MinInterval:    30 * time.Second,
				FailureBackoff: 5 * time.Second,
			},
			RetryOptions: proxy.RetryOptions{RetryOn401: ptr(true), MaxRetryBody: 64 << 10},
		},
		CSRF:   proxy.CSRFOptions{Header: "X-CSRF"},
		Logout: proxy.LogoutOptions{PostLogoutRedirectURI: "https://app.example.com/", Revoke: ptr(true)},
		Upstream: proxy.UpstreamOptions{
			TransportOptions: proxy.TransportOptions{
				MaxIdleConnsPerHost:   256,
				IdleConnTimeout:       90 * time.Second,
				DialTimeout:           5 * time.Second,
				ResponseHeaderTimeout: 60 * time.Second,
			},
			BodyReadTimeout: 30 * time.Second,
		},
		Routes: []proxy.Route{
			{Name: "api", Path: "/api/", Upstream: "http://127.0.0.1:3000", Auth: "required", OnUnauthenticated: "auto", CSRFHeader: ptr(true), Token: "user"},
			{Name: "root", Path: "/", Upstream: "http://127.0.0.1:5173", Auth: "none", OnUnauthenticated: "auto", CSRFHeader: ptr(false), Token: "none"},
		},
		Assertion: identity.AssertionOptions{
			Header: "X-Tokenrelay-Assertion", Lifetime: time.Minute, Algorithm: "ES256",
			Rotation: 24 * time.Hour, PublishAhead: time.Hour,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if got, want := got.RedirectURL(), "https://app.example.com/.auth/callback"; got != want {
		t.Errorf("RedirectURL() = %q, want %q", got, want)
	}

	again := *got
	again.SetDefaults()
	if !reflect.DeepEqual(&again, got) {
		t.Errorf("SetDefaults is not idempotent")
	}
}

func TestDefaultsDependOnOtherKeys(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(c *Config) (got, want any)
	}{
		{
			name:  "insecure cookie drops the __Host- prefix",
			yaml:  baseYAML + "cookie: {secure: false}\n",
			check: func(c *Config) (any, any) { return c.Cookie.Name, "tokenrelay" },
		},
		{
			name:  "explicit cookie name is kept",
			yaml:  baseYAML + "cookie: {name: sid}\n",
			check: func(c *Config) (any, any) { return c.Cookie.Name, "sid" },
		},
		{
			name: "client secret makes client_secret_basic the default",
			yaml: strings.Replace(baseYAML, "client_id: spa", "client_id: spa\n  client_secret: s3cret", 1),
			check: func(c *Config) (any, any) {
				return c.Provider.AuthMethod, "client_secret_basic"
			},
		},
		{
			name:  "lock ttl follows refresh.timeout",
			yaml:  baseYAML + "refresh: {timeout: 20s}\n",
			check: func(c *Config) (any, any) { return c.Refresh.LockTTL, 60 * time.Second },
		},
		{
			name:  "trailing slash of public_url is dropped",
			yaml:  strings.Replace(baseYAML, "https://app.example.com", "https://app.example.com/", 1),
			check: func(c *Config) (any, any) { return c.RedirectURL(), "https://app.example.com/.auth/callback" },
		},
		{
			name:  "oauth2 gets no default scopes",
			yaml:  strings.Replace(baseYAML, "issuer: https://id.example.com", "type: oauth2\n  authorization_endpoint: https://a.example/auth\n  token_endpoint: https://a.example/token", 1),
			check: func(c *Config) (any, any) { return c.Provider.Scopes, []string(nil) },
		},
		{
			name: "route names derived from paths",
			yaml: strings.Replace(baseYAML, "path: /api/", "path: /API/v1-beta/", 1),
			check: func(c *Config) (any, any) {
				return []string{c.Routes[0].Name, c.Routes[1].Name}, []string{"api_v1_beta", "root"}
			},
		},
		{
			name: "capture method upper-cased and defaulted",
			yaml: `
provider:
  type: custom
  token_endpoint: https://x.example/auth/token
  custom:
    refresh_request: {body: {refreshToken: "{{refresh_token}}"}}
    token_response: {access_token: accessToken}
    capture: [{path: /auth/login}, {method: put, path: /auth/signup}]
session: {secret: "0123456789abcdef0123456789abcdef"}
routes: [{path: /, upstream: "http://127.0.0.1:1"}]
`,
			check: func(c *Config) (any, any) {
				return c.Provider.Custom.Capture, []idp.CaptureRoute{{Method: "POST", Path: "/auth/login"}, {Method: "PUT", Path: "/auth/signup"}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := mustParse(t, tt.yaml)
			got, want := tt.check(cfg)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v, want %#v", got, want)
			}
		})
	}
}

func TestLoadYAMLProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "unknown keys at every depth, with path and line",
			yaml: `listen: ":8080"
provider:
  client_sercet: x
  custom:
    token_response: {acces_token: a}
routes:
  - path: /
    upstrem: http://x
tsl: {}
`,
			want: []string{
				`provider.client_sercet: unknown key (line 3); did you mean "client_secret"?`,
				`provider.custom.token_response.acces_token: unknown key (line 5); did you mean "access_token"?`,
				`routes[0].upstrem: unknown key (line 8); did you mean "upstream"?`,
				`tsl: unknown key (line 9); did you mean "tls"?`,
			},
		},
		{
			name: "unknown key with no close match",
			yaml: "zzzzzzzz: 1\n",
			want: []string{"zzzzzzzz: unknown key (line 1)"},
		},
		{
			name: "durations must carry a unit",
			yaml: "refresh:\n  ahead: 60\n  timeout: 0\n  failure_backoff: \"5\"\nshutdown_grace: soon\nsession: {idle_timeout: [1h]}\n",
			want: []string{
				`refresh.ahead: 60 is a bare number; write a duration with a unit, such as "60s" (line 2)`,
				`refresh.timeout: 0 is a bare number; write a duration with a unit, such as "0s" (line 3)`,
				`refresh.failure_backoff: 5 is a bare number; write a duration with a unit, such as "5s" (line 4)`,
				`shutdown_grace: "soon" is not a duration; write one such as "60s", "5m" or "24h" (line 5)`,
				`session.idle_timeout: must be a duration such as "60s" (line 6)`,
			},
		},
		{
			name: "wrong types",
			yaml: `cookie: {secure: maybe}
routes: {path: /}
session:
  redis: {db: one, addresses: a}
provider:
  scopes: {a: b}
  auth_params: [x]
  custom: {dead_statuses: [a]}
log: info
`,
			want: []string{
				"cookie.secure: must be true or false (line 1)",
				"routes: must be a list (line 2)",
				"session.redis.db: must be an integer (line 4)",
				"session.redis.addresses: must be a list of strings (line 4)",
				"provider.scopes: must be a list of strings (line 6)",
				"provider.auth_params: must be a mapping of strings (line 7)",
				"provider.custom.dead_statuses: must be a list of integers (line 8)",
				"log: must be a mapping of keys (line 9)",
			},
		},
		{
			name: "duplicate keys",
			yaml: "listen: a\nlisten: b\nprovider:\n  auth_params: {x: 1, x: 2}\n",
			want: []string{
				"listen: duplicate key (lines 1 and 2)",
				"provider.auth_params.x: duplicate key (lines 4 and 4)",
			},
		},
		{
			name: "not a mapping",
			yaml: "- a\n- b\n",
			want: []string{"the file must be a YAML mapping of keys (line 1)"},
		},
		{
			name: "two documents",
			yaml: "listen: a\n---\nlisten: b\n",
			want: []string{"only one YAML document is allowed (another starts at line 2)"},
		},
		{
			name: "syntax error",
			yaml: "listen: [a\n",
			want: []string{"invalid YAML: line 1: did not find expected ',' or ']'"},
		},
		{
			name: "yaml problems and env problems together",
			yaml: "bogus: 1\n",
			want: []string{
				"bogus: unknown key (line 1)",
				"TOKENRELAY_BOGUS: unknown variable",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var environ []string
			if strings.HasPrefix(tt.name, "yaml problems and env") {
				environ = []string{"TOKENRELAY_BOGUS=1"}
			}
			_, _, err := loader{readFile: memFiles(nil)}.load([]byte(tt.yaml), environ)
			// The input problems come first; what validation says of the
			// keys that did load follows (TestLoadReportsEveryProblem).
			if got := problemLines(t, err); !hasPrefixLines(got, tt.want) {
				t.Errorf("problems:\n got %q\nwant first %q", got, tt.want)
			}
		})
	}
}

func TestLoadYAMLFeatures(t *testing.T) {
	// Anchors, aliases and merge keys are YAML, so they must work.
	yaml := `
x-upstream: &up
  upstream: http://127.0.0.1:3000
  auth: optional
public_url: https://app.example.com
provider: {issuer: "https://id.example.com", client_id: spa}
session: {secret: "0123456789abcdef0123456789abcdef"}
routes:
  - <<: *up
    path: /api/
`
	_, _, err := loader{readFile: memFiles(nil)}.load([]byte(yaml), nil)
	if got, want := problemLines(t, err), []string{`x-upstream: unknown key (line 2); did you mean "upstream"?`}; !reflect.DeepEqual(got, want) {
		t.Fatalf("problems = %q, want %q", got, want)
	}

	cfg, _ := mustParse(t, `
public_url: https://app.example.com
provider: {issuer: "https://id.example.com", client_id: spa}
session: {secret: "0123456789abcdef0123456789abcdef"}
routes:
  - &r {path: /api/, upstream: "http://127.0.0.1:3000", auth: optional}
  - <<: *r
    path: /
`)
	got := cfg.Routes[1]
	if got.Path != "/" || got.Upstream != "http://127.0.0.1:3000" || got.Auth != "optional" {
		t.Errorf("merged route = %+v, want path / with the merged upstream and auth", got)
	}
}

func TestLoadEmptyInputs(t *testing.T) {
	for _, yaml := range []string{"", "# only a comment\n", "~\n"} {
		_, _, err := loader{readFile: memFiles(nil)}.load([]byte(yaml), nil)
		// Nothing configured: the validation problems, not a parse error.
		got := problemLines(t, err)
		want := []string{
			"public_url: required: the redirect URI is public_url + \"/.auth/callback\"",
			"provider.issuer: required with provider.type oidc",
			"provider.client_id: required with provider.type oidc",
			"routes: at least one route is required",
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("load(%q) problems:\n got %q\nwant %q", yaml, got, want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	secretPath := filepath.Join(dir, "session-secret")
	if err := os.WriteFile(secretPath, []byte("0123456789abcdef0123456789abcdef-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(baseYAML, `secret: "0123456789abcdef0123456789abcdef"`, "secret_file: "+secretPath, 1)
	path := filepath.Join(dir, "tokenrelay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg, warnings, err := Load(path, []string{"HOME=/root", "TOKENRELAY_LISTEN=127.0.0.1:17080"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none", warnings)
	}
	if got, want := cfg.Session.Secret.Reveal(), "0123456789abcdef0123456789abcdef-from-file"; got != want {
		t.Errorf("session secret = %q, want %q", got, want)
	}
	if got, want := cfg.Listen, "127.0.0.1:17080"; got != want {
		t.Errorf("listen = %q, want %q", got, want)
	}

	_, _, err = Load(filepath.Join(dir, "missing.yaml"), nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "config: open ") {
		t.Errorf("Load(missing) error = %v, want a wrapped fs.ErrNotExist prefixed config:", err)
	}

	// No file at all: everything from the environment.
	cfg, _, err = Load("", []string{
		"TOKENRELAY_PUBLIC_URL=http://localhost:8080",
		"TOKENRELAY_PROVIDER_ISSUER=http://127.0.0.1:9000",
		"TOKENRELAY_PROVIDER_CLIENT_ID=spa",
		"TOKENRELAY_ROUTES_0_PATH=/",
		"TOKENRELAY_ROUTES_0_UPSTREAM=http://127.0.0.1:5173",
	})
	if err != nil {
		t.Fatalf("Load(\"\") from the environment: %v", err)
	}
	if got, want := cfg.Routes, []proxy.Route{{Name: "root", Path: "/", Upstream: "http://127.0.0.1:5173", Auth: "required", OnUnauthenticated: "auto", CSRFHeader: ptr(true), Token: "user"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("routes = %+v, want %+v", got, want)
	}
}

func TestSecretFiles(t *testing.T) {
	const s32 = "0123456789abcdef0123456789abcdef"
	files := map[string]string{
		"/s/client":   "client-secret\n",
		"/s/crlf":     "client-secret\r\n",
		"/s/two":      "client-secret\n\n",
		"/s/session":  s32 + "\n",
		"/s/old1":     s32 + "-old1\n",
		"/s/old2":     s32 + "-old2",
		"/s/redis":    "redis-pw\n",
		"/s/sentinel": "sentinel-pw",
		"/s/apikey":   "key-123\n",
		"/s/empty":    "\n",
	}
	const redisBase = `
public_url: https://app.example.com
routes: [{path: /, upstream: "http://127.0.0.1:1"}]
`
	const provider = `provider: {issuer: "https://id.example.com", client_id: spa}
`
	tests := []struct {
		name    string
		yaml    string
		check   func(c *Config) (got, want any)
		wantErr []string
	}{
		{
			name:  "client secret, one newline trimmed",
			yaml:  redisBase + "provider: {issuer: \"https://id.example.com\", client_id: spa, client_secret_file: /s/client}\n",
			check: func(c *Config) (any, any) { return c.Provider.ClientSecret, secret.String("client-secret") },
		},
		{
			name:  "CRLF counts as one newline",
			yaml:  redisBase + "provider: {issuer: \"https://id.example.com\", client_id: spa, client_secret_file: /s/crlf}\n",
			check: func(c *Config) (any, any) { return c.Provider.ClientSecret, secret.String("client-secret") },
		},
		{
			name:  "only one newline is trimmed",
			yaml:  redisBase + "provider: {issuer: \"https://id.example.com\", client_id: spa, client_secret_file: /s/two}\n",
			check: func(c *Config) (any, any) { return c.Provider.ClientSecret, secret.String("client-secret\n") },
		},
		{
			name: "session, previous, redis and sentinel secrets",
			yaml: redisBase + provider + `session:
  store: redis
  secret_file: /s/session
  previous_secret_files: [/s/old1, /s/old2]
  redis: {addresses: ["127.0.0.1:26379"], master_name: m, password_file: /s/redis, sentinel_password_file: /s/sentinel}
`,
			check: func(c *Config) (any, any) {
				s := c.Session
				return []secret.String{s.Secret, s.PreviousSecrets[0], s.PreviousSecrets[1], s.Redis.Password, s.Redis.SentinelPassword},
					[]secret.String{s32, s32 + "-old1", s32 + "-old2", "redis-pw", "sentinel-pw"}
			},
		},
		{
			name: "header files",
			yaml: `
provider:
  type: custom
  token_endpoint: https://x.example/auth/token
  custom:
    refresh_request:
      body: {refreshToken: "{{refresh_token}}"}
      headers: {X-Client: web}
      header_files: {X-Api-Key: /s/apikey}
    token_response: {access_token: accessToken}
routes: [{path: /, upstream: "http://127.0.0.1:1"}]
`,
			check: func(c *Config) (any, any) {
				return c.Provider.Custom.RefreshRequest.SecretHeaders, map[string]secret.String{"X-Api-Key": "key-123"}
			},
		},
		{
			name: "value and file together, missing and empty files: all reported",
			yaml: redisBase + `provider: {issuer: "https://id.example.com", client_id: spa, client_secret: x, client_secret_file: /s/client}
session:
  secret_file: /s/missing
  previous_secrets: [x]
  previous_secret_files: [/s/old1]
  redis: {password_file: /s/empty, sentinel_password: a, sentinel_password_file: /s/sentinel}
`,
			wantErr: []string{
				"provider.client_secret_file: cannot be used together with provider.client_secret",
				"session.secret_file: cannot read: open /s/missing: file does not exist",
				"session.redis.password_file: file /s/empty is empty",
				"session.redis.sentinel_password_file: cannot be used together with session.redis.sentinel_password",
				"session.previous_secret_files: cannot be used together with session.previous_secrets",
			},
		},
		{
			name: "a header in both headers and header_files",
			yaml: `
provider:
  type: custom
  custom:
    refresh_request:
      headers: {x-api-key: a}
      header_files: {X-Api-Key: /s/apikey}
`,
			wantErr: []string{"provider.custom.refresh_request.header_files.X-Api-Key: header also set in provider.custom.refresh_request.headers.x-api-key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := loader{readFile: memFiles(files)}.load([]byte(tt.yaml), nil)
			if tt.wantErr != nil {
				if got := problemLines(t, err); !hasPrefixLines(got, tt.wantErr) {
					t.Errorf("problems:\n got %q\nwant first %q", got, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			got, want := tt.check(cfg)
			if !reflect.DeepEqual(got, want) {
				// %#v of secret.String is redacted; compare revealed forms.
				t.Errorf("got %v, want %v", reveal(got), reveal(want))
			}
		})
	}
}

// reveal shows secrets in failure messages of this test only.
func reveal(v any) any {
	switch v := v.(type) {
	case secret.String:
		return v.Reveal()
	case []secret.String:
		out := make([]string, len(v))
		for i, s := range v {
			out[i] = s.Reveal()
		}
		return out
	case map[string]secret.String:
		out := map[string]string{}
		for k, s := range v {
			out[k] = s.Reveal()
		}
		return out
	}
	return v
}

func TestGenerateSecret(t *testing.T) {
	a, b := GenerateSecret(), GenerateSecret()
	if a == b {
		t.Fatal("two generated secrets are equal")
	}
	if got, want := len(a.Reveal()), 43; got != want {
		t.Errorf("len(secret) = %d, want %d (32 bytes in unpadded base64url)", got, want)
	}
	// The generated secret loads as the secret a redis store requires.
	yaml := `
public_url: https://app.example.com
provider: {issuer: "https://id.example.com", client_id: spa}
session: {store: redis, redis: {url: "redis://127.0.0.1:6379/0"}}
routes: [{path: /, upstream: "http://127.0.0.1:1"}]
`
	cfg, _ := mustParse(t, yaml, "TOKENRELAY_SESSION_SECRET="+a.Reveal())
	if cfg.Session.Secret != a {
		t.Errorf("loaded secret differs from the generated one")
	}
}

// hasPrefixLines reports whether got starts with want and none of the lines
// after it repeats a key path of want.
func hasPrefixLines(got, want []string) bool {
	if len(got) < len(want) || !reflect.DeepEqual(got[:len(want)], want) {
		return false
	}
	for _, extra := range got[len(want):] {
		for _, w := range want {
			if path, _, ok := strings.Cut(w, ": "); ok && strings.HasPrefix(extra, path+": ") {
				return false
			}
		}
	}
	return true
}

// TestLoadReportsEveryProblem: a file with bad keys or values is still
// loaded as far as it goes, so one run lists the input problems and what
// validation finds in the rest, and a refused key is not reported twice.
func TestLoadReportsEveryProblem(t *testing.T) {
	yaml := `
listen: ":x"
bogus: 1
public_url: "ftp://app.example"
provider:
  issuer: [not, a, string]
  client_id: spa
refresh:
  ahead: 60
routes:
  - {path: api, upstream: "nope"}
  - {path: /x/, upstream: "http://127.0.0.1:1", auth: sometimes}
`
	_, _, err := loader{readFile: memFiles(nil)}.load([]byte(yaml), []string{"TOKENRELAY_LISTEN_TYPO=1"})
	want := []string{
		`bogus: unknown key (line 3)`,
		`provider.issuer: must be a string (line 6)`,
		`refresh.ahead: 60 is a bare number; write a duration with a unit, such as "60s" (line 9)`,
		`TOKENRELAY_LISTEN_TYPO: unknown variable`,
	}
	got := problemLines(t, err)
	if !hasPrefixLines(got, want) {
		t.Fatalf("problems:\n got %q\nwant first %q", got, want)
	}
	rest := strings.Join(got[len(want):], "\n")
	for _, path := range []string{"listen: ", "public_url: ", "routes[0].path: ", "routes[0].upstream: ", "routes[1].auth: "} {
		if !strings.Contains(rest, path) {
			t.Errorf("validation problems lack %q; got:\n%s", path, rest)
		}
	}
}
