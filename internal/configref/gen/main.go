// Command gen rewrites the configuration reference table of
// docs/configuration.md from the options types (see package configref).
// `go generate ./config` runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tokenrelay/tokenrelay/internal/configref"
)

func main() {
	out := flag.String("o", "docs/configuration.md", "the page to rewrite, between its markers")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "configref:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	table, err := configref.Table(root)
	if err != nil {
		return err
	}
	changed, err := configref.Rewrite(out, table)
	if err == nil && changed {
		fmt.Println("configref: rewrote", out)
	}
	return err
}

// moduleRoot is the nearest folder above the working directory that holds
// a go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
