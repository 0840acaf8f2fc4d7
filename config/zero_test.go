package config

import (
	"fmt"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// effective returns the value of key (a dotted path, "routes.0.x" for a
// list item) in cfg as YAML prints it, so the test reads values whatever
// Go type holds them.
func effective(t *testing.T, cfg *Config, key string) string {
	t.Helper()
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	for _, k := range strings.Split(key, ".") {
		switch node := v.(type) {
		case map[string]any:
			v = node[k]
		case []any:
			var i int
			fmt.Sscan(k, &i)
			v = node[i]
		default:
			t.Fatalf("%s: no %q in %v", key, k, v)
		}
	}
	return fmt.Sprint(v)
}

// TestZeroValuesThatMeanSomething pins every option whose zero value is a
// setting of its own rather than "unset": written explicitly, the zero
// survives Load, from the file or the environment (it is not replaced by
// the default), and left out, the key gets its default. provider.clock_skew: 0s used to become 1m, although the
// identity provider package documents 0 as "no skew".
func TestZeroValuesThatMeanSomething(t *testing.T) {
	tests := []struct {
		key         string // dotted path in the effective configuration
		set         string // YAML that sets the zero, added to baseYAML's sections
		wantZero    string
		wantDefault string
	}{
		{"provider.clock_skew", "provider: {clock_skew: 0s}", "0s", "1m0s"},
		{"refresh.reuse_grace", "refresh: {reuse_grace: 0s}", "0s", "0s"},
		{"shutdown_delay", "shutdown_delay: 0s", "0s", "0s"},
		{"upstream.flush_interval", "upstream: {flush_interval: 0s}", "0s", "0s"},
		{"upstream.max_request_body", "upstream: {max_request_body: 0}", "0", "0"},
		{"session.redis.db", "session: {redis: {db: 0}}", "0", "0"},
		{"session.redis.pool_size", "session: {redis: {pool_size: 0}}", "0", "0"},
		{"cookie.secure", "cookie: {secure: false}", "false", "true"},
		{"refresh.retry_on_401", "refresh: {retry_on_401: false}", "false", "true"},
		{"logout.revoke", "logout: {revoke: false}", "false", "true"},
		{"routes.0.csrf_header", "routes: [{path: /api/, upstream: 'http://127.0.0.1:3000', csrf_header: false}]", "false", "true"},
		{"routes.0.strip_prefix", "routes: [{path: /api/, upstream: 'http://127.0.0.1:3000', strip_prefix: false}]", "false", "false"},
		{"routes.0.pass_host", "routes: [{path: /api/, upstream: 'http://127.0.0.1:3000', pass_host: false}]", "false", "false"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			def, _ := mustParse(t, baseYAML)
			if got := effective(t, def, tt.key); got != tt.wantDefault {
				t.Errorf("%s left out = %s, want the default %s", tt.key, got, tt.wantDefault)
			}
			zero, _ := mustParse(t, mergeYAML(t, baseYAML, tt.set))
			if got := effective(t, zero, tt.key); got != tt.wantZero {
				t.Errorf("%s set to its zero = %s, want %s", tt.key, got, tt.wantZero)
			}
			env := envPrefix + strings.ToUpper(strings.ReplaceAll(tt.key, ".", "_")) + "=" + tt.wantZero
			fromEnv, _ := mustParse(t, baseYAML, env)
			if got := effective(t, fromEnv, tt.key); got != tt.wantZero {
				t.Errorf("%s = %s, want %s", env, got, tt.wantZero)
			}
		})
	}
}

// mergeYAML returns base with the top-level keys of extra merged in, one
// level deep: a mapping in extra adds to (or replaces keys of) the same
// mapping in base; anything else replaces base's value.
func mergeYAML(t *testing.T, base, extra string) string {
	t.Helper()
	var b, e map[string]any
	if err := yaml.Unmarshal([]byte(base), &b); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(extra), &e); err != nil {
		t.Fatal(err)
	}
	for k, v := range e {
		bm, ok1 := b[k].(map[string]any)
		em, ok2 := v.(map[string]any)
		if !ok1 || !ok2 {
			b[k] = v
			continue
		}
		for kk, vv := range em {
			if inner, ok := vv.(map[string]any); ok {
				if binner, ok := bm[kk].(map[string]any); ok {
					for k3, v3 := range inner {
						binner[k3] = v3
					}
					continue
				}
			}
			bm[kk] = vv
		}
	}
	out, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
