package session

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric label values. They are pre-initialised, so every series exists at
// 0 from the first scrape and rate() works from the start.
const (
	refreshSuccess        = "success"         // the token endpoint answered with tokens
	refreshRejected       = "rejected"        // invalid_grant: the session ended
	refreshFailed         = "failed"          // a transient failure with a known outcome
	refreshLostRace       = "lost_race"       // another replica or flight refreshed first
	refreshClientRejected = "client_rejected" // the provider refused the client, not the token
	refreshUnknown        = "unknown"         // sent, but no answer: the outcome is unknown
)

// Grant labels of tokenrelay_token_grants_total: the grants behind route
// tokens other than refreshes.
const (
	grantClientCredentials = "client_credentials"
	grantTokenExchange     = "token_exchange"

	grantSuccess = "success" // a token was issued
	grantFailed  = "failed"  // a transient failure
	grantRefused = "refused" // the provider refused the client or the target
)

// EndReason says why a session ended: the reason label of
// tokenrelay_sessions_ended_total. Every value below is pre-initialised.
type EndReason string

// Reasons a session ends.
const (
	ReasonLogout      EndReason = "logout"      // the user logged out
	ReasonBackchannel EndReason = "backchannel" // the provider's back-channel logout
	ReasonRejected    EndReason = "rejected"    // the provider refused the refresh token
	ReasonExpired     EndReason = "expired"     // the access token expired with no refresh token
	ReasonLifetime    EndReason = "lifetime"    // the absolute lifetime passed
	ReasonReplaced    EndReason = "replaced"    // the browser logged in again (Replace)
	ReasonAdmin       EndReason = "admin"       // the admin API ended it
	// ReasonUnknownOutcome: a refresh's answer was lost (timeout, a
	// replica that died) and the access token expired; sending the refresh
	// token again could revoke the grant.
	ReasonUnknownOutcome EndReason = "unknown_outcome"
)

// Via says how a session started: the via label of
// tokenrelay_sessions_created_total. Every value below is pre-initialised.
type Via string

// Ways a session starts.
const (
	ViaLogin   Via = "login"   // the authorization-code callback
	ViaCapture Via = "capture" // a custom backend's login answer (token capture)
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
	opClaim       = "claim"
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
	// clientRejected is 1 while the provider refuses this replica's client.
	clientRejected prometheus.Gauge
	grants         *prometheus.CounterVec
}

// newMetrics builds the collectors and registers them on reg (nil: not
// registered, still counted).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_refresh_total",
			Help: "Access-token refreshes by result: success, rejected (invalid_grant, session ended), failed (transient error, token not spent), lost_race (another replica or request refreshed first), client_rejected (the provider refused tokenrelay's client), unknown (sent but unanswered: the refresh token is not sent again).",
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
			Help: "Sessions ended, by reason: logout, backchannel, rejected, expired, lifetime, replaced, unknown_outcome, admin.",
		}, []string{"reason"}),
		clientRejected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokenrelay_provider_client_rejected",
			Help: "1 while the identity provider refuses this replica's client (invalid_client and the like: a configuration error); readiness fails meanwhile.",
		}),
		grants: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_token_grants_total",
			Help: "Token requests behind route tokens other than refreshes, by grant (client_credentials, token_exchange) and result: success, failed (transient), refused (the provider refused the client or the route's target).",
		}, []string{"grant", "result"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenrelay_store_errors_total",
			Help: "Session store operations that failed, by operation.",
		}, []string{"op"}),
	}
	for _, r := range []string{refreshSuccess, refreshRejected, refreshFailed, refreshLostRace, refreshClientRejected, refreshUnknown} {
		m.refreshes.WithLabelValues(r)
	}
	for _, g := range []string{grantClientCredentials, grantTokenExchange} {
		for _, r := range []string{grantSuccess, grantFailed, grantRefused} {
			m.grants.WithLabelValues(g, r)
		}
	}
	for _, v := range []Via{ViaLogin, ViaCapture} {
		m.created.WithLabelValues(string(v))
	}
	for _, r := range []EndReason{ReasonLogout, ReasonBackchannel, ReasonRejected, ReasonExpired, ReasonLifetime, ReasonReplaced, ReasonUnknownOutcome, ReasonAdmin} {
		m.ended.WithLabelValues(string(r))
	}
	for _, op := range []string{opGet, opCreate, opUpdate, opTouch, opDelete, opLock, opUnlock, opClaim, opIndexAdd, opIndexList, opIndexRemove, opPing} {
		m.storeErrors.WithLabelValues(op)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.refreshes, m.refreshTime, m.shared, m.lockWait, m.created, m.ended, m.storeErrors, m.clientRejected, m.grants} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("session: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
