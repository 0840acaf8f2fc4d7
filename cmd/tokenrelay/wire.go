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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/config"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/proxy"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
)

// app is what serve runs: the main handler, the readiness check behind
// /readyz, and Close, called once after the servers have shut down.
type app struct {
	Handler http.Handler
	Ready   func(context.Context) error
	Close   func() error
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
	backend, closeBackend, err := buildBackend(cfg, logger)
	if err != nil {
		return nil, err
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
	providerClient, err := providerHTTPClient(cfg.Provider)
	if err != nil {
		closeBackend()
		return nil, err
	}
	upstream, err := upstreamTransport(cfg.Upstream)
	if err != nil {
		closeBackend()
		return nil, err
	}

	w := &wiring{
		cfg:      cfg,
		logger:   logger,
		reg:      reg,
		backend:  backend,
		secret:   []byte(serverSecret.Reveal()),
		previous: previous,
		client:   providerClient,
		upstream: upstream,
	}
	loadCtx, stopLoading := context.WithCancel(ctx)
	done := make(chan struct{})
	if err := w.load(loadCtx); errors.Is(err, errBuild) {
		stopLoading()
		closeBackend()
		return nil, err
	} else if err != nil {
		logger.Error("identity provider not available yet; retrying in the background", "error", err)
		go func() {
			defer close(done)
			w.retryLoad(loadCtx)
		}()
	} else {
		close(done)
	}

	var closeOnce sync.Once
	var closeErr error
	return &app{
		Handler: w,
		Ready:   w.ready,
		Close: func() error {
			closeOnce.Do(func() {
				stopLoading()
				<-done
				if p := w.provider.Load(); p != nil {
					p.Close()
				}
				upstream.CloseIdleConnections()
				closeErr = closeBackend()
			})
			return closeErr
		},
	}, nil
}

// wiring holds what buildApp made and, once the provider has loaded, the
// live handler. It is safe for concurrent use.
type wiring struct {
	cfg      *config.Config
	logger   *slog.Logger
	reg      prometheus.Registerer
	backend  session.Backend
	secret   []byte
	previous [][]byte
	client   *http.Client
	upstream *http.Transport

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
	rw.Header().Set("Content-Type", "application/json; charset=utf-8")
	rw.Header().Set("Cache-Control", "no-store")
	rw.Header().Set("Retry-After", "5")
	rw.WriteHeader(http.StatusServiceUnavailable)
	_, _ = rw.Write([]byte(`{"error":"provider_unavailable","message":"the identity provider's metadata has not loaded yet"}` + "\n"))
}

// ready reports whether the store answers and the provider's metadata and
// keys are loaded.
func (w *wiring) ready(ctx context.Context) error {
	p, m := w.provider.Load(), w.manager.Load()
	if p == nil || m == nil {
		return errProviderLoading
	}
	return errors.Join(p.Ready(ctx), m.Ready(ctx))
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
		w.logger.Error("identity provider not available yet; retrying", "error", err, "retry_in", wait)
		wait = min(2*wait, providerRetryMax)
	}
}

// load builds the provider client (discovery, keys), the session manager
// and the proxy handler, and publishes them.
func (w *wiring) load(ctx context.Context) error {
	cfg := w.cfg
	p, err := idp.New(ctx, providerOptions(cfg, w.client, w.logger))
	if err != nil {
		return err
	}
	m, err := session.NewManager(session.ManagerOptions{
		Backend:         w.backend,
		Secret:          w.secret,
		PreviousSecrets: w.previous,
		Refresher:       p,
		Issuer:          cfg.Provider.Issuer,
		Logger:          w.logger,
		Registerer:      w.reg,
		IdleTimeout:     cfg.Session.IdleTimeout,
		MaxLifetime:     cfg.Session.MaxLifetime,
		LoginStateTTL:   cfg.Session.LoginStateTTL,
		RefreshAhead:    cfg.Refresh.Ahead,
		RefreshTimeout:  cfg.Refresh.Timeout,
		FailureBackoff:  cfg.Refresh.FailureBackoff,
		LockTTL:         cfg.Refresh.LockTTL,
	})
	if err != nil {
		p.Close()
		return fmt.Errorf("%w: session manager: %w", errBuild, err)
	}
	h, err := proxy.New(proxyOptions(cfg, m, p, w.upstream, w.logger, w.reg))
	if err != nil {
		p.Close()
		return fmt.Errorf("%w: %w", errBuild, err)
	}
	w.provider.Store(p)
	w.manager.Store(m)
	w.handler.Store(h)
	return nil
}

