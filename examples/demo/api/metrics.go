package main

import (
	"context"
	"io"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// refreshMetrics reads tokenrelay's refresh counters from its admin
// listener for the demo page, which shows them live: GET /demo/metrics
// answers a small JSON of a few counters. The browser never reaches the
// admin listener itself (it stays on loopback, with /readyz, the full
// metrics and, when configured, the session admin API); this process, on
// the same host, reads it and passes on only these numbers.
type refreshMetrics struct {
	url    string // tokenrelay's admin /metrics; "" turns the endpoint off
	client *http.Client
}

// demoMetrics is the answer of GET /demo/metrics.
type demoMetrics struct {
	// Refreshes counts refresh attempts by result (success, rejected,
	// failed, lost_race, client_rejected, unknown).
	Refreshes map[string]float64 `json:"refreshes"`
	// Shared counts requests that used another request's refresh.
	Shared float64 `json:"shared"`
	// TokenCalls and TokenSeconds are the count and total duration of
	// token endpoint round trips.
	TokenCalls   float64 `json:"token_calls"`
	TokenSeconds float64 `json:"token_seconds"`
	// SessionsCreated and SessionsEnded count sessions (ended by reason).
	SessionsCreated float64            `json:"sessions_created"`
	SessionsEnded   map[string]float64 `json:"sessions_ended"`
}

// maxMetricsBytes bounds the scrape read.
const maxMetricsBytes = 4 << 20

func (m *refreshMetrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m.url == "" {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_configured", "message": "the API was started without -metrics-url"})
		return
	}
	out, err := m.read(r.Context())
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": "metrics_unavailable", "message": "tokenrelay's metrics could not be read"})
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// read scrapes tokenrelay and picks the counters the page shows.
func (m *refreshMetrics) read(ctx context.Context) (*demoMetrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, io.ErrUnexpectedEOF
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, maxMetricsBytes))
	if err != nil {
		return nil, err
	}
	out := &demoMetrics{
		Refreshes:       byLabel(fams["tokenrelay_refresh_total"], "result"),
		Shared:          sum(fams["tokenrelay_refresh_shared_total"]),
		SessionsCreated: sum(fams["tokenrelay_sessions_created_total"]),
		SessionsEnded:   byLabel(fams["tokenrelay_sessions_ended_total"], "reason"),
	}
	if f := fams["tokenrelay_refresh_duration_seconds"]; f != nil {
		for _, s := range f.GetMetric() {
			out.TokenCalls += float64(s.GetHistogram().GetSampleCount())
			out.TokenSeconds += s.GetHistogram().GetSampleSum()
		}
	}
	return out, nil
}

// byLabel sums a counter family's series by the value of label.
func byLabel(f *dto.MetricFamily, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range f.GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == label {
				out[l.GetValue()] += s.GetCounter().GetValue()
			}
		}
	}
	return out
}

// sum adds up a counter family's series.
func sum(f *dto.MetricFamily) float64 {
	var n float64
	for _, s := range f.GetMetric() {
		n += s.GetCounter().GetValue()
	}
	return n
}
