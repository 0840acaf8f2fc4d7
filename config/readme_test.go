package config

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeListsEveryKey keeps the README's configuration reference in step
// with the struct: every environment variable Load understands, hence every
// key, must appear in it.
func TestReadmeListsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range EnvVars() {
		if !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("README.md does not list %s", name)
		}
	}
}
