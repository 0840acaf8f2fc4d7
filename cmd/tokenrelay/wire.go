package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/admin"
	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/identity"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/internal/problem"
	"github.com/tokenrelay/tokenrelay/proxy"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
	"github.com/tokenrelay/tokenrelay/session/redisstore"
	"github.com/tokenrelay/tokenrelay/tracing"
)

// app is what serve runs: the main handler, the forward-auth listener's
// handler (the verify endpoint), the readiness check behind /readyz, and
// Close, called once after the servers have shut down.
type app struct {
	Handler     http.Handler
	ForwardAuth http.Handler
	Ready       func(context.Context) error
	Close       func() error
	// Admin is the session admin API for the admin listener; nil when
	// admin.token is not configured.
	Admin http.Handler
}

// errProviderLoading is the readiness error (and the 503 answer) while the
// identity provider's metadata or keys have not loaded yet.
var errProviderLoading = errors.New("identity provider metadata not loaded yet")

// errBuild marks a load failure after the provider loaded: the session
// manager or the proxy refused the configuration. Retrying cannot help (and
// would register the manager's metrics twice), so it is fatal at start.
var errBuild = errors.New("cannot build the request path")

// Backoff between attempts to load the provider's metadata at start.
const (
	providerRetryMin = time.Second
	providerRetryMax = 30 * time.Second
)

// buildApp builds every runtime object from a validated configuration: the
// session store, the identity provider client, the session manager and the
// proxy. ctx lives as long as the app (JWKS refresh and metadata loading
// run on it); reg is the process registry.
//
// The provider's discovery document and keys are loaded once before
// buildApp returns; when that fails (the provider is down while tokenrelay
// starts), buildApp still returns an app: it answers 503
// provider_unavailable, /readyz fails, and loading is retried with backoff
// in the background until it succeeds. Liveness is unaffected, so
// Kubernetes does not restart a pod whose provider is briefly away.
func buildApp(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*app, error) {
	w, err := newWiring(cfg, logger, reg)
	if err != nil {
		return nil, err
	}
	loadCtx, stopLoading := context.WithCancel(ctx)
	loaded, err := w.startLoading(loadCtx)
	if err != nil {
		stopLoading()
		w.closeBackend()
		return nil, err
	}
	var closeOnce sync.Once
	var closeErr error
	var api http.Handler
	if cfg.Admin.Enabled() {
		api = admin.New(cfg.Admin, adminBackend{w}, adminBackend{w}, logger)
	}
	return &app{
		Handler:     w,
		ForwardAuth: http.HandlerFunc(w.serveForwardAuth),
		Admin:       api,
		Ready:       w.ready,
		Close: func() error {
			closeOnce.Do(func() {
				stopLoading()
				<-loaded
				closeErr = w.close()
			})
			return closeErr
		},
	}, nil
}

// newWiring builds what does not need the provider: the session store, the
// server secrets, the provider's HTTP client and the upstream transport.
func newWiring(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*wiring, error) {
	backend, closeBackend, err := buildBackend(cfg, logger, reg)
	if err != nil {
		return nil, err
	}
	client, err := providerHTTPClient(cfg.Provider)
	if err != nil {
		closeBackend()
		return nil, err
	}
	tp, err := newTracerProvider(context.Background(), cfg.Tracing, os.Environ())
	if err != nil {
		closeBackend()
		return nil, err
	}
	w := &wiring{tracerProvider: tp}
	upstream := proxy.NewTransport(cfg.Upstream.TransportOptions)
	var traced http.RoundTripper = upstream
	if tp != nil {
		w.traces = tp
		client.Transport = tracing.Transport(client.Transport, tp, "provider")
		traced = tracing.Transport(upstream, tp, "upstream")
	}
	serverSecret := cfg.Session.Secret
	if serverSecret.IsZero() {
		// Validate allows this only with the memory store, and Load has
		// warned that sessions end with the process.
		serverSecret = config.GenerateSecret()
	}
	previous := make([][]byte, 0, len(cfg.Session.PreviousSecrets))
	for _, s := range cfg.Session.PreviousSecrets {
		previous = append(previous, []byte(s.Reveal()))
	}
	w.cfg, w.logger, w.reg = cfg, logger, reg
	w.backend, w.closeBackend = backend, closeBackend
	w.secret, w.previous = []byte(serverSecret.Reveal()), previous
	w.client, w.upstream, w.tracedUpstream = client, upstream, traced
	return w, nil
}

// startLoading loads the provider and builds the request path once; when
// the provider is not available, it goes on trying in the background. The
// channel closes when loading is over (done, or given up with ctx). An
// errBuild is returned: the configuration cannot be served.
func (w *wiring) startLoading(ctx context.Context) (<-chan struct{}, error) {
	done := make(chan struct{})
	err := w.load(ctx)
	switch {
	case errors.Is(err, errBuild):
		return nil, err
	case err != nil:
		w.logger.Error("identity provider (or the assertion signing keys in the store) not available yet; retrying in the background", "error", err)
		go func() {
			defer close(done)
			w.retryLoad(ctx)
		}()
	default:
		close(done)
	}
	return done, nil
}

