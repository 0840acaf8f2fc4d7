package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/internal/problem"
	"github.com/tokenrelay/tokenrelay/tracing"
)

// Server timeouts. There is no write timeout: SSE streams and long
// downloads pass through. Idle keep-alive connections and slow request
// headers (Slowloris) are bounded.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	// adminShutdownTimeout bounds the admin server's own shutdown, after
	// the main server has finished.
	adminShutdownTimeout = 5 * time.Second
)

func (c *cli) serveCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", defaultConfigPath, `configuration file ("" for environment only)`)
	if code, ok := c.parseFlags(fs, args); !ok {
		return code
	}
	cfg, warnings, ok := c.loadConfig(*path)
	if !ok {
		return exitUsage
	}
	// Lines still buffered are written when serve has returned: after the
	// servers have stopped and the last line ("stopped") is logged.
	out := newLogWriter(c.stderr, logBufferBytes)
	defer out.Close()
	logger := newLogger(cfg.Log, out)
	if cfg.Tracing.Enabled {
		// The trace id of a traced request on each of its log lines.
		logger = slog.New(tracing.LogHandler(logger.Handler()))
	}
	for _, w := range warnings {
		level := slog.LevelWarn
		if w.Severity == problem.Debug {
			level = slog.LevelDebug
		}
		logger.Log(ctx, level, "config: "+w.Message, "key", w.Path)
	}
	if !c.noSignals {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
		defer stop()
	}
	logger.Info("starting", "version", version, "config", *path)
	if err := c.serve(ctx, cfg, logger); err != nil {
		logger.Error("stopped", "error", err)
		return exitRuntime
	}
	logger.Info("stopped")
	return exitOK
}

// serve runs the servers until ctx ends (SIGTERM), then shuts down in order:
// /readyz fails at once; after shutdown_delay the main listener stops
// accepting and in-flight requests get up to shutdown_grace to finish; then
// the admin server stops and the app is closed.
func (c *cli) serve(ctx context.Context, cfg *config.Config, logger *slog.Logger) (err error) {
	// The app outlives ctx: in-flight requests still need the store and
	// the provider while the servers drain.
	appCtx, cancelApp := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelApp()

	reg := newRegistry()
	build := c.buildApp
	if build == nil {
		build = buildApp
	}
	a, err := build(appCtx, cfg, logger, reg)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	defer func() {
		if cerr := a.Close(); cerr != nil {
			logger.Error("closing", "error", cerr)
			err = errors.Join(err, cerr)
		}
	}()

	ls, err := listen(cfg)
	defer ls.close() // already closed by Shutdown on the normal path
	if err != nil {
		return err
	}
	s, err := c.newServers(appCtx, cfg, ls, a, reg, logger)
	if err != nil {
		return err
	}
	defer s.stop()
	s.start(ls, c.listening)
	failure := s.wait(ctx, cfg)
	graceErr := s.shutdown(ctx, cfg, failure, c.after)
	cancelApp()
	return errors.Join(failure, graceErr)
}

// listeners are the sockets serve binds: main, admin, forward-auth (when
// forward_auth.listen is set) and, in acme mode, plain HTTP.
type listeners struct {
	main, admin, forwardAuth, http net.Listener
}

// listen binds every listener the configuration names; on failure the
// ones already bound are in ls, for close.
func listen(cfg *config.Config) (ls listeners, err error) {
	bind := func(name, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s listener: %w", name, err)
		}
		return ln, nil
	}
	if ls.main, err = bind("main", cfg.Listen); err != nil {
		return ls, err
	}
	if ls.admin, err = bind("admin", cfg.AdminListen); err != nil {
		return ls, err
	}
	if cfg.ForwardAuth.Enabled() {
		if ls.forwardAuth, err = bind("forward-auth", cfg.ForwardAuth.Listen); err != nil {
			return ls, err
		}
	}
	if cfg.TLS.Mode == "acme" {
		if ls.http, err = bind("http", cfg.TLS.HTTPListen); err != nil {
			return ls, err
		}
	}
	return ls, nil
}

func (ls listeners) close() {
	for _, ln := range []net.Listener{ls.main, ls.admin, ls.forwardAuth, ls.http} {
		if ln != nil {
			ln.Close()
		}
	}
}

// servers are the HTTP servers serve runs and what their shutdown waits
// for.
type servers struct {
	main, admin *http.Server
	// forwardAuth serves the verify endpoint to an ingress, in plain HTTP
	// (nil when forward_auth.listen is not set).
	forwardAuth *http.Server
	// http answers ACME HTTP-01 challenges and redirects to https (acme
	// mode only; nil otherwise).
	http *http.Server
	// draining makes /readyz fail once shutdown has begun.
	draining *atomic.Bool
	// handlers counts the main handler's running calls. http.Server's
	// Shutdown does not wait for hijacked connections, and a proxied
	// WebSocket runs inside its handler call until the tunnel closes, so
	// shutdown waits for this count too (bounded by shutdown_grace).
	handlers *sync.WaitGroup
	// running counts the Serve calls; errs receives the error of one that
	// failed.
	running *sync.WaitGroup
	errs    chan error
	// stop releases what TLS set up (the ACME cache).
	stop func()
	log  *slog.Logger
}

