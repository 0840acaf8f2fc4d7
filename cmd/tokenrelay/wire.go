package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/config"
)

// app is what serve runs: the main handler, the readiness check behind
// /readyz, and Close, called once after the servers have shut down.
type app struct {
	Handler http.Handler
	Ready   func(context.Context) error
	Close   func() error
}

// errNotWired is the placeholder app's readiness error.
var errNotWired = errors.New("handler not wired yet")

// buildApp builds every runtime object from a validated configuration:
// the identity provider client, the session store and manager, the proxy.
// ctx lives as long as the app (background work such as JWKS refresh may
// use it); reg is the process registry.
//
// TODO(lead): wire idp.New, session.NewManager over MemoryStore or
// RedisStore (memory without a secret: config.GenerateSecret and the
// warning Load already gave), proxy.New. Until then it answers 503.
func buildApp(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*app, error) {
	return &app{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"not_wired"}` + "\n"))
		}),
		Ready: func(context.Context) error { return errNotWired },
		Close: func() error { return nil },
	}, nil
}
