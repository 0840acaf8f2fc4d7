package charttest

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "../../charts/tokenrelay"

var (
	// appChartDir is a copy of charts/examples/sidecar-app with its
	// file:// dependency built (helm dependency build), made by TestMain.
	appChartDir string
	// tokenrelayBin is the tokenrelay binary for check-config.
	tokenrelayBin string
	// setupErr is why TestMain could not prepare something; tests that need
	// it fail with it.
	setupErr = map[string]error{}
)

func TestMain(m *testing.M) {
	// helm lint logs each template `fail` as an [INFO] line on the
	// standard logger; the tests assert on results instead.
	log.SetOutput(io.Discard)
	tmp, err := os.MkdirTemp("", "charttest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	setupErr["app"] = prepareAppChart(tmp)
	setupErr["bin"] = prepareBinary(tmp)
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

func prepareAppChart(tmp string) error {
	if err := CopyTree("../../charts", filepath.Join(tmp, "charts")); err != nil {
		return err
	}
	appChartDir = filepath.Join(tmp, "charts", "examples", "sidecar-app")
	// A stale build from the source tree must not hide a broken dependency.
	os.RemoveAll(filepath.Join(appChartDir, "charts"))
	os.Remove(filepath.Join(appChartDir, "Chart.lock"))
	return BuildDependencies(appChartDir)
}

// prepareBinary uses $TOKENRELAY_BIN, or builds cmd/tokenrelay from the
// root module.
func prepareBinary(tmp string) error {
	if bin := os.Getenv("TOKENRELAY_BIN"); bin != "" {
		tokenrelayBin = bin
		return nil
	}
	tokenrelayBin = filepath.Join(tmp, "tokenrelay")
	cmd := exec.Command("go", "build", "-o", tokenrelayBin, "./cmd/tokenrelay")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/tokenrelay: %v\n%s", err, out)
	}
	return nil
}

func needSetup(t *testing.T, what string) {
	t.Helper()
	if err := setupErr[what]; err != nil {
		t.Fatalf("setup %s: %v", what, err)
	}
}

// render renders and validates (strict decoding plus references); any
// failure is fatal.
func render(t *testing.T, dir string, o Options, ext External) *Rendered {
	t.Helper()
	r, err := Render(dir, o)
	if err != nil {
		t.Fatalf("render %s %+v: %v", filepath.Base(dir), o, err)
	}
	for _, p := range Validate(r.Objects, ext) {
		t.Errorf("render %s %+v: %s", filepath.Base(dir), o, p)
	}
	return r
}

// renderErr renders and returns the error, failing the test when the
// render succeeds.
func renderErr(t *testing.T, dir string, o Options) string {
	t.Helper()
	_, err := Render(dir, o)
	if err == nil {
		t.Fatalf("render %s %+v succeeded, want an error", filepath.Base(dir), o)
	}
	return err.Error()
}

func ci(name string) string { return filepath.Join(chartDir, "ci", name) }

func ciFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(ci("*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci values files: %v", err)
	}
	sort.Strings(files)
	return files
}

// nestUnder writes the values file src wrapped under key (how an app chart
// passes values to its tokenrelay dependency) and returns the new path.
func nestUnder(t *testing.T, src, key string) string {
	t.Helper()
	dt, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(dt, &v); err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(map[string]any{key: v})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "nested-"+filepath.Base(src))
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// objects returns the rendered objects of a kind.
func objects(r *Rendered, kind string) []Object {
	var out []Object
	for _, o := range r.Objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func kindsOf(r *Rendered) []string {
	var out []string
	for _, o := range r.Objects {
		out = append(out, o.Key())
	}
	sort.Strings(out)
	return out
}

// one returns the single object of kind and name, failing otherwise.
func one[T any](t *testing.T, r *Rendered, kind, name string) T {
	t.Helper()
	for _, o := range r.Objects {
		if o.Kind == kind && o.Meta.Name == name {
			return o.Obj.(T)
		}
	}
	t.Fatalf("no %s/%s in %v", kind, name, kindsOf(r))
	var zero T
	return zero
}

func deployment(t *testing.T, r *Rendered, name string) *appsv1.Deployment {
	t.Helper()
	return one[*appsv1.Deployment](t, r, "Deployment", name)
}

// configText is the rendered tokenrelay config.yaml.
func configText(t *testing.T, r *Rendered) string {
	t.Helper()
	cm := one[*corev1.ConfigMap](t, r, "ConfigMap", "demo-tokenrelay-config")
	text, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatalf("ConfigMap has no config.yaml: %v", cm.Data)
	}
	return text
}

// configOf is the rendered tokenrelay configuration, decoded.
func configOf(t *testing.T, r *Rendered) map[string]any {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(configText(t, r)), &cfg); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	return cfg
}

// dig walks nested maps by keys.
func dig(m map[string]any, keys ...string) any {
	var cur any = m
	for _, k := range keys {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

func containerNames(cs []corev1.Container) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func findContainer(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q in %v", name, containerNames(cs))
	return corev1.Container{}
}

func wantContains(t *testing.T, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("got %q, want it to contain %q", got, want)
	}
}

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/ from the current output")

// goldenFile compares got with the file at path, or rewrites the file with
// -update. TestCIValues pins check-config's output on every rendered
// configuration this way, so a change to the configuration code that alters
// a message or a warning shows up as a diff.
func goldenFile(t *testing.T, path, got string) {
	t.Helper()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the current output:\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}
