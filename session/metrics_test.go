package session

import (
	"github.com/tokenrelay/tokenrelay/internal/idptest"

	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestSessionMetricLabelsStartAtZero pins the label values of the session
// counters that operations.md documents: every one exists at 0 from the
// first scrape, so a rate() or an alert over any of them works before the
// first event.
func TestSessionMetricLabelsStartAtZero(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	newTestManager(t, NewMemoryStore(nil), nil, idptest.NewTokenEndpoint(time.Now, time.Minute), func(o *ManagerOptions) { o.Registerer = reg })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if got[mf.GetName()] == nil {
					got[mf.GetName()] = map[string]float64{}
				}
				got[mf.GetName()][l.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	want := map[string][]string{
		"tokenrelay_sessions_created_total": {"login", "capture"},
		"tokenrelay_sessions_ended_total":   {"logout", "backchannel", "rejected", "expired", "lifetime", "replaced", "unknown_outcome", "admin"},
		"tokenrelay_refresh_total":          {"success", "rejected", "failed", "lost_race", "client_rejected", "unknown"},
	}
	for name, labels := range want {
		if len(got[name]) != len(labels) {
			t.Errorf("%s has %d series %v, want %d: %q", name, len(got[name]), got[name], len(labels), labels)
		}
		for _, l := range labels {
			v, ok := got[name][l]
			if !ok || v != 0 {
				t.Errorf("%s{%q} = %v (present %v), want a series at 0", name, l, v, ok)
			}
		}
	}
}