// close ends what the wiring holds, once loading is over: the refreshes
// still in flight, the provider's key refresh, idle upstream connections
// and the store.
func (w *wiring) close() error {
	w.drainRefreshes()
	if p := w.provider.Load(); p != nil {
		p.Close()
	}
	w.upstream.CloseIdleConnections()
	err := w.closeBackend()
	if w.tracerProvider != nil {
		// Export what is still buffered, bounded.
		ctx, cancel := context.WithTimeout(context.Background(), tracerShutdownTimeout)
		defer cancel()
		err = errors.Join(err, w.tracerProvider.Shutdown(ctx))
	}
	return err
}

// wiring holds what buildApp made and, once the provider has loaded, the
// live handler. It is safe for concurrent use.
type wiring struct {
	cfg     *config.Config
	logger  *slog.Logger
	reg     prometheus.Registerer
	backend session.Backend
	// closeBackend closes the store and its client.
	closeBackend func() error
	secret       []byte
	previous     [][]byte
	client       *http.Client
	upstream     *http.Transport
	// tracedUpstream is upstream, with a client span per call when
	// tracing is on.
	tracedUpstream http.RoundTripper
	// tracerProvider is the SDK's, nil when tracing is off; traces is the
	// same as the interface the packages take (nil when off: never a
	// typed nil).
	tracerProvider *sdktrace.TracerProvider
	traces         trace.TracerProvider

	// provider, manager and handler are set together, once, by load.
	provider atomic.Pointer[idp.Provider]
	manager  atomic.Pointer[session.Manager]
	handler  atomic.Pointer[proxy.Handler]
}

// ServeHTTP serves through the proxy once the provider has loaded, and 503
// before.
func (w *wiring) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if h := w.handler.Load(); h != nil {
		h.ServeHTTP(rw, r)
		return
	}
	rw.Header().Set("Retry-After", "5")
	proxy.WriteError(rw, http.StatusServiceUnavailable, "provider_unavailable", "the identity provider's metadata has not loaded yet")
}

// serveForwardAuth serves the forward-auth listener through the proxy once
// the provider has loaded, and 503 before (an ingress then refuses the
// request rather than let it through).
func (w *wiring) serveForwardAuth(rw http.ResponseWriter, r *http.Request) {
	if h := w.handler.Load(); h != nil {
		h.ServeForwardAuth(rw, r)
		return
	}
	rw.Header().Set("Retry-After", "5")
	proxy.WriteError(rw, http.StatusServiceUnavailable, "provider_unavailable", "the identity provider's metadata has not loaded yet")
}

// ready reports whether the store answers, the provider's metadata and
// keys are loaded, and the provider accepts this replica's client.
func (w *wiring) ready(ctx context.Context) error {
	p, m := w.provider.Load(), w.manager.Load()
	if p == nil || m == nil {
		return failedCheck("provider", errProviderLoading)
	}
	managerCheck := "store"
	err := m.Ready(ctx)
	if errors.Is(err, session.ErrClientRejected) {
		managerCheck = "client"
	}
	return errors.Join(failedCheck("provider", p.Ready(ctx)), failedCheck(managerCheck, err))
}

// drainRefreshes waits, at most refresh.lock_ttl, for the refreshes still
// in flight (the servers have stopped, but a refresh may go on after its
// requests): one cut off by the exit would leave its outcome unknown to the
// other replicas, and its session would end.
func (w *wiring) drainRefreshes() {
	m := w.manager.Load()
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Refresh.LockTTL)
	defer cancel()
	if err := m.Drain(ctx); err != nil {
		w.logger.Warn("refreshes still in flight at exit; their sessions end when their tokens expire", "error", err)
	}
}

// retryLoad calls load with jittered exponential backoff until it succeeds
// or ctx ends.
func (w *wiring) retryLoad(ctx context.Context) {
	wait := providerRetryMin
	for {
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err := w.load(ctx)
		if err == nil {
			w.logger.Info("identity provider loaded")
			return
		}
		if errors.Is(err, errBuild) {
			w.logger.Error("identity provider loaded, but the request path cannot be built; not retrying", "error", err)
			return
		}
		w.logger.Error("identity provider (or the assertion signing keys in the store) not available yet; retrying", "error", err, "retry_in", wait)
		wait = min(2*wait, providerRetryMax)
	}
}

