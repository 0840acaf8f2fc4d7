package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the loader: it must answer with a
// config or an error, never panic, and a config it accepts must validate.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(baseYAML))
	f.Add([]byte(""))
	f.Add([]byte("listen: [a\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("routes: [{<<: {path: /}, upstream: 'http://127.0.0.1:1'}]\n"))
	f.Add([]byte("provider: {custom: {refresh_request: {header_files: {X-K: /k}}}}\n"))
	f.Add([]byte("refresh: {ahead: 60}\nsession: {idle_timeout: 1h}\n"))
	f.Add([]byte("x: &x {a: *x}\n"))
	f.Add([]byte("--- a\n--- b\n"))
	seeds, _ := filepath.Glob(filepath.Join("..", "examples", "*", "*.yaml"))
	for _, name := range seeds {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	read := memFiles(map[string]string{"/k": "key\n"})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, err := loader{readFile: read}.load(data, nil)
		if err != nil {
			if cfg != nil {
				t.Fatalf("load returned a config with error %v", err)
			}
			return
		}
		if _, err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
	})
}
