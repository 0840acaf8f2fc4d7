package proxy

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the request path's Prometheus collectors. Label values come
// from a fixed set: configured route names, "auth", "unmatched", and HTTP
// status codes.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
}

// newMetrics builds the collectors and registers them on reg unless reg is
// nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_requests_total",
			Help: "Requests answered, by route and HTTP status (499: the client went away).",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tokenrelay_request_duration_seconds",
			Help: "Time from receiving a request to the end of its answer, by route.",
			// Finer than the default buckets at the low end: the proxy's
			// own overhead is well under a millisecond.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_upstream_retries_total",
			Help: "Requests sent again with a refreshed token after the upstream answered 401, by route.",
		}, []string{"route"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.retries} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if errors.As(err, &are) {
					return nil, fmt.Errorf("proxy: metrics: already registered (one Handler per registry): %w", err)
				}
				return nil, fmt.Errorf("proxy: metrics: %w", err)
			}
		}
	}
	return m, nil
}

// route returns the collectors of one route label, created once so the
// request path does not hash label values for them.
func (m *metrics) route(label string) *routeMetrics {
	return &routeMetrics{
		label:    label,
		requests: m.requests,
		duration: m.duration.WithLabelValues(label),
		retries:  m.retries.WithLabelValues(label),
	}
}

// routeMetrics are the collectors of one route label. Safe for concurrent
// use.
type routeMetrics struct {
	label    string
	requests *prometheus.CounterVec
	duration prometheus.Observer
	retries  prometheus.Counter
	// codes caches the requests counter per status code (int ->
	// prometheus.Counter).
	codes sync.Map
}

// observe counts one answered request.
func (rm *routeMetrics) observe(status int, d time.Duration) {
	rm.duration.Observe(d.Seconds())
	if c, ok := rm.codes.Load(status); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := rm.requests.WithLabelValues(rm.label, strconv.Itoa(status))
	rm.codes.Store(status, c)
	c.Inc()
}
