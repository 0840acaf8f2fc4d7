package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/problem"
	"github.com/tokenrelay/tokenrelay/secret"

	"github.com/tokenrelay/tokenrelay/proxy"
)

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		check   func(c *Config) (got, want any)
	}{
		{
			name:    "top-level string",
			environ: []string{"TOKENRELAY_LISTEN=127.0.0.1:17080"},
			check:   func(c *Config) (any, any) { return c.Listen, "127.0.0.1:17080" },
		},
		{
			name:    "nested key with underscores",
			environ: []string{"TOKENRELAY_PROVIDER_CLIENT_ID=web"},
			check:   func(c *Config) (any, any) { return c.Provider.ClientID, "web" },
		},
		{
			name:    "two levels deep",
			environ: []string{"TOKENRELAY_SESSION_STORE=redis", "TOKENRELAY_SESSION_REDIS_URL=redis://127.0.0.1:17379/0"},
			check: func(c *Config) (any, any) {
				return []string{c.Session.Store, c.Session.Redis.URL}, []string{"redis", "redis://127.0.0.1:17379/0"}
			},
		},
		{
			name:    "duration",
			environ: []string{"TOKENRELAY_REFRESH_AHEAD=90s"},
			check:   func(c *Config) (any, any) { return c.Refresh.Ahead, 90 * time.Second },
		},
		{
			name:    "list, comma separated and trimmed",
			environ: []string{"TOKENRELAY_PROVIDER_SCOPES=openid, offline_access ,email"},
			check: func(c *Config) (any, any) {
				return c.Provider.Scopes, []string{"openid", "offline_access", "email"}
			},
		},
		{
			name: "list of integers",
			environ: []string{
				"TOKENRELAY_PROVIDER_CUSTOM_DEAD_STATUSES=400,401",
				// dead_statuses is a custom backend's setting.
				"TOKENRELAY_PROVIDER_TYPE=custom",
				"TOKENRELAY_PROVIDER_TOKEN_ENDPOINT=https://api.example.com/auth/token",
				"TOKENRELAY_PROVIDER_CUSTOM_REFRESH_REQUEST_BODY=refreshToken={{refresh_token}}",
				"TOKENRELAY_PROVIDER_CUSTOM_TOKEN_RESPONSE_ACCESS_TOKEN=accessToken",
			},
			check: func(c *Config) (any, any) { return c.Provider.Custom.DeadStatuses, []int{400, 401} },
		},
		{
			name:    "map replaces the file's map",
			environ: []string{"TOKENRELAY_PROVIDER_AUTH_PARAMS=prompt=consent, audience=https://api.example/?a=b"},
			check: func(c *Config) (any, any) {
				return c.Provider.AuthParams, map[string]string{"prompt": "consent", "audience": "https://api.example/?a=b"}
			},
		},
		{
			name:    "empty map value clears the map",
			environ: []string{"TOKENRELAY_PROVIDER_AUTH_PARAMS="},
			check:   func(c *Config) (any, any) { return c.Provider.AuthParams, map[string]string{} },
		},
		{
			name:    "route field by index",
			environ: []string{"TOKENRELAY_ROUTES_0_UPSTREAM=http://127.0.0.1:4000", "TOKENRELAY_ROUTES_1_AUTH=optional"},
			check: func(c *Config) (any, any) {
				return []string{c.Routes[0].Upstream, c.Routes[0].Path, string(c.Routes[1].Auth)},
					[]string{"http://127.0.0.1:4000", "/api/", "optional"}
			},
		},
		{
			name:    "route index past the end adds a route",
			environ: []string{"TOKENRELAY_ROUTES_2_PATH=/admin/", "TOKENRELAY_ROUTES_2_UPSTREAM=http://127.0.0.1:4001", "TOKENRELAY_ROUTES_2_STRIP_PREFIX=true"},
			check: func(c *Config) (any, any) {
				return c.Routes[2], proxy.Route{Name: "admin", Path: "/admin/", Upstream: "http://127.0.0.1:4001", Auth: "required",
					OnUnauthenticated: "auto", CSRFHeader: ptr(true), StripPrefix: true, Token: "user"}
			},
		},
		{
			name:    "optional bool",
			environ: []string{"TOKENRELAY_ROUTES_0_CSRF_HEADER=false", "TOKENRELAY_REFRESH_RETRY_ON_401=0"},
			check: func(c *Config) (any, any) {
				return []bool{*c.Routes[0].CSRFHeader, *c.Refresh.RetryOn401}, []bool{false, false}
			},
		},
		{
			name:    "secret",
			environ: []string{"TOKENRELAY_SESSION_SECRET=abcdefghijklmnopqrstuvwxyz0123456789"},
			check: func(c *Config) (any, any) {
				return c.Session.Secret.Reveal(), "abcdefghijklmnopqrstuvwxyz0123456789"
			},
		},
		{
			name:    "integer",
			environ: []string{"TOKENRELAY_UPSTREAM_MAX_IDLE_CONNS_PER_HOST=512"},
			check:   func(c *Config) (any, any) { return c.Upstream.MaxIdleConnsPerHost, 512 },
		},
		{
			name:    "other variables are ignored",
			environ: []string{"PATH=/bin", "TOKENRELAY=1", "tokenrelay_listen=x", "NOEQUALS"},
			check:   func(c *Config) (any, any) { return c.Listen, ":8080" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := mustParse(t, baseYAML, tt.environ...)
			got, want := tt.check(cfg)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v, want %#v", got, want)
			}
		})
	}
}

