package config

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeListsEveryKey keeps the configuration reference (docs/configuration.md) in step
// with the struct: every environment variable Load understands, hence every
// key, must appear in it.
func TestReadmeListsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range EnvVars() {
		if !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("docs/configuration.md does not list %s", name)
		}
	}
}
