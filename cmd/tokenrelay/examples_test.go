package main

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tokenrelay/tokenrelay/config"
)

// exampleSecretRE matches the secret file paths the examples reference
// (where a Kubernetes Secret would be mounted).
var exampleSecretRE = regexp.MustCompile(`/run/secrets/tokenrelay/([A-Za-z0-9._-]+)`)

// exampleConfigs returns every tokenrelay configuration under root: the
// YAML files whose top level has both provider and routes.
func exampleConfigs(t *testing.T, root string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var top map[string]any
		if yaml.Unmarshal(data, &top) != nil {
			return nil // not a single YAML mapping: not a config
		}
		if _, p := top["provider"]; p {
			if _, r := top["routes"]; r {
				found = append(found, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return found
}

// TestExampleConfigs: every configuration in examples/ passes
// check-config, with the secret files it names replaced by temporary files
// holding dummy secrets of the right length. Nothing is fetched: check-config
// does not reach the provider.
func TestExampleConfigs(t *testing.T) {
	root := filepath.Join("..", "..", "examples")
	configs := exampleConfigs(t, root)
	// The files this test must see at least: a walk that finds nothing
	// proves nothing.
	for _, want := range []string{
		"demo/tokenrelay.yaml", "forward-auth/tokenrelay.yaml",
		"providers/auth0.yaml", "providers/authgear.yaml", "providers/entra.yaml",
		"providers/google.yaml", "providers/keycloak.yaml", "providers/oauth2-generic.yaml",
		"providers/xano.yaml",
	} {
		if !slices.Contains(configs, filepath.Join(root, want)) {
			t.Errorf("examples/%s was not found as a tokenrelay configuration (found %q)", want, configs)
		}
	}

	secrets := t.TempDir()
	for _, path := range configs {
		rel, _ := filepath.Rel(root, path)
		t.Run(filepath.ToSlash(rel), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			text := exampleSecretRE.ReplaceAllStringFunc(string(data), func(m string) string {
				name := exampleSecretRE.FindStringSubmatch(m)[1]
				file := filepath.Join(secrets, name)
				// 64 characters: more than the 32 bytes a session secret
				// needs, and a plausible client secret or password.
				value := strings.Repeat("0123456789abcdef", 4)
				if err := os.WriteFile(file, []byte(value+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				return file
			})
			if strings.Contains(text, "/run/secrets/") {
				t.Fatalf("a secret path was not rewritten: %s", text)
			}
			cfg := writeFile(t, t.TempDir(), "tokenrelay.yaml", text)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"check-config", "-config", cfg}, strings.NewReader(""), &stdout, &stderr, nil)
			if code != exitOK || !strings.HasPrefix(stdout.String(), "config OK\n") {
				t.Fatalf("check-config = exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			if w := strings.TrimPrefix(stdout.String(), "config OK\n"); w != "" {
				t.Logf("warnings:\n%s", w)
			}
			c, _, err := config.Load(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.Provider.Type != "custom" || c.Session.Store != "memory" {
				return
			}
			// A custom provider with the memory store needs no network to
			// start: build the whole app, as serve would, and require it
			// ready (check-config validates the file, not what the proxy
			// builds from it).
			app, err := buildApp(t.Context(), c, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				t.Fatalf("buildApp: %v", err)
			}
			defer app.Close()
			if err := app.Ready(t.Context()); err != nil {
				t.Errorf("the app built from the example is not ready: %v", err)
			}
		})
	}
}
