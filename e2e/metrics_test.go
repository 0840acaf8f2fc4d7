package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsScrape is one parsed scrape of tokenrelay's admin /metrics.
type metricsScrape struct {
	raw      []byte
	families map[string]*dto.MetricFamily
}

// metricsGet scrapes s.AdminURL/metrics, parses it and runs promlint over
// it: any lint problem fails the test.
func metricsGet(t *testing.T, s *stack) metricsScrape {
	t.Helper()
	resp, err := http.Get(s.AdminURL + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d, error %v", resp.StatusCode, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("scrape: parse: %v", err)
	}
	problems, err := promlint.New(bytes.NewReader(raw)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	return metricsScrape{raw: raw, families: fams}
}

// metricsLabelKey renders a series' labels as "k=v,k=v" (sorted by name).
func metricsLabelKey(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// series returns every series of the family name as labels → value (a
// counter's or gauge's value, a histogram's sample count).
func (sc metricsScrape) series(name string) map[string]float64 {
	out := map[string]float64{}
	f := sc.families[name]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		var v float64
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			v = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v = m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			v = float64(m.GetHistogram().GetSampleCount())
		default:
			v = m.GetUntyped().GetValue()
		}
		out[metricsLabelKey(m)] = v
	}
	return out
}

// metricsWant is the exact state of the refresh and session metrics.
type metricsWant struct {
	refresh  map[string]float64 // tokenrelay_refresh_total by result
	shared   float64
	created  float64            // via="login"
	ended    map[string]float64 // tokenrelay_sessions_ended_total by reason
	requests map[string]float64 // tokenrelay_requests_total, every series
	duration float64            // tokenrelay_refresh_duration_seconds _count
}

// check compares the scrape with w. Series w leaves out must be 0 (for the
// pre-initialised vectors) or absent (for requests).
func (w metricsWant) check(t *testing.T, phase string, sc metricsScrape) {
	t.Helper()
	vec := func(name, label string, want map[string]float64, values []string) {
		t.Helper()
		got := sc.series(name)
		for _, v := range values {
			key := label + "=" + v
			g, ok := got[key]
			if !ok {
				t.Errorf("%s: %s{%s} is missing (label values are pre-initialised)", phase, name, key)
				continue
			}
			if g != want[v] {
				t.Errorf("%s: %s{%s} = %v, want %v", phase, name, key, g, want[v])
			}
		}
		if len(got) != len(values) {
			t.Errorf("%s: %s has %d series, want %d: %v", phase, name, len(got), len(values), got)
		}
	}
	vec("tokenrelay_refresh_total", "result", w.refresh, []string{"success", "rejected", "failed", "lost_race", "client_rejected", "unknown"})
	vec("tokenrelay_sessions_ended_total", "reason", w.ended, []string{"logout", "backchannel", "rejected", "expired", "lifetime", "replaced", "unknown_outcome", "admin"})
	vec("tokenrelay_sessions_created_total", "via", map[string]float64{"login": w.created}, []string{"login", "capture"})

	if got := sc.series("tokenrelay_refresh_shared_total")[""]; got != w.shared {
		t.Errorf("%s: tokenrelay_refresh_shared_total = %v, want %v", phase, got, w.shared)
	}
	if got := sc.series("tokenrelay_refresh_duration_seconds")[""]; got != w.duration {
		t.Errorf("%s: tokenrelay_refresh_duration_seconds_count = %v, want %v", phase, got, w.duration)
	}
	if got := sc.series("tokenrelay_requests_total"); !maps.Equal(got, w.requests) {
		t.Errorf("%s: tokenrelay_requests_total = %v, want %v", phase, got, w.requests)
	}
}

// metricsLabelSets are the only values each label of tokenrelay's own
// metrics may take: fixed sets, so no path or user id becomes a series.
var metricsLabelSets = map[string]*regexp.Regexp{
	"route":     regexp.MustCompile(`^(auth|unmatched|api|root)$`),
	"code":      regexp.MustCompile(`^[1-5][0-9][0-9]$`),
	"result":    regexp.MustCompile(`^(success|rejected|failed|lost_race|client_rejected|unknown|refused)$`),
	"grant":     regexp.MustCompile(`^(client_credentials|token_exchange)$`),
	"via":       regexp.MustCompile(`^(login|capture)$`),
	"reason":    regexp.MustCompile(`^(logout|backchannel|rejected|expired|lifetime|replaced|unknown_outcome|admin)$`),
	"op":        regexp.MustCompile(`^[a-z_]+$`),
	"version":   regexp.MustCompile(`^\S+$`),
	"goversion": regexp.MustCompile(`^go1\.\S+$`),
}

// checkLabelValues fails the test for any tokenrelay_* series whose label is
// unknown or whose value falls outside its fixed set, or that mentions a
// user or a path.
func checkLabelValues(t *testing.T, sc metricsScrape, users ...string) {
	t.Helper()
	for name, f := range sc.families {
		if !strings.HasPrefix(name, "tokenrelay_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				re, ok := metricsLabelSets[l.GetName()]
				v := l.GetValue()
				switch {
				case !ok:
					t.Errorf("%s has label %q, which has no fixed value set", name, l.GetName())
				case !re.MatchString(v):
					t.Errorf("%s{%s=%q}: value outside the fixed set %s", name, l.GetName(), v, re)
				case strings.Contains(v, "/") && l.GetName() != "version":
					t.Errorf("%s{%s=%q}: a path as a label value", name, l.GetName(), v)
				}
				for _, u := range users {
					if strings.Contains(v, u) {
						t.Errorf("%s{%s=%q}: a user id as a label value", name, l.GetName(), v)
					}
				}
			}
		}
	}
}

