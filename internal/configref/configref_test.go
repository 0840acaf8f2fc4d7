package configref

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/config"
)

const page = "../../docs/configuration.md"

// TestReferenceUpToDate fails while docs/configuration.md's key table is not
// what the options types and their doc comments say: run `go generate
// ./config` after changing an option, its default or its doc comment.
func TestReferenceUpToDate(t *testing.T) {
	want, err := Table(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Generated(data)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("%s is stale: run `go generate ./config`.\ngenerated:\n%s", page, want)
	}
}

// TestTableListsEveryKey pins that the table has one row per key, with its
// environment variable.
func TestTableListsEveryKey(t *testing.T) {
	table, err := Table(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSuffix(table, "\n"), "\n")[2:]
	keys := config.Keys()
	if len(rows) != len(keys) {
		t.Fatalf("%d rows for %d keys", len(rows), len(keys))
	}
	for i, k := range keys {
		if !strings.HasPrefix(rows[i], "| `"+k.Path+"` |") || !strings.Contains(rows[i], "| `"+k.Env+"` |") {
			t.Errorf("row %d = %q, want key %s and %s", i, rows[i], k.Path, k.Env)
		}
	}
}

func TestParseDocAndFormat(t *testing.T) {
	meaning, def, marked := parseDoc("Lifetime of the lock;\nmust exceed `timeout`.\n\nDeveloper notes.\n\n+default=`3 × refresh.timeout`\n")
	if meaning != "Lifetime of the lock; must exceed `timeout`." || def != "`3 × refresh.timeout`" || !marked {
		t.Errorf("parseDoc = %q, %q, %v", meaning, def, marked)
	}
	for d, want := range map[string]string{"24h0m0s": "24h", "1m0s": "1m", "1m30s": "1m30s", "25s": "25s", "720h0m0s": "720h", "10m0s": "10m"} {
		if got := shortDuration(mustDuration(t, d)); got != want {
			t.Errorf("shortDuration(%s) = %s, want %s", d, got, want)
		}
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
