package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/problem"
)

// Exit codes.
const (
	exitOK      = 0
	exitRuntime = 1 // the server failed, or a health check did
	exitUsage   = 2 // bad flags, or an invalid configuration
)

// defaultConfigPath is where the container image and the Helm chart mount
// the configuration.
const defaultConfigPath = "/etc/tokenrelay/config.yaml"

const usage = `tokenrelay — OAuth2/OIDC token handler reverse proxy

Usage:
  tokenrelay [serve] [--config FILE]      run the proxy (the default command)
  tokenrelay check-config [--config FILE] [--discover | --online]
                                           validate the configuration, print every problem;
                                           --discover also checks it against the provider's
                                           discovery document; --online does that and
                                           checks the keys, the token endpoint and the
                                           client's credentials, the store and the
                                           redirect URI, in a one-screen summary
  tokenrelay gen-secret                    print a new random session secret
  tokenrelay version                       print the version
  tokenrelay healthcheck [--url URL]       GET URL; exit 0 on 2xx (for exec probes)

The configuration file defaults to ` + defaultConfigPath + `; --config "" reads
the whole configuration from TOKENRELAY_* environment variables.
Exit codes: 0 ok, 1 runtime error (or a failed check-config --online
check), 2 usage or configuration error.
`

// run is main without the process: tests call it in-process. environ is in
// os.Environ form; the whole list is needed, not a lookup function, so that
// an unknown TOKENRELAY_* variable (a typo) can be reported.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, environ: environ}
	return c.run(ctx, args)
}

// cli holds run's inputs and the seams tests replace. Zero values of the
// seams mean the real thing.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	environ        []string

	// buildApp builds the request handler; nil means the real wiring.
	buildApp func(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*app, error)
	// certCheckInterval is how often tls.mode files looks at the files;
	// zero means defaultCertCheckInterval.
	certCheckInterval time.Duration
	// now is the clock of the certificate reloader; nil means time.Now.
	now func() time.Time
	// listening, when set, is told the address of each listener once it
	// is bound ("main", "admin", "http").
	listening func(name string, addr string)
	// after waits out shutdown_delay; nil means a real timer.
	after func(time.Duration) <-chan time.Time
	// noSignals leaves SIGTERM/SIGINT alone, for tests that stop the
	// server by cancelling ctx.
	noSignals bool
}