// opPost calls one of the OP's test hooks.
func opPost(t *testing.T, o *op, path string, q url.Values, want int) []byte {
	t.Helper()
	resp, err := o.client.Post(o.Issuer+path+"?"+q.Encode(), "", nil)
	if err != nil {
		t.Fatalf("op %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("op %s: status %d, want %d; body %s", path, resp.StatusCode, want, body)
	}
	return body
}

// TestMetrics: the admin /metrics after a login, a refresh, a
// refresh shared by concurrent requests and a refresh the OP rejects shows
// exactly those events; promlint finds no problem; label values come from
// fixed sets.
func TestMetrics(t *testing.T) {
	t.Parallel()
	const (
		user = "metrics-mallory"
		n    = 8 // concurrent requests in the shared refresh
	)
	s := startStack(t, stackOptions{AccessTTL: 3 * time.Second, RefreshAhead: time.Second, AllowInvalidGrant: true})

	// Before anything: the pre-initialised series are all 0, and the
	// process-wide collectors are there.
	want := metricsWant{requests: map[string]float64{}}
	sc := metricsGet(t, s)
	want.check(t, "at start", sc)
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if sc.families[name] == nil {
			t.Errorf("at start: %s is missing (Go and process collectors)", name)
		}
	}
	if bi := sc.series("tokenrelay_build_info"); len(bi) != 1 || slices.Collect(maps.Values(bi))[0] != 1 {
		t.Errorf("tokenrelay_build_info = %v, want one series at 1", bi)
	}

	// (a) A login: /.auth/login and /.auth/callback redirect, the return_to
	// navigation reaches the API.
	b := newBrowser(t)
	b.login(t, s.RelayURL, "/api/whoami", user)
	want.created = 1
	want.requests = map[string]float64{"code=302,route=auth": 2, "code=200,route=api": 1}
	want.check(t, "after login", metricsGet(t, s))
	_, first := currentToken(t, s, b)
	want.requests["code=200,route=api"]++

	// (b) A refresh: the next call after expiry.
	waitUntil(t, first.ExpiresAt.Time.Add(100*time.Millisecond), 10*time.Second)
	_, second := currentToken(t, s, b)
	want.refresh = map[string]float64{"success": 1}
	want.duration = 1
	want.requests["code=200,route=api"]++
	want.check(t, "after a refresh", metricsGet(t, s))

	// (c) A shared refresh: n concurrent calls on the expired session. The
	// OP holds its token answers for a moment so that every call joins the
	// one refresh in flight.
	opPost(t, s.OP, "/__token_delay", url.Values{"ms": {"1000"}}, http.StatusNoContent)
	waitUntil(t, second.ExpiresAt.Time.Add(100*time.Millisecond), 10*time.Second)
	statuses, errs, _ := b.burst(s.RelayURL+"/api/whoami", n, http.Header{"Accept": {"application/json"}})
	for i, err := range errs {
		if err != nil {
			t.Errorf("shared refresh, request %d: %v", i, err)
		}
	}
	opPost(t, s.OP, "/__token_delay", url.Values{"ms": {"0"}}, http.StatusNoContent)
	if got, want := statuses, slices.Repeat([]int{http.StatusOK}, n); !slices.Equal(got, want) {
		t.Fatalf("shared refresh: statuses %v, want %v", got, want)
	}
	want.refresh["success"]++
	want.shared = n - 1
	want.duration++
	want.requests["code=200,route=api"] += n
	want.check(t, "after a shared refresh", metricsGet(t, s))
	// The shared refresh's token, as the upstream last received it: one
	// more call could find it already stale (3 s tokens refreshed 1 s
	// ahead, on a loaded machine) and refresh it in the background, which
	// would count a refresh this test does not mean.
	third := s.OP.VerifyAccessToken(t, bearerToken(t, s.Tap.Last(t).Authorization))

	// (d) A failed refresh: the OP's administrator revokes the grant; the
	// next refresh gets invalid_grant and the session ends.
	var revoked struct{ Grants int }
	if err := json.Unmarshal(opPost(t, s.OP, "/__revoke", url.Values{"sub": {user}}, http.StatusOK), &revoked); err != nil || revoked.Grants != 1 {
		t.Fatalf("op revoke: %+v, %v; want 1 grant", revoked, err)
	}
	waitUntil(t, third.ExpiresAt.Time.Add(100*time.Millisecond), 10*time.Second)
	o := b.get(t, s.RelayURL+"/api/whoami", nil)
	var answer struct{ Error string }
	_ = json.Unmarshal(o.Body, &answer)
	if o.Status != http.StatusUnauthorized || answer.Error != "session_expired" {
		t.Fatalf("after the grant was revoked: %d %s, want 401 session_expired", o.Status, o.Body)
	}
	want.refresh["rejected"] = 1
	want.duration++
	want.ended = map[string]float64{"rejected": 1}
	want.requests["code=401,route=api"] = 1
	sc = metricsGet(t, s)
	want.check(t, "after a rejected refresh", sc)
	checkLabelValues(t, sc, user)

	st := s.OP.Stats(t)
	if got, want := fmt.Sprint(st.RefreshSuccess, st.InvalidGrant, st.RefreshReused), "2 1 0"; got != want {
		t.Errorf("OP refresh_success, invalid_grant, refresh_reused = %s, want %s", got, want)
	}
}
