package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
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
			name:    "list of integers",
			environ: []string{"TOKENRELAY_PROVIDER_CUSTOM_DEAD_STATUSES=400,401"},
			check:   func(c *Config) (any, any) { return c.Provider.Custom.DeadStatuses, []int{400, 401} },
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
				return []string{c.Routes[0].Upstream, c.Routes[0].Path, c.Routes[1].Auth},
					[]string{"http://127.0.0.1:4000", "/api/", "optional"}
			},
		},
		{
			name:    "route index past the end adds a route",
			environ: []string{"TOKENRELAY_ROUTES_2_PATH=/admin/", "TOKENRELAY_ROUTES_2_UPSTREAM=http://127.0.0.1:4001", "TOKENRELAY_ROUTES_2_STRIP_PREFIX=true"},
			check: func(c *Config) (any, any) {
				return c.Routes[2], Route{Name: "admin", Path: "/admin/", Upstream: "http://127.0.0.1:4001", Auth: "required",
					OnUnauthenticated: "auto", CSRFHeader: ptr(true), StripPrefix: true}
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
		steps, path, ok := resolveEnv(reflect.TypeFor[Config](), strings.TrimPrefix(concrete, EnvPrefix))
		if !ok {
			t.Errorf("%s does not resolve", concrete)
			continue
		}
		// The YAML path, upper-cased and flattened, gives the name back.
		flat := strings.NewReplacer(".", "_", "[", "_", "]", "").Replace(strings.ToUpper(path))
		if got := EnvPrefix + flat; got != concrete {
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
	switch {
	case t == durationType:
		return "1s"
	case t == boolPtr, t.Kind() == reflect.Bool:
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
