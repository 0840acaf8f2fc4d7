package main

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBuildContext checks .dockerignore against what the build needs: every
// file `go build ./cmd/tokenrelay` reads is in the context, and the context
// holds nothing else but Go sources (no tests, binaries, secrets, git
// history).
func TestBuildContext(t *testing.T) {
	files, err := ContextFiles(context.Background(), "../..")
	if err != nil {
		t.Fatal(err)
	}
	inputs, err := BuildInputs("../..", "./cmd/tokenrelay")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) < 10 {
		t.Fatalf("BuildInputs = %v, want the sources of several packages", inputs)
	}
	for _, f := range inputs {
		if _, ok := files[f]; !ok {
			t.Errorf("%s is needed by go build ./cmd/tokenrelay but .dockerignore leaves it out of the build context", f)
		}
	}
	var total int64
	for _, f := range slices.Sorted(maps.Keys(files)) {
		total += files[f]
		switch {
		case f == "go.mod", f == "go.sum":
		case strings.HasSuffix(f, "_test.go"):
			t.Errorf("%s: a test file in the build context", f)
		case strings.HasSuffix(f, ".go"):
		case slices.Contains(inputs, f): // embedded
		default:
			t.Errorf("%s (%d bytes): not a Go source the build needs, yet in the build context", f, files[f])
		}
	}
	t.Logf("build context: %d files, %d bytes", len(files), total)
}

// TestContextFilesHonoursDockerignore proves ContextFiles applies the
// patterns (and so that TestBuildContext can fail).
func TestContextFilesHonoursDockerignore(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		".dockerignore":      "*\n!keep\n**/*_test.go\n",
		"keep/a.go":          "package a",
		"keep/a_test.go":     "package a",
		"drop/b.go":          "package b",
		"stray-binary":       "\x7fELF",
		"keep/sub/c.go":      "package c",
		"keep/sub/c_test.go": "package c",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := ContextFiles(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(maps.Keys(files))
	if want := []string{"keep/a.go", "keep/sub/c.go"}; !slices.Equal(got, want) {
		t.Errorf("ContextFiles = %v, want %v", got, want)
	}
}