func TestEnvProblems(t *testing.T) {
	environ := []string{
		"TOKENRELAY_PROVIDER_CLIENTID=x",
		"TOKENRELAY_REFRESH_AHEAD=60",
		"TOKENRELAY_REFRESH_TIMEOUT=soon",
		"TOKENRELAY_COOKIE_SECURE=yes",
		"TOKENRELAY_PROVIDER_AUTH_PARAMS=prompt",
		"TOKENRELAY_UPSTREAM_MAX_IDLE_CONNS_PER_HOST=many",
		"TOKENRELAY_PROVIDER_CUSTOM_DEAD_STATUSES=400,x",
		"TOKENRELAY_ROUTES_100_PATH=/",
		"TOKENRELAY_ROUTES_01_PATH=/",
		"TOKENRELAY_ROUTES_PATH=/",
		"TOKENRELAY_ROUTES_0=/",
		"TOKENRELAY_SESSION=x",
		"TOKENRELAY_SESSION_SECRET_=x",
		"TOKENRELAY_ROUTES_0_UPSTREAM=http://127.0.0.1:1",
	}
	_, _, err := loader{readFile: memFiles(nil)}.load([]byte(baseYAML), environ)
	want := []string{
		`TOKENRELAY_COOKIE_SECURE: "yes" is not true or false`,
		`TOKENRELAY_PROVIDER_AUTH_PARAMS: item "prompt" is not key=value (write k=v,k2=v2)`,
		"TOKENRELAY_PROVIDER_CLIENTID: unknown variable; did you mean TOKENRELAY_PROVIDER_CLIENT_ID?",
		`TOKENRELAY_PROVIDER_CUSTOM_DEAD_STATUSES: item 1: "x" is not an integer`,
		`TOKENRELAY_REFRESH_AHEAD: 60 is a bare number; write a duration with a unit, such as "60s"`,
		`TOKENRELAY_REFRESH_TIMEOUT: "soon" is not a duration; write one such as "60s", "5m" or "24h"`,
		"TOKENRELAY_ROUTES_0: unknown variable",
		"TOKENRELAY_ROUTES_01_PATH: unknown variable",
		"TOKENRELAY_ROUTES_100_PATH: unknown variable",
		"TOKENRELAY_ROUTES_PATH: unknown variable",
		"TOKENRELAY_SESSION: unknown variable",
		"TOKENRELAY_SESSION_SECRET_: unknown variable; did you mean TOKENRELAY_SESSION_SECRET?",
		`TOKENRELAY_UPSTREAM_MAX_IDLE_CONNS_PER_HOST: "many" is not an integer`,
	}
	if got := problemLines(t, err); !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n got %q\nwant %q", got, want)
	}
}

// TestEnvVarsResolve proves the generated names are unique and that each
// one resolves to the field it was generated from and can be set, so the
// mapping cannot drift from the struct.
func TestEnvVarsResolve(t *testing.T) {
	names := EnvVars()
	if got, min := len(names), 100; got < min {
		t.Fatalf("EnvVars() has %d names, want at least %d", got, min)
	}
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			t.Errorf("EnvVars() lists %s twice", name)
		}
		seen[name] = true

		concrete := strings.ReplaceAll(name, "<n>", "3")
		steps, path, ok := resolveEnv(reflect.TypeFor[Config](), strings.TrimPrefix(concrete, envPrefix))
		if !ok {
			t.Errorf("%s does not resolve", concrete)
			continue
		}
		// The YAML path, upper-cased and flattened, gives the name back.
		flat := strings.NewReplacer(".", "_", "[", "_", "]", "").Replace(strings.ToUpper(path))
		if got := envPrefix + flat; got != concrete {
			t.Errorf("%s resolves to %s, which names %s", concrete, path, got)
		}
		var cfg Config
		field := walkSteps(reflect.ValueOf(&cfg).Elem(), steps)
		if err := setFromEnv(field, sampleValue(field.Type())); err != nil {
			t.Errorf("%s: setting a sample value: %v", concrete, err)
		}
		if field.IsZero() {
			t.Errorf("%s: field still zero after setting a sample value", concrete)
		}
	}
}

func sampleValue(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		return "1s"
	case t.Kind() == reflect.Bool:
		return "true"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "7"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Int:
		return "1,2"
	case t.Kind() == reflect.Map:
		return "k=v"
	}
	return "x"
}

func TestEnvSecretsStayRedacted(t *testing.T) {
	cfg, _ := mustParse(t, baseYAML, "TOKENRELAY_PROVIDER_CLIENT_SECRET=hunter2-client", "TOKENRELAY_PROVIDER_AUTH_METHOD=client_secret_post")
	if got, want := cfg.Provider.ClientSecret, secret.String("hunter2-client"); got != want {
		t.Fatalf("client secret not set from the environment")
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(verb, cfg); strings.Contains(s, "hunter2") {
			t.Errorf("Sprintf(%q, cfg) leaks the client secret", verb)
		}
	}
}

