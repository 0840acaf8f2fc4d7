package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tokenrelay/tokenrelay/config"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/ from the current code")

// TestExampleCheckConfigGolden pins what check-config prints for every
// example configuration, and the configuration Load makes of it (every key
// after defaults, as YAML), against files under testdata/examples. A
// change to the configuration code that alters a message, a warning or an
// effective value shows up as a diff; `go test ./cmd/tokenrelay -run
// Golden -update` rewrites the files when the change is meant.
func TestExampleCheckConfigGolden(t *testing.T) {
	root := filepath.Join("..", "..", "examples")
	configs := exampleConfigs(t, root)
	if len(configs) < 8 {
		t.Fatalf("found %d example configurations, want at least 8: %q", len(configs), configs)
	}
	secrets := t.TempDir()
	for _, path := range configs {
		rel, _ := filepath.Rel(root, path)
		t.Run(filepath.ToSlash(rel), func(t *testing.T) {
			cfgPath := exampleWithSecrets(t, path, secrets)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"check-config", "-config", cfgPath}, strings.NewReader(""), &stdout, &stderr, nil)
			out := fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", code, stdout.String(), stderr.String())
			out = strings.ReplaceAll(out, cfgPath, "$CONFIG")

			cfg, _, err := config.Load(cfgPath, nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			eff, err := effectiveYAML(cfg)
			if err != nil {
				t.Fatal(err)
			}
			eff = strings.ReplaceAll(eff, secrets, "$SECRETS")

			base := filepath.Join("testdata", "examples", strings.TrimSuffix(filepath.ToSlash(rel), filepath.Ext(rel)))
			golden(t, base+".check-config.txt", out)
			golden(t, base+".effective.yaml", eff)
		})
	}
}

// exampleWithSecrets writes a copy of the example at path whose secret
// file paths point at files under secrets holding dummy secrets, and
// returns the copy's path.
func exampleWithSecrets(t *testing.T, path, secrets string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := exampleSecretRE.ReplaceAllStringFunc(string(data), func(m string) string {
		file := filepath.Join(secrets, exampleSecretRE.FindStringSubmatch(m)[1])
		if err := os.WriteFile(file, []byte(strings.Repeat("0123456789abcdef", 4)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	})
	return writeFile(t, t.TempDir(), "tokenrelay.yaml", text)
}

// effectiveYAML prints cfg as YAML with the keys of every mapping sorted,
// so the text depends on the keys and values alone, not on the order of
// struct fields.
func effectiveYAML(cfg *config.Config) (string, error) {
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	var generic any
	if err := yaml.Unmarshal(raw, &generic); err != nil {
		return "", err
	}
	sorted, err := yaml.Marshal(generic) // maps marshal with sorted keys
	return string(sorted), err
}

// golden compares got with the file at path, or rewrites the file with
// -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the current output (- want, + got):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff lists the lines only in a (-) or only in b (+), in order, from
// a longest common subsequence of the two texts' lines.
func lineDiff(a, b string) string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	// lcs[i][j] is the LCS length of x[i:] and y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			i, j = i+1, j+1
		case j < len(y) && (i == len(x) || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&out, "+%d: %s\n", j+1, y[j])
			j++
		default:
			fmt.Fprintf(&out, "-%d: %s\n", i+1, x[i])
			i++
		}
	}
	return out.String()
}

// TestCheckConfigMessagesGolden pins check-config's answer when one key of
// an example is overridden, through its environment variable, with each of
// a few values that are often wrong or whose zero means something ("",
// "bogus", "0", "-1", "0s", "-1s", "false"): every key's problems and
// warnings, word for word, against testdata/messages.
func TestCheckConfigMessagesGolden(t *testing.T) {
	root := filepath.Join("..", "..", "examples")
	secrets := t.TempDir()
	values := []string{"", "bogus", "0", "-1", "0s", "-1s", "false"}
	for _, rel := range []string{"demo/tokenrelay.yaml", "providers/auth0.yaml", "providers/xano.yaml"} {
		t.Run(rel, func(t *testing.T) {
			cfgPath := exampleWithSecrets(t, filepath.Join(root, rel), secrets)
			var b strings.Builder
			// Sorted, so the text does not depend on the order of struct
			// fields.
			for _, name := range slices.Sorted(slices.Values(config.EnvVars())) {
				name = strings.ReplaceAll(name, "<n>", "0")
				for _, v := range values {
					var stdout, stderr bytes.Buffer
					code := run(context.Background(), []string{"check-config", "-config", cfgPath}, strings.NewReader(""), &stdout, &stderr, []string{name + "=" + v})
					fmt.Fprintf(&b, "### %s=%q: exit %d\n%s%s", name, v, code, stdout.String(), stderr.String())
				}
			}
			out := strings.ReplaceAll(b.String(), cfgPath, "$CONFIG")
			out = strings.ReplaceAll(out, secrets, "$SECRETS")
			golden(t, filepath.Join("testdata", "messages", strings.TrimSuffix(rel, ".yaml")+".txt"), out)
		})
	}
}