func (c *cli) run(ctx context.Context, args []string) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return c.serveCmd(ctx, args)
	case "check-config":
		return c.checkConfig(ctx, args)
	case "gen-secret":
		return c.genSecret(args)
	case "version":
		return c.version(args)
	case "healthcheck":
		return c.healthcheck(ctx, args)
	case "help":
		fmt.Fprint(c.stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(c.stderr, "tokenrelay: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

// parseFlags parses args into fs and reports the exit code to return when
// parsing ends the command (-h, a bad flag, a stray argument).
func (c *cli) parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	fs.SetOutput(c.stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(c.stderr, "tokenrelay %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage, false
	}
	return 0, true
}

// loadConfig loads the configuration, printing every problem to stderr.
func (c *cli) loadConfig(path string) (*config.Config, config.Warnings, bool) {
	cfg, warnings, err := config.Load(path, c.environ)
	if err != nil {
		name := path
		if name == "" {
			name = "configuration (environment)"
		}
		var problems config.Problems
		if errors.As(err, &problems) {
			fmt.Fprintf(c.stderr, "%s is invalid (%d problem%s):\n", name, len(problems), plural(len(problems)))
			for _, p := range problems {
				// A message of several lines (a CEL error and the line it
				// points into) stays under its key.
				fmt.Fprintf(c.stderr, "  %s\n", strings.ReplaceAll(p.String(), "\n", "\n    "))
			}
		} else {
			fmt.Fprintf(c.stderr, "tokenrelay: %v\n", err)
		}
		return nil, nil, false
	}
	return cfg, warnings, true
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func (c *cli) checkConfig(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	path := fs.String("config", defaultConfigPath, `configuration file ("" for environment only)`)
	discover := fs.Bool("discover", false, "also read the provider's discovery document and report where the configuration conflicts with it")
	online := fs.Bool("online", false, "also check the provider (discovery, keys, token endpoint, client credentials), the store and the redirect URI over the network")
	if code, ok := c.parseFlags(fs, args); !ok {
		return code
	}
	cfg, warnings, ok := c.loadConfig(*path)
	if !ok {
		return exitUsage
	}
	if *online {
		fmt.Fprintf(c.stdout, "tokenrelay check-config --online: %s\n", cmpOr(*path, "(environment)"))
		return c.checkOnline(ctx, cfg, warnings)
	}
	if *discover {
		if code := c.checkDiscovery(ctx, cfg); code != exitOK {
			return code
		}
	}
	fmt.Fprintln(c.stdout, "config OK")
	for _, w := range warnings {
		if w.Severity != problem.Debug {
			fmt.Fprintf(c.stdout, "warning: %s\n", w)
		}
	}
	return exitOK
}

// checkDiscovery reads the provider's discovery document and prints where
// cfg conflicts with it: exitUsage for a conflict, exitRuntime when the
// document cannot be read.
func (c *cli) checkDiscovery(ctx context.Context, cfg *config.Config) int {
	if cfg.Provider.Type != idp.TypeOIDC {
		fmt.Fprintf(c.stdout, "note: provider.type %s has no discovery document to check against\n", cfg.Provider.Type)
		return exitOK
	}
	client, err := providerHTTPClient(cfg.Provider)
	if err != nil {
		fmt.Fprintf(c.stderr, "tokenrelay check-config: %v\n", err)
		return exitUsage
	}
	found, err := discoverAndCheck(ctx, cfg, client)
	if err != nil {
		fmt.Fprintf(c.stderr, "tokenrelay check-config: %v\n", err)
		return exitRuntime
	}
	for _, w := range found.Warnings() {
		fmt.Fprintf(c.stdout, "warning: %s\n", w)
	}
	conflicts := found.Errors()
	if len(conflicts) == 0 {
		return exitOK
	}
	fmt.Fprintf(c.stderr, "the configuration conflicts with the discovery document of %s (%d problem%s):\n", cfg.Provider.Issuer, len(conflicts), plural(len(conflicts)))
	for _, p := range conflicts {
		fmt.Fprintf(c.stderr, "  %s\n", p)
	}
	return exitUsage
}

// discoverAndCheck reads the discovery document of cfg's OIDC provider
// with client and checks cfg against it: the problems check-config
// --discover and --online report, and serve refuses to start on.
func discoverAndCheck(ctx context.Context, cfg *config.Config, client *http.Client) (problem.List, error) {
	opts := cfg.Provider
	opts.HTTPClient = client
	md, err := idp.Discover(ctx, opts)
	if err != nil {
		return nil, err
	}
	return problem.List(cfg.CheckProvider(md)), nil
}

func (c *cli) genSecret(args []string) int {
	fs := flag.NewFlagSet("gen-secret", flag.ContinueOnError)
	if code, ok := c.parseFlags(fs, args); !ok {
		return code
	}
	fmt.Fprintln(c.stdout, config.GenerateSecret().Reveal())
	return exitOK
}

func (c *cli) version(args []string) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if code, ok := c.parseFlags(fs, args); !ok {
		return code
	}
	fmt.Fprintf(c.stdout, "tokenrelay %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// healthcheck lets a distroless container (no shell, no curl) probe itself
// with an exec probe or a Docker HEALTHCHECK.
func (c *cli) healthcheck(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	target := fs.String("url", "http://"+config.DefaultAdminListen+"/healthz", "URL to GET")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if code, ok := c.parseFlags(fs, args); !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *target, nil)
	if err != nil {
		fmt.Fprintf(c.stderr, "healthcheck: %v\n", err)
		return exitUsage
	}
	// A private transport: no proxy from the environment, no pooled state.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(c.stderr, "healthcheck: %v\n", err)
		return exitRuntime
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(c.stderr, "healthcheck: %s answered %s\n", *target, resp.Status)
		return exitRuntime
	}
	return exitOK
}
