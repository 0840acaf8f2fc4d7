package dashboardtest

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

const dashboardPath = "../../examples/grafana/tokenrelay.json"

// The dashboard's variables: the data source, and the job and instance
// every query is scoped to.
var wantVariables = map[string]string{"datasource": "datasource", "job": "query", "instance": "query"}

// What the dashboard must show, by metric: requests, errors and latency by
// route; refreshes by result, refresh latency, shared refreshes, lock
// waits; sessions created and ended; store errors; readiness.
var wantMetrics = []string{
	"tokenrelay_requests_total",
	"tokenrelay_request_duration_seconds_bucket",
	"tokenrelay_refresh_total",
	"tokenrelay_refresh_duration_seconds_bucket",
	"tokenrelay_refresh_shared_total",
	"tokenrelay_refresh_lock_wait_seconds_bucket",
	"tokenrelay_sessions_created_total",
	"tokenrelay_sessions_ended_total",
	"tokenrelay_store_errors_total",
	"tokenrelay_ready",
}

// TestDashboardMatchesExportedMetrics parses every panel query and every
// variable query of the dashboard and checks each metric, label and label
// value it names against the /metrics of the real tokenrelay binary.
func TestDashboardMatchesExportedMetrics(t *testing.T) {
	d, err := Load(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	exported := scrapeTokenrelay(t)
	for _, m := range wantMetrics {
		if _, ok := exported[m]; !ok {
			t.Errorf("the binary's /metrics has no %s", m)
		}
	}
	c := &Checker{Exported: exported, Variables: variableNames(d)}

	queries := d.Queries()
	if len(queries) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	used := map[string]bool{}
	for _, q := range queries {
		for _, p := range c.Check(q.Expr) {
			t.Errorf("%s: %s\n\t%s", q.Where, p, q.Expr)
		}
		expanded, _ := c.Expand(q.Expr)
		if e, err := parser.NewParser(parser.Options{}).ParseExpr(expanded); err == nil {
			for _, m := range MetricsOf(e) {
				used[m] = true
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		for _, p := range c.CheckVariable(v.QueryText()) {
			t.Errorf("variable %s: %s", v.Name, p)
		}
	}
	for _, m := range wantMetrics {
		if !used[m] {
			t.Errorf("no panel queries %s", m)
		}
	}
	t.Logf("%d queries over %d metrics checked against %d exported series names", len(queries), len(used), len(exported))
}

// TestDashboardStructure pins what makes the dashboard importable anywhere:
// a fixed uid, the data source as a variable that every panel and query
// uses, job and instance variables, unique panel ids, and a layout inside
// Grafana's 24 columns without overlaps.
func TestDashboardStructure(t *testing.T) {
	d, err := Load(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	if d.UID != "tokenrelay" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want uid tokenrelay, a title and a schema version", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]Variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	for name, typ := range wantVariables {
		v, ok := vars[name]
		if !ok || v.Type != typ {
			t.Errorf("variable %s: type %q, want %q", name, v.Type, typ)
		}
	}
	if q := vars["datasource"].QueryText(); q != "prometheus" {
		t.Errorf("datasource variable query = %q, want prometheus", q)
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != "${datasource}") {
			t.Errorf("variable %s: datasource %+v, want uid ${datasource}", v.Name, v.Datasource)
		}
	}

	// Top-level panels must not overlap (a collapsed row's panels are laid
	// out when it opens, so they are not compared with the others).
	taken := map[[2]int]string{}
	overlaps := map[[2]string]bool{}
	for _, p := range d.Panels {
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := taken[[2]int{x, y}]; ok && !overlaps[[2]string{p.Title, other}] {
					overlaps[[2]string{p.Title, other}] = true
					t.Errorf("panel %d %q overlaps %q at x=%d y=%d", p.ID, p.Title, other, x, y)
				}
				taken[[2]int{x, y}] = p.Title
			}
		}
	}
	ids := map[int]string{}
	for _, p := range d.AllPanels() {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %d %q: gridPos %+v outside 24 columns", p.ID, p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %d %q: datasource %+v, want uid ${datasource}", p.ID, p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q has no queries", p.ID, p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %d %q %s: empty query", p.ID, p.Title, tg.RefID)
			}
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %d %q %s: datasource %+v, want uid ${datasource}", p.ID, p.Title, tg.RefID, tg.Datasource)
			}
		}
	}
}

