// Package dashboardtest checks the Grafana dashboard in examples/grafana
// against tokenrelay itself: every panel's PromQL is parsed with the
// Prometheus parser, and every metric, label and label value a query names
// must be one the real tokenrelay binary exports on /metrics. A renamed
// metric or label fails the test instead of leaving an empty panel.
//
// It is a separate module so the Prometheus server module (the parser's
// home, with a large dependency graph) stays out of tokenrelay's go.mod;
// the binary under test is built from the root module.
package dashboardtest

import (
	"encoding/json"
	"fmt"
	"os"
)

// Dashboard is the part of a Grafana dashboard model the checks read.
type Dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []Variable `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Panel is a dashboard panel; a row holds its panels in Panels when
// collapsed.
type Panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *Datasource `json:"datasource"`
	Targets    []Target    `json:"targets"`
	Panels     []Panel     `json:"panels"`
	GridPos    struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
}

// Target is one query of a panel.
type Target struct {
	RefID      string      `json:"refId"`
	Expr       string      `json:"expr"`
	Datasource *Datasource `json:"datasource"`
}

// Datasource names a data source, here always through a variable.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Variable is a templating variable. Query is a string for a datasource
// variable and {"query": "..."} for a Prometheus query variable.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *Datasource     `json:"datasource"`
}

// QueryText returns the variable's query, whichever form it has.
func (v Variable) QueryText() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var obj struct {
		Query string `json:"query"`
	}
	if json.Unmarshal(v.Query, &obj) == nil {
		return obj.Query
	}
	return ""
}

// Load reads and decodes a dashboard file.
func Load(path string) (*Dashboard, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &d, nil
}

// Query is one PromQL expression of the dashboard and where it is.
type Query struct {
	Where string // "panel 7 \"Refresh latency\" B"
	Expr  string
}

// AllPanels returns every panel, rows' nested panels included, in order.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// Queries returns the PromQL expression of every panel target.
func (d *Dashboard) Queries() []Query {
	var out []Query
	for _, p := range d.AllPanels() {
		for _, t := range p.Targets {
			out = append(out, Query{
				Where: fmt.Sprintf("panel %d %q %s", p.ID, p.Title, t.RefID),
				Expr:  t.Expr,
			})
		}
	}
	return out
}
