package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/moby/patternmatcher/ignorefile"
	"github.com/tonistiigi/fsutil"
)

// ContextFiles lists the files a build of dir sends as its context, after
// dir/.dockerignore, using the walker BuildKit itself uses. Paths are
// slash-separated and relative to dir; values are sizes in bytes.
func ContextFiles(ctx context.Context, dir string) (map[string]int64, error) {
	var patterns []string
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	switch {
	case err == nil:
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("dockerlint: .dockerignore: %w", err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("dockerlint: %w", err)
	}
	files := map[string]int64{}
	err = fsutil.Walk(ctx, dir, &fsutil.FilterOpt{ExcludePatterns: patterns}, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			files[filepath.ToSlash(path)] = info.Size()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dockerlint: walk %s: %w", dir, err)
	}
	return files, nil
}

// BuildInputs lists the files of module dir that `go build pkg` reads:
// go.mod, go.sum, and the Go and embedded files of every package of the
// module that pkg depends on. Paths are relative to dir.
func BuildInputs(dir, pkg string) ([]string, error) {
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,CgoFiles,EmbedFiles,Module,Standard", pkg)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("dockerlint: go list %s: %w\n%s", pkg, err, stderr.String())
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	inputs := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Dir                           string
			GoFiles, CgoFiles, EmbedFiles []string
			Module                        *struct{ Main bool }
			Standard                      bool
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("dockerlint: go list output: %w", err)
		}
		if p.Standard || p.Module == nil || !p.Module.Main {
			continue
		}
		rel, err := filepath.Rel(abs, p.Dir)
		if err != nil {
			return nil, err
		}
		for _, list := range [][]string{p.GoFiles, p.CgoFiles, p.EmbedFiles} {
			for _, f := range list {
				inputs = append(inputs, filepath.ToSlash(filepath.Join(rel, f)))
			}
		}
	}
	return inputs, nil
}
