package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tokenrelay/tokenrelay/config"
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
	logger := newLogger(cfg.Log, c.stderr)
	for _, w := range warnings {
		logger.Warn("config: "+w.Message, "key", w.Path)
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

	var listeners []net.Listener
	defer func() {
		for _, ln := range listeners {
			ln.Close() // already closed by Shutdown on the normal path
		}
	}()
	listen := func(name, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s listener: %w", name, err)
		}
		listeners = append(listeners, ln)
		return ln, nil
	}
	mainLn, err := listen("main", cfg.Listen)
	if err != nil {
		return err
	}
	adminLn, err := listen("admin", cfg.AdminListen)
	if err != nil {
		return err
	}
	var httpLn net.Listener
	if cfg.TLS.Mode == "acme" {
		if httpLn, err = listen("http", cfg.TLS.HTTPListen); err != nil {
			return err
		}
	}

	var draining atomic.Bool
	// handlers counts the main handler's running calls. http.Server's
	// Shutdown does not wait for hijacked connections, and a proxied
	// WebSocket runs inside its handler call until the tunnel closes, so
	// shutdown waits for this count too (bounded by shutdown_grace).
	var handlers sync.WaitGroup
	mainSrv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handlers.Add(1)
			defer handlers.Done()
			a.Handler.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          serverErrorLog(logger, "main"),
		BaseContext:       func(net.Listener) context.Context { return appCtx },
	}
	adminSrv := &http.Server{
		Handler:           adminHandler(reg, a.Ready, &draining, logger),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          serverErrorLog(logger, "admin"),
	}
	var httpSrv *http.Server

	switch cfg.TLS.Mode {
	case "files":
		r, err := newCertReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile, c.certCheckInterval, c.now, logger)
		if err != nil {
			return err
		}
		mainSrv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
	case "acme":
		acme, err := newACME(&cfg.TLS, mainLn.Addr(), httpLn.Addr(), logger)
		if err != nil {
			return err
		}
		defer acme.Stop()
		if err := acme.Manage(appCtx, cfg.TLS.ACME.Domains); err != nil {
			return err
		}
		mainSrv.TLSConfig = acme.TLSConfig()
		_, httpsPort, _ := hostPort(mainLn.Addr())
		httpSrv = &http.Server{
			Handler:           acme.HTTPHandler(cfg.TLS.ACME.Domains, cfg.PublicURL, httpsPort),
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			ErrorLog:          serverErrorLog(logger, "http"),
		}
	}

	serveErr := make(chan error, 3)
	var wg sync.WaitGroup
	start := func(name string, srv *http.Server, ln net.Listener, useTLS bool) {
		logger.Info("listening", "listener", name, "addr", ln.Addr().String(), "tls", useTLS)
		if c.listening != nil {
			c.listening(name, ln.Addr().String())
		}
		wg.Go(func() {
			var err error
			if useTLS {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("%s server: %w", name, err)
			}
		})
	}
	start("admin", adminSrv, adminLn, false)
	start("main", mainSrv, mainLn, mainSrv.TLSConfig != nil)
	if httpSrv != nil {
		start("http", httpSrv, httpLn, false)
	}

	var failure error
	select {
	case <-ctx.Done():
		logger.Info("shutdown requested", "delay", cfg.ShutdownDelay.String(), "grace", cfg.ShutdownGrace.String())
	case failure = <-serveErr:
		logger.Error("server failed; shutting down", "error", failure)
	}

	// Fail readiness first, and let clients that keep connections open
	// learn to go elsewhere, while the listener still accepts.
	draining.Store(true)
	mainSrv.SetKeepAlivesEnabled(false)
	if cfg.ShutdownDelay > 0 && failure == nil {
		after := c.after
		if after == nil {
			after = time.After
		}
		logger.Info("draining: readiness fails, listener still open", "delay", cfg.ShutdownDelay.String())
		select {
		case <-after(cfg.ShutdownDelay):
		case failure = <-serveErr:
		}
	}

	graceCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownGrace)
	defer cancel()
	var shutWG sync.WaitGroup
	var graceErr error
	var graceMu sync.Mutex
	for name, srv := range map[string]*http.Server{"main": mainSrv, "http": httpSrv} {
		if srv == nil {
			continue
		}
		shutWG.Go(func() {
			if err := srv.Shutdown(graceCtx); err != nil {
				srv.Close()
				graceMu.Lock()
				graceErr = errors.Join(graceErr, fmt.Errorf("%s server: in-flight requests cut off after shutdown_grace %s: %w", name, cfg.ShutdownGrace, err))
				graceMu.Unlock()
			}
		})
	}
	shutWG.Wait()
	// Connections the handler hijacked (upgrades: WebSockets) are still
	// running; give them what is left of the grace period.
	upgradesDone := make(chan struct{})
	go func() {
		handlers.Wait()
		close(upgradesDone)
	}()
	select {
	case <-upgradesDone:
	case <-graceCtx.Done():
		graceErr = errors.Join(graceErr, fmt.Errorf("main server: upgraded connections cut off after shutdown_grace %s", cfg.ShutdownGrace))
	}

	adminCtx, cancelAdmin := context.WithTimeout(context.WithoutCancel(ctx), adminShutdownTimeout)
	defer cancelAdmin()
	if err := adminSrv.Shutdown(adminCtx); err != nil {
		adminSrv.Close()
	}
	wg.Wait()
	cancelApp()
	return errors.Join(failure, graceErr)
}