// load builds the provider client (discovery, keys), the session manager
// and the proxy handler, and publishes them.
func (w *wiring) load(ctx context.Context) error {
	cfg := w.cfg
	popts, err := providerOptions(cfg, w.client, w.logger)
	if err != nil {
		return fmt.Errorf("%w: %w", errBuild, err)
	}
	keys, err := w.keyRing(ctx)
	if err != nil {
		return err
	}
	p, err := idp.New(ctx, popts)
	if err != nil {
		return err
	}
	if md := p.Metadata(); md != nil {
		// The routes' tokens need grants the provider must offer; a
		// conflict is reported as check-config --discover reports it.
		found := problem.List(cfg.CheckProvider(md))
		if err := found.Err(); err != nil {
			p.Close()
			return fmt.Errorf("the configuration conflicts with the provider's discovery document: %w", err)
		}
		for _, warn := range found.Warnings() {
			w.logger.Warn("the provider's discovery document disagrees with the configuration", "problem", warn.String())
		}
	}
	m, err := session.NewManager(session.ManagerOptions{
		LifetimeOptions: cfg.Session.LifetimeOptions,
		RefreshOptions:  cfg.Refresh.RefreshOptions,
		Backend:         w.backend,
		Secret:          w.secret,
		PreviousSecrets: w.previous,
		Refresher:       p,
		Exchanger:       p,
		ClientGrant:     p,
		ClientDPoP:      cfg.Provider.DPoP,
		Issuer:          cfg.Provider.Issuer,
		Admin:           cfg.Admin.Enabled(),
		Escrow:          cfg.Admin.Escrowed(),
		TracerProvider:  w.traces,
		Logger:          w.logger,
		Registerer:      w.reg,
	})
	if err != nil {
		p.Close()
		return fmt.Errorf("%w: session manager: %w", errBuild, err)
	}
	po := proxyOptions(cfg, m, p, keys, w.tracedUpstream, w.logger, w.reg)
	po.TracerProvider = w.traces
	h, err := proxy.New(po)
	if err != nil {
		p.Close()
		return fmt.Errorf("%w: %w", errBuild, err)
	}
	w.provider.Store(p)
	w.manager.Store(m)
	w.handler.Store(h)
	return nil
}

// adminBackend gives the admin API the session manager and the provider
// once they have loaded; before, its calls fail with errProviderLoading
// (503).
type adminBackend struct{ w *wiring }

func (b adminBackend) SubjectSessions(ctx context.Context, sub string) ([]session.SessionInfo, error) {
	m := b.w.manager.Load()
	if m == nil {
		return nil, errProviderLoading
	}
	return m.SubjectSessions(ctx, sub)
}

func (b adminBackend) EndSubjectSessions(ctx context.Context, sub, id string) ([]session.EndedSession, error) {
	m := b.w.manager.Load()
	if m == nil {
		return nil, errProviderLoading
	}
	return m.EndSubjectSessions(ctx, sub, id)
}

func (b adminBackend) EndAll(ctx context.Context) (time.Time, error) {
	m := b.w.manager.Load()
	if m == nil {
		return time.Time{}, errProviderLoading
	}
	return m.EndAll(ctx)
}

func (b adminBackend) Revoke(ctx context.Context, refreshToken secret.String) error {
	p := b.w.provider.Load()
	if p == nil {
		return errProviderLoading
	}
	return p.Revoke(ctx, refreshToken)
}

// buildBackend builds the session store named by session.store and its
// close function.
func buildBackend(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (session.Backend, func() error, error) {
	switch cfg.Session.Store {
	case "redis":
		redisstore.RouteLogs(logger)
		client, err := redisstore.NewClient(cfg.Session.Redis)
		if err != nil {
			return nil, nil, fmt.Errorf("redis: %w", err)
		}
		store := redisstore.New(client, cfg.Session.Redis, logger)
		if err := registerCacheMetrics(reg, store); err != nil {
			return nil, nil, errors.Join(err, store.Close(), client.Close())
		}
		closeAll := func() error { return errors.Join(store.Close(), client.Close()) }
		return store, closeAll, nil
	default:
		return session.NewMemoryStore(nil), func() error { return nil }, nil
	}
}

// registerCacheMetrics exports the counts of the Redis store's local
// cache (session.redis.local_cache): reads it answered and reads it passed
// to Redis.
func registerCacheMetrics(reg prometheus.Registerer, store *redisstore.Store) error {
	const name, help = "tokenrelay_store_cache_reads_total", "Request-path session reads by whether the Redis store's local cache answered them (hit) or Redis did (miss)."
	for _, r := range []struct {
		result string
		count  func() uint64
	}{
		{"hit", func() uint64 { return store.CacheStats().Hits }},
		{"miss", func() uint64 { return store.CacheStats().Misses }},
	} {
		c := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"result": r.result}},
			func() float64 { return float64(r.count()) })
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	return nil
}