// buildBackend builds the session store named by session.store and its
// close function.
func buildBackend(cfg *config.Config, logger *slog.Logger) (session.Backend, func() error, error) {
	switch cfg.Session.Store {
	case "redis":
		r := cfg.Session.Redis
		client, err := session.NewRedisClient(session.RedisClientOptions{
			URL:              r.URL,
			Addresses:        r.Addresses,
			MasterName:       r.MasterName,
			Cluster:          r.Cluster,
			Username:         r.Username,
			Password:         r.Password,
			SentinelPassword: r.SentinelPassword,
			DB:               r.DB,
			TLS:              r.TLS,
			CAFile:           r.CAFile,
			CertFile:         r.CertFile,
			KeyFile:          r.KeyFile,
			ServerName:       r.ServerName,
			DialTimeout:      r.DialTimeout,
			ReadTimeout:      r.ReadTimeout,
			WriteTimeout:     r.WriteTimeout,
			PoolSize:         r.PoolSize,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("redis: %w", err)
		}
		store := session.NewRedisStore(client, session.RedisStoreOptions{KeyPrefix: r.KeyPrefix, Logger: logger})
		closeAll := func() error { return errors.Join(store.Close(), client.Close()) }
		return store, closeAll, nil
	default:
		return session.NewMemoryStore(nil), func() error { return nil }, nil
	}
}

// providerHTTPClient is the client for every call to the identity provider.
// Each call has its own deadline (provider.timeout, refresh.timeout), so the
// client sets none; its transport trusts provider.ca_file when set.
func providerHTTPClient(p config.ProviderConfig) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// The engine makes at most one refresh per session at a time, but many
	// sessions refresh together after a deploy: keep enough idle
	// connections to the token endpoint to avoid a TLS handshake each.
	t.MaxIdleConnsPerHost = 64
	if p.CAFile != "" {
		pool, err := loadCertPool(p.CAFile)
		if err != nil {
			return nil, fmt.Errorf("provider.ca_file: %w", err)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{
		Transport: t,
		// Never follow redirects from a token endpoint: a 3xx there is an
		// error, and following it could send credentials elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// upstreamTransport is the transport to every upstream.
func upstreamTransport(u config.UpstreamConfig) (*http.Transport, error) {
	return proxy.NewTransport(proxy.TransportOptions{
		MaxIdleConnsPerHost:   u.MaxIdleConnsPerHost,
		IdleConnTimeout:       u.IdleConnTimeout,
		DialTimeout:           u.DialTimeout,
		ResponseHeaderTimeout: u.ResponseHeaderTimeout,
	}), nil
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

// providerOptions maps provider configuration onto idp.Options.
func providerOptions(cfg *config.Config, client *http.Client, logger *slog.Logger) idp.Options {
	p := cfg.Provider
	c := p.Custom
	headers := make(map[string]secret.String, len(c.RefreshRequest.Headers)+len(c.RefreshRequest.SecretHeaders))
	for k, v := range c.RefreshRequest.Headers {
		headers[k] = secret.String(v)
	}
	for k, v := range c.RefreshRequest.SecretHeaders {
		headers[k] = v
	}
	return idp.Options{
		Type:                  p.Type,
		Issuer:                p.Issuer,
		ClientID:              p.ClientID,
		ClientSecret:          p.ClientSecret,
		AuthMethod:            p.AuthMethod,
		Scopes:                p.Scopes,
		AuthParams:            p.AuthParams,
		TokenParams:           p.TokenParams,
		RedirectURL:           cfg.RedirectURL(),
		AuthorizationEndpoint: p.AuthorizationEndpoint,
		TokenEndpoint:         p.TokenEndpoint,
		RevocationEndpoint:    p.RevocationEndpoint,
		EndSessionEndpoint:    p.EndSessionEndpoint,
		UserinfoEndpoint:      p.UserinfoEndpoint,
		JWKSURI:               p.JWKSURI,
		AccessTokenLifetime:   p.AccessTokenLifetime,
		ClockSkew:             p.ClockSkew,
		MaxResponseBytes:      p.MaxResponseBytes,
		Claims:                p.Claims,
		Timeout:               p.Timeout,
		HTTPClient:            client,
		Logger:                logger,
		Custom: idp.CustomOptions{
			RefreshRequest: idp.RequestTemplate{
				Method:  c.RefreshRequest.Method,
				Format:  c.RefreshRequest.Format,
				Body:    c.RefreshRequest.Body,
				Headers: headers,
			},
			Mapping: idp.ResponseMapping{
				AccessToken:  c.TokenResponse.AccessToken,
				RefreshToken: c.TokenResponse.RefreshToken,
				ExpiresIn:    c.TokenResponse.ExpiresIn,
				IDToken:      c.TokenResponse.IDToken,
				Subject:      c.TokenResponse.Subject,
			},
			DeadStatuses:    c.DeadStatuses,
			DeadErrorField:  c.DeadErrorField,
			DeadErrorValues: c.DeadErrorValues,
		},
	}
}

// proxyOptions maps the configuration onto proxy.Options. Validate has
// checked every value parsed here.
func proxyOptions(cfg *config.Config, m *session.Manager, p *idp.Provider, upstream http.RoundTripper, logger *slog.Logger, reg prometheus.Registerer) proxy.Options {
	publicURL, _ := url.Parse(cfg.PublicURL)
	routes := make([]proxy.Route, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		up, _ := url.Parse(r.Upstream)
		auth, _ := proxy.ParseAuthMode(r.Auth)
		unauth, _ := proxy.ParseUnauthMode(r.OnUnauthenticated)
		routes = append(routes, proxy.Route{
			Name:              r.Name,
			Path:              r.Path,
			Upstream:          up,
			Auth:              auth,
			OnUnauthenticated: unauth,
			CSRFHeader:        r.CSRFHeader == nil || *r.CSRFHeader,
			StripPrefix:       r.StripPrefix,
			PassHost:          r.PassHost,
		})
	}
	captures := make([]proxy.CaptureRoute, 0, len(cfg.Provider.Custom.Capture))
	for _, c := range cfg.Provider.Custom.Capture {
		captures = append(captures, proxy.CaptureRoute{Method: c.Method, Path: c.Path})
	}
	sameSite := http.SameSiteLaxMode
	if cfg.Cookie.SameSite == "strict" {
		sameSite = http.SameSiteStrictMode
	}
	return proxy.Options{
		Sessions: m,
		Provider: p,
		Cookie: session.CookieOptions{
			Name:     cfg.Cookie.Name,
			Secure:   cfg.Cookie.Secure == nil || *cfg.Cookie.Secure,
			SameSite: sameSite,
		},
		AuthPrefix:            cfg.AuthPrefix,
		PublicURL:             publicURL,
		Routes:                routes,
		RetryOn401:            cfg.Refresh.RetryOn401 == nil || *cfg.Refresh.RetryOn401,
		MaxRetryBody:          cfg.Refresh.MaxRetryBody,
		MaxRequestBody:        cfg.Upstream.MaxRequestBody,
		CSRFHeader:            cfg.CSRF.Header,
		TrustedOrigins:        cfg.CSRF.TrustedOrigins,
		PostLogoutRedirectURI: cfg.Logout.PostLogoutRedirectURI,
		RevokeOnLogout:        cfg.Logout.Revoke == nil || *cfg.Logout.Revoke,
		SessionMaxAge:         cfg.Session.MaxLifetime,
		LoginStateTTL:         cfg.Session.LoginStateTTL,
		CaptureRoutes:         captures,
		Transport:             upstream,
		FlushInterval:         cfg.Upstream.FlushInterval,
		Logger:                logger,
		Registerer:            reg,
	}
}