// newServers builds the main, admin and (in acme mode) plain-HTTP servers,
// with the TLS configuration tls.mode asks for.
func (c *cli) newServers(appCtx context.Context, cfg *config.Config, ls listeners, a *app, reg *prometheus.Registry, logger *slog.Logger) (*servers, error) {
	s := &servers{
		draining: new(atomic.Bool),
		handlers: new(sync.WaitGroup),
		running:  new(sync.WaitGroup),
		errs:     make(chan error, 4),
		stop:     func() {},
		log:      logger,
	}
	s.main = newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handlers.Add(1)
		defer s.handlers.Done()
		a.Handler.ServeHTTP(w, r)
	}), serverErrorLog(logger, "main"))
	s.main.BaseContext = func(net.Listener) context.Context { return appCtx }
	s.admin = newServer(adminHandler(reg, a.Ready, s.draining, logger, a.Admin), serverErrorLog(logger, "admin"))
	if ls.forwardAuth != nil {
		s.forwardAuth = newServer(a.ForwardAuth, serverErrorLog(logger, "forward-auth"))
		s.forwardAuth.BaseContext = func(net.Listener) context.Context { return appCtx }
	}

	switch cfg.TLS.Mode {
	case "files":
		r, err := newCertReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile, c.certCheckInterval, c.now, logger)
		if err != nil {
			return nil, err
		}
		s.main.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
	case "acme":
		if err := s.setACME(appCtx, cfg, ls, logger); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// setACME obtains certificates for the main server and builds the plain
// HTTP server that answers HTTP-01 challenges.
func (s *servers) setACME(appCtx context.Context, cfg *config.Config, ls listeners, logger *slog.Logger) error {
	acme, err := newACME(&cfg.TLS, ls.main.Addr(), ls.http.Addr(), logger)
	if err != nil {
		return err
	}
	if err := acme.Manage(appCtx, cfg.TLS.ACME.Domains); err != nil {
		acme.Stop()
		return err
	}
	s.stop = acme.Stop
	s.main.TLSConfig = acme.TLSConfig()
	_, httpsPort, _ := hostPort(ls.main.Addr())
	s.http = newServer(acme.HTTPHandler(cfg.TLS.ACME.Domains, cfg.PublicURL, httpsPort), serverErrorLog(logger, "http"))
	return nil
}

// newServer is an http.Server with tokenrelay's timeouts.
func newServer(h http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          errorLog,
	}
}

// start serves each server on its listener, in the background.
func (s *servers) start(ls listeners, listening func(name, addr string)) {
	run := func(name string, srv *http.Server, ln net.Listener) {
		useTLS := srv.TLSConfig != nil
		s.log.Info("listening", "listener", name, "addr", ln.Addr().String(), "tls", useTLS)
		if listening != nil {
			listening(name, ln.Addr().String())
		}
		s.running.Go(func() {
			var err error
			if useTLS {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				s.errs <- fmt.Errorf("%s server: %w", name, err)
			}
		})
	}
	run("admin", s.admin, ls.admin)
	run("main", s.main, ls.main)
	if s.forwardAuth != nil {
		run("forward-auth", s.forwardAuth, ls.forwardAuth)
	}
	if s.http != nil {
		run("http", s.http, ls.http)
	}
}

// wait blocks until ctx ends (nil) or a server fails (its error).
func (s *servers) wait(ctx context.Context, cfg *config.Config) error {
	select {
	case <-ctx.Done():
		s.log.Info("shutdown requested", "delay", cfg.ShutdownDelay.String(), "grace", cfg.ShutdownGrace.String())
		return nil
	case err := <-s.errs:
		s.log.Error("server failed; shutting down", "error", err)
		return err
	}
}

// shutdown stops the servers in order: readiness fails and keep-alives
// end at once; after shutdown_delay (skipped when a server failed) the
// main, forward-auth and HTTP servers stop accepting and their requests, upgraded
// connections included, get what is left of shutdown_grace; then the admin
// server stops. It returns a late server failure and what the grace period
// cut off.
func (s *servers) shutdown(ctx context.Context, cfg *config.Config, failure error, after func(time.Duration) <-chan time.Time) error {
	// Fail readiness first, and let clients that keep connections open
	// learn to go elsewhere, while the listener still accepts.
	s.draining.Store(true)
	s.main.SetKeepAlivesEnabled(false)
	if s.forwardAuth != nil {
		s.forwardAuth.SetKeepAlivesEnabled(false)
	}
	var late error
	if cfg.ShutdownDelay > 0 && failure == nil {
		if after == nil {
			after = time.After
		}
		s.log.Info("draining: readiness fails, listener still open", "delay", cfg.ShutdownDelay.String())
		select {
		case <-after(cfg.ShutdownDelay):
		case late = <-s.errs:
		}
	}

	graceCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownGrace)
	defer cancel()
	graceErr := s.drain(graceCtx, cfg.ShutdownGrace)

	adminCtx, cancelAdmin := context.WithTimeout(context.WithoutCancel(ctx), adminShutdownTimeout)
	defer cancelAdmin()
	if err := s.admin.Shutdown(adminCtx); err != nil {
		s.admin.Close()
	}
	s.running.Wait()
	return errors.Join(late, graceErr)
}

// drain shuts the main, forward-auth and HTTP servers down within
// graceCtx, then waits, in what is left of it, for the main handler's calls
// that hijacked their connections (WebSockets).
func (s *servers) drain(graceCtx context.Context, grace time.Duration) error {
	var wg sync.WaitGroup
	var mu sync.Mutex // guards graceErr
	var graceErr error
	for name, srv := range map[string]*http.Server{"main": s.main, "forward-auth": s.forwardAuth, "http": s.http} {
		if srv == nil {
			continue
		}
		wg.Go(func() {
			if err := srv.Shutdown(graceCtx); err != nil {
				srv.Close()
				mu.Lock()
				graceErr = errors.Join(graceErr, fmt.Errorf("%s server: in-flight requests cut off after shutdown_grace %s: %w", name, grace, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	upgradesDone := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(upgradesDone)
	}()
	select {
	case <-upgradesDone:
	case <-graceCtx.Done():
		graceErr = errors.Join(graceErr, fmt.Errorf("main server: upgraded connections cut off after shutdown_grace %s", grace))
	}
	return graceErr
}
