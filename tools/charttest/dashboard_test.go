package charttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const (
	dashboardExample = "../../examples/grafana/tokenrelay.json"
	dashboardInChart = chartDir + "/dashboards/tokenrelay.json"
	dashboardCM      = "demo-tokenrelay-dashboard"
)

// TestGrafanaDashboardCopyIsCurrent keeps the chart's copy of the dashboard
// (a chart can only read its own files) byte for byte equal to the
// example, which tools/dashboardtest checks against the binary's metrics.
func TestGrafanaDashboardCopyIsCurrent(t *testing.T) {
	want, err := os.ReadFile(dashboardExample)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dashboardInChart)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s; copy it: cp examples/grafana/tokenrelay.json charts/tokenrelay/dashboards/", dashboardInChart, dashboardExample)
	}
}

// TestGrafanaDashboard pins the optional dashboard ConfigMap: absent by
// default in both modes; when enabled, it holds the dashboard unchanged
// under the label Grafana's sidecar selects on, in the namespace asked for,
// with the extra labels and annotations given.
func TestGrafanaDashboard(t *testing.T) {
	want, err := os.ReadFile(dashboardExample)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		files     []string
		set       []string
		wantCM    bool
		namespace string
		labels    map[string]string
		annots    map[string]string
	}{
		{name: "off", files: []string{ci("standalone.yaml")}},
		{name: "off, sidecar", files: []string{ci("sidecar.yaml")}},
		{
			name: "on", files: []string{ci("standalone.yaml")}, set: []string{"grafanaDashboard.enabled=true"},
			wantCM: true, namespace: ReleaseNamespace, labels: map[string]string{"grafana_dashboard": "1"},
		},
		{
			name: "on, sidecar", files: []string{ci("sidecar.yaml")}, set: []string{"grafanaDashboard.enabled=true"},
			wantCM: true, namespace: ReleaseNamespace, labels: map[string]string{"grafana_dashboard": "1"},
		},
		{
			name: "ci file", files: []string{ci("grafana-dashboard.yaml")},
			wantCM: true, namespace: ReleaseNamespace, labels: map[string]string{"grafana_dashboard": "1"},
			annots: map[string]string{"grafana_folder": "tokenrelay"},
		},
		{
			name: "own namespace", files: []string{ci("standalone.yaml")},
			set:    []string{"grafanaDashboard.enabled=true", "grafanaDashboard.namespace=monitoring"},
			wantCM: true, namespace: "monitoring", labels: map[string]string{"grafana_dashboard": "1"},
		},
		{
			name: "own label and extra labels", files: []string{ci("standalone.yaml")},
			set: []string{
				"grafanaDashboard.enabled=true", "grafanaDashboard.label=dashboards.example.com/grafana",
				"grafanaDashboard.labelValue=tokenrelay", "grafanaDashboard.labels.team=platform",
			},
			wantCM: true, namespace: ReleaseNamespace,
			labels: map[string]string{"dashboards.example.com/grafana": "tokenrelay", "team": "platform"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := renderDashboard(t, Options{ValueFiles: tt.files, Set: tt.set}, tt.namespace)
			var cms []*corev1.ConfigMap
			for _, o := range objects(r, "ConfigMap") {
				if o.Meta.Name == dashboardCM {
					cms = append(cms, o.Obj.(*corev1.ConfigMap))
				}
			}
			if got := len(cms) == 1; got != tt.wantCM {
				t.Fatalf("dashboard ConfigMap rendered = %v, want %v (%v)", got, tt.wantCM, kindsOf(r))
			}
			if !tt.wantCM {
				return
			}
			cm := cms[0]
			if cm.Namespace != tt.namespace {
				t.Errorf("namespace = %q, want %q", cm.Namespace, tt.namespace)
			}
			if got := cm.Labels["app.kubernetes.io/instance"]; got != ReleaseName {
				t.Errorf("app.kubernetes.io/instance = %q, want the chart's labels", got)
			}
			for k, v := range tt.labels {
				if got, ok := cm.Labels[k]; !ok || got != v {
					t.Errorf("label %s = %q (present %v), want %q", k, got, ok, v)
				}
			}
			if _, ok := cm.Labels["grafana_dashboard"]; ok && tt.labels["grafana_dashboard"] == "" {
				t.Errorf("label grafana_dashboard present with grafanaDashboard.label set to another name")
			}
			for k, v := range tt.annots {
				if got := cm.Annotations[k]; got != v {
					t.Errorf("annotation %s = %q, want %q", k, got, v)
				}
			}
			if len(cm.Data) != 1 {
				t.Errorf("data keys = %d, want only tokenrelay.json", len(cm.Data))
			}
			got := cm.Data["tokenrelay.json"]
			if got != strings.TrimSuffix(string(want), "\n") {
				t.Errorf("tokenrelay.json in the ConfigMap is not the dashboard (%d bytes, want %d)", len(got), len(want)-1)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("tokenrelay.json in the ConfigMap is not valid JSON")
			}
		})
	}
}

// renderDashboard is render, except that the dashboard ConfigMap may live in
// namespace (grafanaDashboard.namespace: where Grafana's sidecar looks)
// while everything else stays in the release's.
func renderDashboard(t *testing.T, o Options, namespace string) *Rendered {
	t.Helper()
	r, err := Render(chartDir, o)
	if err != nil {
		t.Fatalf("render %+v: %v", o, err)
	}
	allowed := fmt.Sprintf("ConfigMap/%s: namespace %q, want %q", dashboardCM, namespace, ReleaseNamespace)
	for _, p := range Validate(r.Objects, nil) {
		if p != allowed {
			t.Errorf("render %+v: %s", o, p)
		}
	}
	return r
}

// TestGrafanaDashboardThroughAppChart renders the dashboard from an app
// chart that uses tokenrelay as its sidecar dependency: the subchart reads
// the dashboard from its own files.
func TestGrafanaDashboardThroughAppChart(t *testing.T) {
	needSetup(t, "app")
	r := render(t, appChartDir, Options{Set: []string{"tokenrelay.grafanaDashboard.enabled=true"}}, nil)
	found := false
	for _, o := range objects(r, "ConfigMap") {
		cm := o.Obj.(*corev1.ConfigMap)
		if strings.HasSuffix(cm.Name, "-dashboard") && cm.Labels["grafana_dashboard"] == "1" && len(cm.Data["tokenrelay.json"]) > 1000 {
			found = true
		}
	}
	if !found {
		t.Errorf("no dashboard ConfigMap from the app chart: %v", kindsOf(r))
	}
}

// TestGrafanaDashboardSchema: the schema refuses a misspelt key, a label
// name Kubernetes would refuse, and a namespace that is not a DNS label.
func TestGrafanaDashboardSchema(t *testing.T) {
	for _, set := range [][]string{
		{"grafanaDashboard.enable=true"},
		{"grafanaDashboard.label=grafana dashboard"},
		{"grafanaDashboard.namespace=Monitoring"},
	} {
		got := renderErr(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}, Set: set})
		wantContains(t, got, "schema")
		wantContains(t, got, strings.TrimPrefix(strings.SplitN(set[0], "=", 2)[0], "grafanaDashboard."))
	}
}
