package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	var args buildArgs
	flag.Var(&args, "build-arg", "KEY=VALUE passed as --build-arg (repeatable)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: dockerlint [--build-arg K=V]... Dockerfile...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	failed := false
	for _, name := range flag.Args() {
		dt, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		findings, err := Lint(context.Background(), name, dt, args)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		for _, f := range findings {
			fmt.Printf("%s: %s\n", name, f)
		}
		if len(findings) > 0 {
			failed = true
			continue
		}
		fmt.Printf("%s: no findings\n", name)
	}
	if failed {
		os.Exit(1)
	}
}

// buildArgs collects repeated --build-arg flags.
type buildArgs map[string]string

func (b *buildArgs) String() string { return fmt.Sprint(map[string]string(*b)) }

func (b *buildArgs) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("build-arg %q: want KEY=VALUE", v)
	}
	if *b == nil {
		*b = buildArgs{}
	}
	(*b)[k] = val
	return nil
}