// TestEnvServiceLinks: the variables Kubernetes injects for Services named
// tokenrelay or tokenrelay-<x> are ignored with a debug note each, while a
// name of the same shape with a value Kubernetes would not write, and a
// misspelt key, are still problems.
func TestEnvServiceLinks(t *testing.T) {
	links := []string{
		"TOKENRELAY_SERVICE_HOST=10.96.0.10",
		"TOKENRELAY_SERVICE_PORT=8080",
		"TOKENRELAY_SERVICE_PORT_HTTP=8080",
		"TOKENRELAY_SERVICE_PORT_TOKENRELAY_ADM=9090",
		"TOKENRELAY_PORT=tcp://10.96.0.10:8080",
		"TOKENRELAY_PORT_8080_TCP=tcp://10.96.0.10:8080",
		"TOKENRELAY_PORT_8080_TCP_PROTO=tcp",
		"TOKENRELAY_PORT_8080_TCP_PORT=8080",
		"TOKENRELAY_PORT_8080_TCP_ADDR=10.96.0.10",
		"TOKENRELAY_PORT_5353_UDP=udp://10.96.0.10:5353",
		"TOKENRELAY_PORT_9000_SCTP_PROTO=sctp",
		"TOKENRELAY_REDIS_SERVICE_HOST=10.96.0.11",
		"TOKENRELAY_REDIS_SERVICE_PORT_REDIS=6379",
		"TOKENRELAY_REDIS_PORT=tcp://10.96.0.11:6379",
		"TOKENRELAY_REDIS_PORT_6379_TCP=tcp://10.96.0.11:6379",
		"TOKENRELAY_REDIS_PORT_6379_TCP_ADDR=10.96.0.11",
		"TOKENRELAY_ADMIN_PORT_6379_TCP_PORT=6379", // a Service named tokenrelay-admin
		"TOKENRELAY_V6_SERVICE_HOST=fd00:10:96::a",
		"TOKENRELAY_V6_PORT=tcp://[fd00:10:96::a]:8080",
	}
	cfg, warnings, err := loader{readFile: memFiles(nil)}.load([]byte(baseYAML), links)
	if err != nil {
		t.Fatalf("service links refused: %v", err)
	}
	var ignored []string
	for _, w := range warnings {
		if w.Severity == problem.Debug {
			ignored = append(ignored, w.Path)
		}
	}
	if len(ignored) != len(links) {
		t.Errorf("ignored %d variables with a debug note (%q), want all %d", len(ignored), ignored, len(links))
	}
	if cfg.Listen != ":8080" || cfg.AdminListen != DefaultAdminListen {
		t.Errorf("a service link changed the configuration: listen %q admin_listen %q", cfg.Listen, cfg.AdminListen)
	}

	// Same shapes, values Kubernetes does not write, and misspelt keys:
	// every one is reported.
	bad := []string{
		"TOKENRELAY_SERVICE_HOST=tokenrelay.apps.svc",
		"TOKENRELAY_SERVICE_PORT=http",
		"TOKENRELAY_SERVICE_PORT_HTTP=0",
		"TOKENRELAY_PORT=8080",
		"TOKENRELAY_REDIS_PORT=redis://10.96.0.11:6379",
		"TOKENRELAY_PORT_8080_TCP=tcp://10.96.0.10:9090",
		"TOKENRELAY_PORT_8080_TCP_PROTO=udp",
		"TOKENRELAY_PORT_8080_TCP_PORT=80",
		"TOKENRELAY_PORT_8080_TCP_ADDR=localhost",
		"TOKENRELAY_PORT_8080_HTTP=tcp://10.96.0.10:8080",
		"TOKENRELAY_LISTEN_PORT=8080",
		"TOKENRELAY_PROVIDER_CLIENTID=web",
	}
	_, _, err = loader{readFile: memFiles(nil)}.load([]byte(baseYAML), append(links, bad...))
	got := problemLines(t, err)
	if len(got) != len(bad) {
		t.Fatalf("problems:\n%s\nwant one per bad variable (%d)", strings.Join(got, "\n"), len(bad))
	}
	for _, line := range got {
		if !strings.Contains(line, "unknown variable") {
			t.Errorf("problem %q, want unknown variable", line)
		}
	}
}

// TestEnvKeysBeatServiceLinks: a variable that names a configuration key is
// set, whatever its value looks like; only unknown names can be links.
func TestEnvKeysBeatServiceLinks(t *testing.T) {
	for _, name := range EnvVars() {
		for _, value := range []string{"10.96.0.10", "8080", "tcp://10.96.0.10:8080", "tcp"} {
			concrete := strings.ReplaceAll(name, "<n>", "0")
			var cfg Config
			if _, notes := applyEnv(&cfg, []string{concrete + "=" + value}); len(notes) != 0 {
				t.Errorf("%s=%s was taken for a service link", concrete, value)
			}
		}
	}
}
