package dashboardtest

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Exported is what a /metrics page holds: series name → label name →
// label values seen. A histogram appears as its _bucket (with le), _sum
// and _count series, a summary as its own name (with quantile), _sum and
// _count.
type Exported map[string]map[string]map[string]bool

// ParseExposition reads a Prometheus text exposition.
func ParseExposition(r io.Reader) (Exported, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	out := Exported{}
	add := func(series string, m *dto.Metric, extra ...string) {
		ls := out[series]
		if ls == nil {
			ls = map[string]map[string]bool{}
			out[series] = ls
		}
		for _, lp := range m.GetLabel() {
			if ls[lp.GetName()] == nil {
				ls[lp.GetName()] = map[string]bool{}
			}
			ls[lp.GetName()][lp.GetValue()] = true
		}
		for _, l := range extra {
			if ls[l] == nil {
				ls[l] = map[string]bool{}
			}
		}
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", m, "le")
				add(name+"_sum", m)
				add(name+"_count", m)
			case dto.MetricType_SUMMARY:
				add(name, m, "quantile")
				add(name+"_sum", m)
				add(name+"_count", m)
			default:
				add(name, m)
			}
		}
	}
	return out, nil
}

// Labels Prometheus attaches to every scraped series (the target's), so
// no /metrics page shows them.
var targetLabels = []string{"job", "instance"}

// openLabels have values tokenrelay does not know in advance, so a
// query's value for them is not checked against /metrics.
var openLabels = map[string]string{
	"code":  "any HTTP status",
	"route": "route names come from the configuration",
	"le":    "histogram bucket bounds",
}

// Checker checks PromQL expressions against the metrics a binary exports.
type Checker struct {
	Exported Exported
	// Variables are the dashboard's variable names (job, instance, ...):
	// a query may use these, and Grafana's built-in range variables.
	Variables []string
}

// Grafana's built-in variables that stand for a range duration.
var rangeVariables = []string{"__rate_interval", "__interval", "__range"}

var variableRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?|\[\[([A-Za-z0-9_]+)\]\]`)

// marker is what a dashboard variable becomes before parsing, so the
// selectors that use it can be recognised afterwards.
func marker(name string) string { return "__var_" + name + "__" }

// Expand replaces Grafana variables with values the Prometheus parser
// accepts: a range variable with 5m, a dashboard variable with a marker.
func (c *Checker) Expand(expr string) (string, []string) {
	var problems []string
	out := variableRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		if m[2] != "" {
			problems = append(problems, fmt.Sprintf("%s: deprecated [[var]] syntax, use $%s", ref, m[2]))
			return ref
		}
		switch name := m[1]; {
		case slices.Contains(rangeVariables, name):
			return "5m"
		case slices.Contains(c.Variables, name):
			return marker(name)
		default:
			problems = append(problems, fmt.Sprintf("%s: no such dashboard variable", ref))
			return ref
		}
	})
	return out, problems
}

// Check parses expr and returns every problem with it: a parse error, a
// metric tokenrelay does not export, a label or label value that metric
// does not have, a grouping label no selected series has, or a selector
// not scoped to the dashboard's job and instance variables.
func (c *Checker) Check(expr string) []string {
	expanded, problems := c.Expand(expr)
	if len(problems) > 0 {
		return problems
	}
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expanded)
	if err != nil {
		return []string{fmt.Sprintf("parse: %v", err)}
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			problems = append(problems, c.checkSelector(n)...)
		case *parser.AggregateExpr:
			problems = append(problems, c.checkGrouping(n)...)
		}
		return nil
	})
	return problems
}

// MetricsOf returns the metric names the selectors of expr name.
func MetricsOf(expr parser.Expr) []string {
	var names []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if name := selectorName(vs); name != "" && !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
		return nil
	})
	sort.Strings(names)
	return names
}

func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

func (c *Checker) checkSelector(vs *parser.VectorSelector) []string {
	name := selectorName(vs)
	if name == "" {
		return []string{fmt.Sprintf("%s: selector without a metric name", vs)}
	}
	series, ok := c.Exported[name]
	if !ok {
		return []string{fmt.Sprintf("%s: tokenrelay does not export %s", vs, name)}
	}
	var problems []string
	for _, l := range targetLabels {
		if !hasMatcher(vs, l, labels.MatchRegexp, marker(l)) {
			problems = append(problems, fmt.Sprintf("%s: not filtered by %s=~\"$%s\"", vs, l, l))
		}
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName || slices.Contains(targetLabels, m.Name) {
			continue
		}
		values, ok := series[m.Name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: %s has no label %q (it has %s)", vs, name, m.Name, labelNames(series)))
			continue
		}
		if _, open := openLabels[m.Name]; open || strings.Contains(m.Value, "__var_") {
			continue
		}
		for _, v := range literalValues(m) {
			if !values[v] {
				problems = append(problems, fmt.Sprintf("%s: %s never has %s=%q (values: %s)", vs, name, m.Name, v, setString(values)))
			}
		}
	}
	return problems
}

func hasMatcher(vs *parser.VectorSelector, name string, typ labels.MatchType, value string) bool {
	for _, m := range vs.LabelMatchers {
		if m.Name == name && m.Type == typ && m.Value == value {
			return true
		}
	}
	return false
}

// literalValues returns the values an equality matcher, or a regexp that
// is an alternation of plain words ("failed|rejected"), can match; nil for
// any other matcher.
func literalValues(m *labels.Matcher) []string {
	switch m.Type {
	case labels.MatchEqual:
		return []string{m.Value}
	case labels.MatchRegexp:
		words := strings.Split(m.Value, "|")
		for _, w := range words {
			if !plainWord.MatchString(w) {
				return nil
			}
		}
		return words
	}
	return nil
}

var plainWord = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// checkGrouping checks that each `by` label is one of the aggregated
// series' labels (or a target label), so the aggregation does not
// collapse to one unlabelled series.
func (c *Checker) checkGrouping(a *parser.AggregateExpr) []string {
	if a.Without || len(a.Grouping) == 0 {
		return nil
	}
	have := map[string]bool{}
	for _, l := range targetLabels {
		have[l] = true
	}
	for _, name := range MetricsOf(a.Expr) {
		for l := range c.Exported[name] {
			have[l] = true
		}
	}
	var problems []string
	for _, l := range a.Grouping {
		if !have[l] {
			problems = append(problems, fmt.Sprintf("%s: grouping label %q is on none of %v", a.Op, l, MetricsOf(a.Expr)))
		}
	}
	return problems
}

func labelNames(series map[string]map[string]bool) string {
	names := make([]string, 0, len(series))
	for l := range series {
		names = append(names, l)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func setString(set map[string]bool) string {
	vals := make([]string, 0, len(set))
	for v := range set {
		vals = append(vals, v)
	}
	sort.Strings(vals)
	return strings.Join(vals, ", ")
}

// labelValuesQuery matches a Grafana Prometheus variable query
// label_values(<selector>, <label>).
var labelValuesQuery = regexp.MustCompile(`^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$`)

// CheckVariable checks a label_values(selector, label) variable query:
// the selector must name an exported metric and the label must be on it
// (or be a target label).
func (c *Checker) CheckVariable(query string) []string {
	m := labelValuesQuery.FindStringSubmatch(strings.TrimSpace(query))
	if m == nil {
		return []string{fmt.Sprintf("%q: want label_values(<metric selector>, <label>)", query)}
	}
	expanded, problems := c.Expand(m[1])
	if len(problems) > 0 {
		return problems
	}
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expanded)
	if err != nil {
		return []string{fmt.Sprintf("%q: parse: %v", query, err)}
	}
	vs, ok := e.(*parser.VectorSelector)
	if !ok {
		return []string{fmt.Sprintf("%q: %s is not a series selector", query, m[1])}
	}
	name := selectorName(vs)
	series, ok := c.Exported[name]
	if !ok {
		return []string{fmt.Sprintf("%q: tokenrelay does not export %q", query, name)}
	}
	if _, ok := series[m[2]]; !ok && !slices.Contains(targetLabels, m[2]) {
		return []string{fmt.Sprintf("%q: %s has no label %q", query, name, m[2])}
	}
	return nil
}
