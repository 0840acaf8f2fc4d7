// Package charttest renders the tokenrelay Helm charts with the Helm SDK (the
// same code paths as `helm template` and `helm lint`), decodes every rendered
// manifest strictly into its Kubernetes API type, and checks the references
// between objects that the API server would only notice at run time.
//
// It is a separate module so Helm and the Kubernetes API types stay out of
// tokenrelay's own go.mod.
package charttest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/downloader"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/releaseutil"
)

// Release names the release a chart is rendered for.
const (
	ReleaseName      = "demo"
	ReleaseNamespace = "apps"
)

// Options are the inputs of one render, as on the helm command line.
type Options struct {
	ValueFiles []string // -f
	Set        []string // --set
	// APIVersions are extra API versions the cluster serves
	// (--api-versions), e.g. "monitoring.coreos.com/v1".
	APIVersions []string
	// KubeVersion is the cluster version (--kube-version); default Helm's.
	KubeVersion string
}

// Rendered is the output of a render.
type Rendered struct {
	// Manifests maps each template file to its rendered text (empty ones
	// dropped), NOTES.txt excluded.
	Manifests map[string]string
	// Notes is the rendered NOTES.txt of the top chart.
	Notes string
	// Objects are the decoded manifests, in file order.
	Objects []Object
}

// Values merges value files and --set flags as the helm CLI does.
func (o Options) Values() (map[string]any, error) {
	vo := values.Options{ValueFiles: o.ValueFiles, Values: o.Set}
	return vo.MergeValues(getter.Providers{})
}

// Render renders the chart in dir like `helm template demo dir -n apps`,
// including the schema check of the values, and decodes the result.
func Render(dir string, o Options) (*Rendered, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	if err := action.CheckDependencies(ch, ch.Metadata.Dependencies); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	vals, err := o.Values()
	if err != nil {
		return nil, err
	}
	if err := chartutil.ProcessDependenciesWithMerge(ch, vals); err != nil {
		return nil, err
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.APIVersions = append(caps.APIVersions, o.APIVersions...)
	if o.KubeVersion != "" {
		kv, err := chartutil.ParseKubeVersion(o.KubeVersion)
		if err != nil {
			return nil, err
		}
		caps.KubeVersion = *kv
	}
	// As helm template and install do.
	if kv := ch.Metadata.KubeVersion; kv != "" && !chartutil.IsCompatibleRange(kv, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart requires kubeVersion %s, which is incompatible with Kubernetes %s", kv, caps.KubeVersion.String())
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: ReleaseName, Namespace: ReleaseNamespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	r := &Rendered{Manifests: map[string]string{}}
	names := make([]string, 0, len(out))
	for name := range out {
		names = append(names, name)
	}
	sort.Strings(names)
	notesName := filepath.Join(ch.Name(), "templates", "NOTES.txt")
	for _, name := range names {
		text := out[name]
		switch {
		case name == notesName:
			r.Notes = text
			continue
		case strings.HasSuffix(name, "NOTES.txt"):
			continue // a subchart's notes are not shown by helm
		case strings.TrimSpace(text) == "":
			continue
		}
		r.Manifests[name] = text
		objs, err := decodeManifests(text)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		r.Objects = append(r.Objects, objs...)
	}
	return r, nil
}

// Lint runs `helm lint --strict` on the chart in dir with the given values
// and returns every message of warning severity or worse.
func Lint(dir string, o Options) ([]string, error) {
	vals, err := o.Values()
	if err != nil {
		return nil, err
	}
	l := action.NewLint()
	l.Strict = true
	l.Namespace = ReleaseNamespace
	if o.KubeVersion != "" {
		kv, err := chartutil.ParseKubeVersion(o.KubeVersion)
		if err != nil {
			return nil, err
		}
		l.KubeVersion = kv
	}
	res := l.Run([]string{dir}, vals)
	var problems []string
	for _, e := range res.Errors {
		problems = append(problems, e.Error())
	}
	if res.TotalChartsLinted != 1 && len(problems) == 0 {
		problems = append(problems, fmt.Sprintf("linted %d charts, want 1", res.TotalChartsLinted))
	}
	return problems, nil
}

// BuildDependencies runs `helm dependency build` for the chart in dir
// (file:// dependencies only: no repository is contacted).
func BuildDependencies(dir string) error {
	home, err := os.MkdirTemp("", "charttest-helm")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	var out bytes.Buffer
	m := &downloader.Manager{
		Out:              &out,
		ChartPath:        dir,
		SkipUpdate:       true,
		Getters:          getter.Providers{},
		RepositoryConfig: filepath.Join(home, "repositories.yaml"),
		RepositoryCache:  filepath.Join(home, "cache"),
	}
	if err := m.Build(); err != nil {
		return fmt.Errorf("helm dependency build %s: %w\n%s", dir, err, out.String())
	}
	return nil
}

// CopyTree copies the directory tree src into dst (created).
func CopyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// LoadChart loads a chart directory (for its metadata).
func LoadChart(dir string) (*chart.Chart, error) { return loader.Load(dir) }

// splitDocs splits a rendered template into its YAML documents, in order.
func splitDocs(text string) []string {
	m := releaseutil.SplitManifests(text)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	docs := make([]string, 0, len(keys))
	for _, k := range keys {
		if strings.TrimSpace(stripComments(m[k])) != "" {
			docs = append(docs, m[k])
		}
	}
	return docs
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}