// TestCheckerFindsDrift feeds the checker one broken query per kind of
// drift it guards against, and a good one, against a fixed exposition.
func TestCheckerFindsDrift(t *testing.T) {
	exported, err := ParseExposition(strings.NewReader(`# TYPE tokenrelay_refresh_total counter
tokenrelay_refresh_total{result="success"} 1
tokenrelay_refresh_total{result="failed"} 0
# TYPE tokenrelay_request_duration_seconds histogram
tokenrelay_request_duration_seconds_bucket{route="api",le="+Inf"} 1
tokenrelay_request_duration_seconds_sum{route="api"} 0.1
tokenrelay_request_duration_seconds_count{route="api"} 1
`))
	if err != nil {
		t.Fatal(err)
	}
	c := &Checker{Exported: exported, Variables: []string{"job", "instance"}}
	const scope = `job=~"$job", instance=~"$instance"`
	tests := []struct {
		name, expr, want string // want: "" for no problem, else a substring of the one problem
	}{
		{"good counter", `sum by (result) (rate(tokenrelay_refresh_total{` + scope + `, result=~"success|failed"}[$__rate_interval]))`, ""},
		{"good histogram", `histogram_quantile(0.99, sum by (route, le) (rate(tokenrelay_request_duration_seconds_bucket{` + scope + `}[$__rate_interval])))`, ""},
		{"good _count", `sum(rate(tokenrelay_request_duration_seconds_count{` + scope + `}[5m]))`, ""},
		{"renamed metric", `rate(tokenrelay_refreshes_total{` + scope + `}[5m])`, "does not export tokenrelay_refreshes_total"},
		{"bare histogram name", `rate(tokenrelay_request_duration_seconds{` + scope + `}[5m])`, "does not export tokenrelay_request_duration_seconds"},
		{"renamed label", `tokenrelay_refresh_total{` + scope + `, outcome="success"}`, `has no label "outcome"`},
		{"renamed value", `tokenrelay_refresh_total{` + scope + `, result="ok"}`, `never has result="ok"`},
		{"renamed value in alternation", `tokenrelay_refresh_total{` + scope + `, result=~"success|error"}`, `never has result="error"`},
		{"grouping label on no series", `sum by (reason) (tokenrelay_refresh_total{` + scope + `})`, `grouping label "reason"`},
		{"not scoped to the job", `tokenrelay_refresh_total{instance=~"$instance"}`, `not filtered by job`},
		{"unknown variable", `tokenrelay_refresh_total{` + scope + `, result=~"$result"}`, "$result: no such dashboard variable"},
		{"misspelled range variable", `rate(tokenrelay_refresh_total{` + scope + `}[$__rate_interva])`, "no such dashboard variable"},
		{"syntax error", `sum by (result) (rate(tokenrelay_refresh_total{` + scope + `}[5m])`, "parse:"},
		{"selector without a name", `{` + scope + `}`, "selector without a metric name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Check(tt.expr)
			if tt.want == "" {
				if len(got) != 0 {
					t.Errorf("Check(%s) = %q, want no problems", tt.expr, got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], tt.want) {
				t.Errorf("Check(%s) = %q, want one problem containing %q", tt.expr, got, tt.want)
			}
		})
	}

	for query, want := range map[string]string{
		`label_values(tokenrelay_refresh_total, job)`:                                  "",
		`label_values(tokenrelay_request_duration_seconds_bucket{job=~"$job"}, route)`: "",
		`label_values(tokenrelay_refreshes_total, job)`:                                "does not export",
		`label_values(tokenrelay_refresh_total, route)`:                                `has no label "route"`,
		`query_result(up)`: "want label_values",
	} {
		got := c.CheckVariable(query)
		if want == "" && len(got) != 0 || want != "" && (len(got) != 1 || !strings.Contains(got[0], want)) {
			t.Errorf("CheckVariable(%s) = %q, want %q", query, got, want)
		}
	}
}

func variableNames(d *Dashboard) []string {
	var names []string
	for _, v := range d.Templating.List {
		if !slices.Contains(names, v.Name) {
			names = append(names, v.Name)
		}
	}
	return names
}