// providerIdleTimeout is how long a connection to the provider may stay
// idle before tokenrelay closes it: shorter than the keep-alive timeouts
// servers commonly use (Node.js 5 s, AWS load balancers 60 s, nginx 75 s).
// A token request written on a connection the server is closing at that
// moment fails with EOF after it was sent, and a refresh sent so has an
// unknown outcome: its refresh token is never sent again, and the session
// ends when its access token expires. Closing idle connections first keeps
// that race away; a provider called often keeps its connections warm.
const providerIdleTimeout = 4 * time.Second

// providerHTTPClient is the client for every call to the identity provider.
// Each call has its own deadline (provider.timeout, refresh.timeout), so the
// client sets none; its transport trusts provider.ca_file when set.
func providerHTTPClient(p idp.Options) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// The engine makes at most one refresh per session at a time, but many
	// sessions refresh together after a deploy: keep enough idle
	// connections to the token endpoint to avoid a TLS handshake each.
	t.MaxIdleConnsPerHost = 64
	t.IdleConnTimeout = providerIdleTimeout
	if p.CAFile != "" || p.TLSClientCertFile != "" {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if p.CAFile != "" {
		pool, err := loadCertPool(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("provider.ca_file: %w", err)
		}
		t.TLSClientConfig.RootCAs = pool
	}
	if p.TLSClientCertFile != "" {
		// tls_client_auth (RFC 8705): the certificate authenticates the
		// client on every connection to the provider.
		cert, err := tls.LoadX509KeyPair(p.TLSClientCertFile, p.TLSClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("provider.tls_client_cert_file: %w", err)
		}
		t.TLSClientConfig.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{
		Transport: t,
		// Never follow redirects from a token endpoint: a 3xx there is an
		// error, and following it could send credentials elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

func loadCertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificates", file)
	}
	return pool, nil
}

// providerOptions are the provider's options from the file with the
// dependencies cmd builds, and with the claims the policies and identity
// headers read added to provider.claims, so the session keeps them.
func providerOptions(cfg *config.Config, client *http.Client, logger *slog.Logger) (idp.Options, error) {
	o := cfg.Provider
	o.HTTPClient = client
	o.Logger = logger
	needed, err := proxy.ClaimNames(cfg.Policy, cfg.Routes)
	if err != nil {
		return o, err
	}
	var added []string
	o.Claims = slices.Clone(o.Claims)
	for _, c := range needed {
		if !slices.Contains(o.Claims, c) {
			o.Claims = append(o.Claims, c)
			added = append(added, c)
		}
	}
	if len(added) > 0 {
		logger.Info("the session keeps the claims the policies and identity headers read, besides provider.claims", "claims", added)
	}
	return o, nil
}

// keyRing builds the identity assertion's key ring when a route sends the
// assertion: from the key file, or generated keys kept in the session
// store (sealed under the server secret), so every replica signs with the
// same key. nil when no route sends one. A store that cannot be reached
// now is retried with the provider's loading.
func (w *wiring) keyRing(ctx context.Context) (*identity.KeyRing, error) {
	if !slices.ContainsFunc(w.cfg.Routes, func(r proxy.Route) bool { return r.Identity != nil && r.Identity.Assertion }) {
		return nil, nil
	}
	keys, err := identity.NewKeyRing(ctx, identity.KeyRingConfig{
		Options:         w.cfg.Assertion,
		Store:           session.NewKeyStore(w.backend),
		Secret:          w.secret,
		PreviousSecrets: w.previous,
		Logger:          w.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("assertion signing keys: %w", err)
	}
	return keys, nil
}

// proxyOptions are the proxy's sections of the configuration with the
// runtime objects it uses. Validate has checked public_url.
func proxyOptions(cfg *config.Config, m *session.Manager, p *idp.Provider, keys *identity.KeyRing, upstream http.RoundTripper, logger *slog.Logger, reg prometheus.Registerer) proxy.Options {
	publicURL, _ := url.Parse(cfg.PublicURL)
	return proxy.Options{
		Sessions:      m,
		Provider:      p,
		Transport:     upstream,
		Logger:        logger,
		Registerer:    reg,
		AuthPrefix:    cfg.AuthPrefix,
		PublicURL:     publicURL,
		Cookie:        cfg.Cookie,
		Session:       cfg.Session.LifetimeOptions,
		Retry:         cfg.Refresh.RetryOptions,
		Upstream:      cfg.Upstream,
		CSRF:          cfg.CSRF,
		Logout:        cfg.Logout,
		ForwardAuth:   cfg.ForwardAuth,
		Routes:        cfg.Routes,
		CaptureRoutes: cfg.Provider.Custom.Capture,
		Policy:        cfg.Policy,
		Assertion:     cfg.Assertion,
		Keys:          keys,
		ErrorPages:    cfg.ErrorPages,
	}
}
