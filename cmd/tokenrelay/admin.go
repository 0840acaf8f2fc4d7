package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readyTimeout bounds one readiness check (a store ping, say), so a hung
// dependency fails the probe instead of holding it open.
const readyTimeout = 2 * time.Second

// newRegistry builds the process's metrics registry: Go and process
// collectors and tokenrelay_build_info. Nothing registers globally.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tokenrelay_build_info",
		Help: "Always 1; the labels say which build is running.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
	)
	return reg
}

// checkError is a failed readiness check: /readyz names the check, the log
// gets the cause (an internal address or error text is nobody else's
// business, and the admin listener may be reachable from the cluster).
type checkError struct {
	check string // "store", "provider"
	err   error
}

func (e *checkError) Error() string { return e.check + ": " + e.err.Error() }
func (e *checkError) Unwrap() error { return e.err }

// failedCheck wraps err, when non-nil, as the failure of check.
func failedCheck(check string, err error) error {
	if err == nil {
		return nil
	}
	return &checkError{check: check, err: err}
}

// readinessAnswer is the /readyz body for a failed readiness: the names of
// the failed checks, never their causes.
func readinessAnswer(err error) string {
	var names []string
	var walk func(error)
	walk = func(err error) {
		var ce *checkError
		switch j := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range j.Unwrap() {
				walk(e)
			}
		default:
			if errors.As(err, &ce) {
				names = append(names, ce.check+": unavailable")
			}
		}
	}
	walk(err)
	if len(names) == 0 {
		return "not ready"
	}
	return "not ready: " + strings.Join(names, ", ")
}

// adminHandler serves /metrics, /healthz and /readyz, and the session
// admin API under /admin/ when api is not nil.
//
// /healthz answers 200 while the process can serve HTTP at all (liveness).
// /readyz answers 200 only while ready says so and shutdown has not begun,
// so load balancers stop sending traffic before the listener closes. When
// not ready it names the failed checks ("not ready: store: unavailable");
// the causes go to the log, at warn when they change and at debug while
// they persist, so a probe every few seconds does not flood it.
// A nil ready means always ready.
func adminHandler(reg *prometheus.Registry, ready func(context.Context) error, draining *atomic.Bool, logger *slog.Logger, api http.Handler) http.Handler {
	if ready == nil {
		ready = func(context.Context) error { return nil }
	}
	reg.MustRegister(readyGauge(ready, draining))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError),
		Registry: reg,
	}))
	if api != nil {
		mux.Handle("/admin/", api)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	var mu sync.Mutex // guards last
	last := ""        // the previous readiness failure, "" when ready
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			plain(w, http.StatusServiceUnavailable, "shutting down")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		err := ready(ctx)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		mu.Lock()
		changed := msg != last
		last = msg
		mu.Unlock()
		if err != nil {
			level := slog.LevelDebug
			if changed {
				level = slog.LevelWarn
			}
			logger.Log(r.Context(), level, "not ready", "error", err)
			plain(w, http.StatusServiceUnavailable, readinessAnswer(err))
			return
		}
		if changed {
			logger.Info("ready")
		}
		plain(w, http.StatusOK, "ok")
	})
	return mux
}

// readyGauge is tokenrelay_ready: 1 when /readyz would answer 200, 0 when
// it would answer 503, checked at each scrape (a store ping, bounded by
// readyTimeout), so dashboards and alerts see readiness without the
// kubelet's probe results.
func readyGauge(ready func(context.Context) error, draining *atomic.Bool) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tokenrelay_ready",
		Help: "1 while /readyz answers 200 (store reachable, provider loaded, not shutting down), 0 otherwise; checked at each scrape.",
	}, func() float64 {
		if draining.Load() {
			return 0
		}
		ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
		defer cancel()
		if ready(ctx) != nil {
			return 0
		}
		return 1
	})
}

func plain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body + "\n"))
}
