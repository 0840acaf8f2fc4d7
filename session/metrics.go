package session

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric label values. They are pre-initialised, so every series exists at
// 0 from the first scrape and rate() works from the start.
const (
	refreshSuccess  = "success"   // the token endpoint answered with tokens
	refreshRejected = "rejected"  // invalid_grant: the session ended
	refreshFailed   = "failed"    // any other error
	refreshLostRace = "lost_race" // another replica or flight refreshed first

	// Reasons a session ends (tokenrelay_sessions_ended_total{reason}).
	ReasonLogout      = "logout"      // the user logged out
	ReasonBackchannel = "backchannel" // the provider's back-channel logout
	ReasonRejected    = "rejected"    // the provider refused the refresh token
	ReasonExpired     = "expired"     // the access token expired with no refresh token
	ReasonLifetime    = "lifetime"    // the absolute lifetime passed

	// Ways a session starts (tokenrelay_sessions_created_total{via}).
	ViaLogin   = "login"
	ViaCapture = "capture"
)

// Store operation labels (tokenrelay_store_errors_total{op}).
const (
	opGet         = "get"
	opCreate      = "create"
	opUpdate      = "update"
	opTouch       = "touch"
	opDelete      = "delete"
	opLock        = "lock"
	opUnlock      = "unlock"
	opPutState    = "put_state"
	opTakeState   = "take_state"
	opIndexAdd    = "index_add"
	opIndexList   = "index_members"
	opIndexRemove = "index_remove"
	opPing        = "ping"
)

type metrics struct {
	refreshes   *prometheus.CounterVec
	refreshTime prometheus.Histogram
	shared      prometheus.Counter
	lockWait    prometheus.Histogram
	created     *prometheus.CounterVec
	ended       *prometheus.CounterVec
	storeErrors *prometheus.CounterVec
}

// newMetrics builds the collectors and registers them on reg (nil: not
// registered, still counted).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_refresh_total",
			Help: "Access-token refreshes by result: success, rejected (invalid_grant, session ended), failed (other error), lost_race (another replica or request refreshed first).",
		}, []string{"result"}),
		refreshTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokenrelay_refresh_duration_seconds",
			Help:    "Duration of token endpoint refresh calls.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		shared: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokenrelay_refresh_shared_total",
			Help: "Requests that used tokens from a refresh made by another request, in this process or another replica.",
		}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokenrelay_refresh_lock_wait_seconds",
			Help:    "Time a refresh spent getting the cross-replica refresh lock or waiting for its holder.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_sessions_created_total",
			Help: "Sessions created, by how: login or capture.",
		}, []string{"via"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_sessions_ended_total",
			Help: "Sessions ended, by reason: logout, backchannel, rejected, expired, lifetime.",
		}, []string{"reason"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_store_errors_total",
			Help: "Session store operations that failed, by operation.",
		}, []string{"op"}),
	}
	for _, r := range []string{refreshSuccess, refreshRejected, refreshFailed, refreshLostRace} {
		m.refreshes.WithLabelValues(r)
	}
	for _, v := range []string{ViaLogin, ViaCapture} {
		m.created.WithLabelValues(v)
	}
	for _, r := range []string{ReasonLogout, ReasonBackchannel, ReasonRejected, ReasonExpired, ReasonLifetime} {
		m.ended.WithLabelValues(r)
	}
	for _, op := range []string{opGet, opCreate, opUpdate, opTouch, opDelete, opLock, opUnlock, opPutState, opTakeState, opIndexAdd, opIndexList, opIndexRemove, opPing} {
		m.storeErrors.WithLabelValues(op)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.refreshes, m.refreshTime, m.shared, m.lockWait, m.created, m.ended, m.storeErrors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("session: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
