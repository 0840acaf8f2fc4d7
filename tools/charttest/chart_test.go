package charttest

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// external Secrets the ci values name.
var ciExternal = External{"Secret/app-tokenrelay": true}

// TestLintStrict is `helm lint --strict` for every ci values file and for
// the example app chart: no warning, no error.
func TestLintStrict(t *testing.T) {
	for _, f := range ciFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			got, err := Lint(chartDir, Options{ValueFiles: []string{f}})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 0 {
				t.Errorf("helm lint --strict -f %s:\n%s", f, strings.Join(got, "\n"))
			}
		})
	}
	t.Run("sidecar-app", func(t *testing.T) {
		needSetup(t, "app")
		for _, set := range [][]string{nil, {"tokenrelay.sidecar.native=true"}} {
			got, err := Lint(appChartDir, Options{Set: set, KubeVersion: "v1.31.0"})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 0 {
				t.Errorf("helm lint --strict sidecar-app %v:\n%s", set, strings.Join(got, "\n"))
			}
		}
	})
	t.Run("lint is live", func(t *testing.T) {
		// helm lint reports template `fail` calls only as [INFO] log
		// lines, but a schema violation is an error.
		got, err := Lint(chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}, Set: []string{"config.refresh.aheadd=1s"}})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "aheadd") }) {
			t.Errorf("helm lint --strict with a misspelt key = %q, want a schema error naming it", got)
		}
	})
}

// TestCIValues renders every ci values file, decodes each manifest strictly
// into its Kubernetes type, checks references, and runs `tokenrelay
// check-config` on the rendered configuration with the mounted secret files
// in place. Sidecar values are also rendered through the example app chart.
func TestCIValues(t *testing.T) {
	needSetup(t, "bin")
	for _, f := range ciFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			dir := t.TempDir()
			secretDir := filepath.Join(dir, "secrets")
			r := render(t, chartDir, Options{ValueFiles: []string{f}, Set: []string{"secrets.mountPath=" + secretDir}}, ciExternal)
			out, err := checkConfig(t, r, dir, secretDir)
			if err != nil {
				t.Errorf("tokenrelay check-config on the config rendered from %s: %v\n%s\n%s", f, err, out, configText(t, r))
			}
			goldenFile(t, filepath.Join("testdata", "check-config", strings.TrimSuffix(filepath.Base(f), ".yaml")+".txt"), strings.ReplaceAll(out, dir, "$DIR"))
			if r.Notes == "" {
				t.Errorf("NOTES.txt rendered empty")
			}
			if !strings.Contains(filepath.Base(f), "sidecar") {
				return
			}
			needSetup(t, "app")
			app := render(t, appChartDir, Options{ValueFiles: []string{nestUnder(t, f, "tokenrelay")}, KubeVersion: "v1.31.0"}, ciExternal)
			d := deployment(t, app, "demo-sidecar-app")
			all := append(slices.Clone(d.Spec.Template.Spec.InitContainers), d.Spec.Template.Spec.Containers...)
			findContainer(t, all, "tokenrelay")
		})
	}
}

// checkConfig writes the rendered config.yaml and the secret files its
// *_file keys name under secretDir (values from the rendered Secret, or
// stand-ins for an existing Secret), then runs check-config on it with env
// added to a minimal environment.
func checkConfig(t *testing.T, r *Rendered, dir, secretDir string, env ...string) (string, error) {
	t.Helper()
	cfgText := configText(t, r)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(secretDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var data map[string][]byte
	if s := objects(r, "Secret"); len(s) == 1 {
		data = s[0].Obj.(*corev1.Secret).Data
	}
	cfg := configOf(t, r)
	for _, path := range [][]string{
		{"provider", "client_secret_file"},
		{"session", "secret_file"},
		{"session", "redis", "password_file"},
		{"session", "redis", "sentinel_password_file"},
	} {
		file, _ := dig(cfg, path...).(string)
		if file == "" {
			continue
		}
		if filepath.Dir(file) != secretDir {
			t.Fatalf("%s = %q, want a file in %s", strings.Join(path, "."), file, secretDir)
		}
		value := []byte("stand-in-for-an-existing-secret-0123456789")
		if data != nil {
			v, ok := data[filepath.Base(file)]
			if !ok {
				t.Fatalf("%s = %q but the Secret has no key %q", strings.Join(path, "."), file, filepath.Base(file))
			}
			value = v
		}
		if err := os.WriteFile(file, value, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(tokenrelayBin, "check-config", "--config", cfgPath)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestCheckConfigIsLive proves check-config rejects a rendered
// configuration the binary considers wrong, so TestCIValues can fail.
func TestCheckConfigIsLive(t *testing.T) {
	needSetup(t, "bin")
	dir := t.TempDir()
	secretDir := filepath.Join(dir, "secrets")
	r := render(t, chartDir, Options{
		ValueFiles: []string{ci("standalone.yaml")},
		Set:        []string{"secrets.mountPath=" + secretDir, "config.provider.issuer="},
	}, nil)
	out, err := checkConfig(t, r, dir, secretDir)
	if err == nil {
		t.Fatalf("check-config accepted an oidc provider without issuer:\n%s", configText(t, r))
	}
	wantContains(t, out, "provider.issuer")
}

// TestSecretsNotInConfigMap: no secret value reaches the ConfigMap, only
// the paths of the mounted files.
func TestSecretsNotInConfigMap(t *testing.T) {
	for _, f := range ciFiles(t) {
		r := render(t, chartDir, Options{ValueFiles: []string{f}}, ciExternal)
		text := configText(t, r)
		for _, s := range objects(r, "Secret") {
			for k, v := range s.Obj.(*corev1.Secret).Data {
				if strings.Contains(text, string(v)) {
					t.Errorf("%s: ConfigMap holds the value of secret key %s", filepath.Base(f), k)
				}
			}
		}
		if strings.Contains(text, "ci-") {
			t.Errorf("%s: ConfigMap holds a ci secret value:\n%s", filepath.Base(f), text)
		}
	}
}

// TestNativeSidecar: sidecar.native renders tokenrelay as an init container
// with restartPolicy Always and no regular container; without it, a regular
// container and no init container.
func TestNativeSidecar(t *testing.T) {
	needSetup(t, "app")
	always := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		native         string
		wantInit       []string
		wantContainers []string
		wantRestart    *corev1.ContainerRestartPolicy
	}{
		{native: "false", wantInit: []string{}, wantContainers: []string{"app", "tokenrelay"}},
		{native: "true", wantInit: []string{"tokenrelay"}, wantContainers: []string{"app"}, wantRestart: &always},
	}
	for _, tt := range tests {
		t.Run("native="+tt.native, func(t *testing.T) {
			r := render(t, appChartDir, Options{Set: []string{"tokenrelay.sidecar.native=" + tt.native}, KubeVersion: "v1.31.0"}, nil)
			ps := deployment(t, r, "demo-sidecar-app").Spec.Template.Spec
			if got := containerNames(ps.InitContainers); !slices.Equal(got, tt.wantInit) {
				t.Errorf("initContainers = %v, want %v", got, tt.wantInit)
			}
			if got := containerNames(ps.Containers); !slices.Equal(got, tt.wantContainers) {
				t.Errorf("containers = %v, want %v", got, tt.wantContainers)
			}
			tr := findContainer(t, append(slices.Clone(ps.InitContainers), ps.Containers...), "tokenrelay")
			if (tr.RestartPolicy == nil) != (tt.wantRestart == nil) || (tr.RestartPolicy != nil && *tr.RestartPolicy != *tt.wantRestart) {
				t.Errorf("restartPolicy = %v, want %v", tr.RestartPolicy, tt.wantRestart)
			}
			var gotPorts []string
			for _, p := range tr.Ports {
				gotPorts = append(gotPorts, fmt.Sprintf("%s:%d", p.Name, p.ContainerPort))
			}
			if want := []string{"tokenrelay:8080", "tokenrelay-adm:9090"}; !slices.Equal(gotPorts, want) {
				t.Errorf("ports = %v, want %v", gotPorts, want)
			}
			if got := tr.ReadinessProbe.HTTPGet.Port.StrVal; got != "tokenrelay-adm" {
				t.Errorf("readinessProbe port = %q, want tokenrelay-adm", got)
			}
			// The tokenrelay chart itself renders only its ConfigMap and Secret.
			var sub []string
			for _, o := range r.Objects {
				if strings.HasPrefix(o.Meta.Name, "demo-tokenrelay") {
					sub = append(sub, o.Key())
				}
			}
			slices.Sort(sub)
			if want := []string{"ConfigMap/demo-tokenrelay-config", "Secret/demo-tokenrelay"}; !slices.Equal(sub, want) {
				t.Errorf("tokenrelay chart rendered %v, want %v", sub, want)
			}
		})
	}
}

func TestNativeSidecarNeedsKubernetes129(t *testing.T) {
	needSetup(t, "app")
	got := renderErr(t, appChartDir, Options{Set: []string{"tokenrelay.sidecar.native=true"}, KubeVersion: "v1.28.9"})
	wantContains(t, got, "sidecar.native needs Kubernetes 1.29 or newer (native sidecar containers); the target is v1.28.9")
	// helm template without --kube-version assumes an old cluster.
	got = renderErr(t, appChartDir, Options{Set: []string{"tokenrelay.sidecar.native=true"}})
	wantContains(t, got, "--kube-version")
	render(t, appChartDir, Options{Set: []string{"tokenrelay.sidecar.native=true"}, KubeVersion: "v1.29.0"}, nil)
}

func TestSidecarTemplatesNeedSidecarMode(t *testing.T) {
	needSetup(t, "app")
	got := renderErr(t, appChartDir, Options{Set: []string{"tokenrelay.mode=standalone"}})
	wantContains(t, got, "need mode: sidecar")
}

func TestServiceMonitor(t *testing.T) {
	tests := []struct {
		name string
		set  []string
		apis []string
		want bool
	}{
		{name: "off", set: nil, apis: []string{"monitoring.coreos.com/v1"}, want: false},
		{name: "on, API absent", set: []string{"serviceMonitor.enabled=true"}, want: false},
		{name: "on, API present", set: []string{"serviceMonitor.enabled=true"}, apis: []string{"monitoring.coreos.com/v1"}, want: true},
		{name: "on, forced", set: []string{"serviceMonitor.enabled=true", "serviceMonitor.force=true"}, want: true},
		{name: "forced but off", set: []string{"serviceMonitor.force=true"}, want: false},
		{name: "sidecar mode", set: []string{"mode=sidecar", "serviceMonitor.enabled=true", "serviceMonitor.force=true"}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}, Set: tt.set, APIVersions: tt.apis}, nil)
			if got := len(objects(r, "ServiceMonitor")) == 1; got != tt.want {
				t.Errorf("ServiceMonitor rendered = %v, want %v (%v)", got, tt.want, kindsOf(r))
			}
			note := strings.Contains(r.Notes, "no ServiceMonitor was made")
			if wantNote := tt.name == "on, API absent"; note != wantNote {
				t.Errorf("NOTES mention the missing API = %v, want %v:\n%s", note, wantNote, r.Notes)
			}
		})
	}
	r := render(t, chartDir, Options{ValueFiles: []string{ci("servicemonitor-on.yaml")}}, nil)
	sm := objects(r, "ServiceMonitor")
	if len(sm) != 1 {
		t.Fatalf("servicemonitor-on.yaml: %d ServiceMonitors", len(sm))
	}
	got := sm[0].Source
	for _, want := range []string{"release: prometheus", "port: admin", "path: /metrics", "interval: 15s", "- apps"} {
		wantContains(t, got, want)
	}
}

func TestPodDisruptionBudget(t *testing.T) {
	base := []string{ci("external-redis.yaml")}
	tests := []struct {
		name string
		set  []string
		want string // spec line, "" for no PDB
	}{
		{name: "off", set: []string{"podDisruptionBudget.enabled=false"}, want: ""},
		{name: "maxUnavailable", set: nil, want: "maxUnavailable: 1"},
		{name: "minAvailable percent", set: []string{"podDisruptionBudget.minAvailable=50%", "podDisruptionBudget.maxUnavailable="}, want: "minAvailable: 50%"},
		{name: "sidecar mode", set: []string{"mode=sidecar"}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, chartDir, Options{ValueFiles: base, Set: tt.set}, nil)
			pdbs := objects(r, "PodDisruptionBudget")
			if tt.want == "" {
				if len(pdbs) != 0 {
					t.Errorf("PDB rendered, want none")
				}
				return
			}
			if len(pdbs) != 1 {
				t.Fatalf("%d PDBs, want 1", len(pdbs))
			}
			wantContains(t, pdbs[0].Source, tt.want)
		})
	}
	got := renderErr(t, chartDir, Options{ValueFiles: base, Set: []string{"podDisruptionBudget.minAvailable=1"}})
	wantContains(t, got, "set minAvailable or maxUnavailable, not both")
}

func TestAutoscaling(t *testing.T) {
	r := render(t, chartDir, Options{ValueFiles: []string{ci("external-redis.yaml")}}, nil)
	if got := deployment(t, r, "demo-tokenrelay").Spec.Replicas; got != nil {
		t.Errorf("Deployment replicas = %d with autoscaling, want unset", *got)
	}
	h := objects(r, "HorizontalPodAutoscaler")
	if len(h) != 1 {
		t.Fatalf("%d HPAs, want 1", len(h))
	}
	for _, want := range []string{"minReplicas: 3", "maxReplicas: 6", "name: cpu", "averageUtilization: 70", "name: memory", "averageUtilization: 80"} {
		wantContains(t, h[0].Source, want)
	}

	r = render(t, chartDir, Options{ValueFiles: []string{ci("external-redis.yaml")}, Set: []string{"autoscaling.enabled=false"}}, nil)
	if got := deployment(t, r, "demo-tokenrelay").Spec.Replicas; got == nil || *got != 3 {
		t.Errorf("Deployment replicas = %v without autoscaling, want 3", got)
	}
	if n := len(objects(r, "HorizontalPodAutoscaler")); n != 0 {
		t.Errorf("%d HPAs with autoscaling off, want 0", n)
	}
}

func TestNetworkPolicy(t *testing.T) {
	r := render(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}}, nil)
	if n := len(objects(r, "NetworkPolicy")); n != 0 {
		t.Errorf("%d NetworkPolicies by default, want 0", n)
	}
	r = render(t, chartDir, Options{ValueFiles: []string{ci("external-redis.yaml")}}, nil)
	np := objects(r, "NetworkPolicy")
	if len(np) != 1 {
		t.Fatalf("%d NetworkPolicies, want 1", len(np))
	}
	got := np[0].Source
	for _, want := range []string{"- Ingress", "- Egress", "port: http", "port: admin", "kubernetes.io/metadata.name: ingress-nginx", "kubernetes.io/metadata.name: monitoring", "port: 6379"} {
		wantContains(t, got, want)
	}
	r = render(t, chartDir, Options{ValueFiles: []string{ci("external-redis.yaml")}, Set: []string{"networkPolicy.egress=null"}}, nil)
	if got := objects(r, "NetworkPolicy")[0].Source; strings.Contains(got, "Egress") {
		t.Errorf("NetworkPolicy without egress rules restricts egress:\n%s", got)
	}
}

// TestForwardAuth: forwardAuth.enabled adds the forward-auth listener
// (config, container port, Service port) and, with networkPolicy, a rule
// admitting only forwardAuthFrom to it; without forwardAuthFrom the render
// fails rather than open the port to every pod. The chart owns
// config.forward_auth.listen.
func TestForwardAuth(t *testing.T) {
	r := render(t, chartDir, Options{ValueFiles: []string{ci("forward-auth.yaml")}}, nil)
	wantContains(t, configText(t, r), "forward_auth:\n  listen: :8081")
	svc := objects(r, "Service")[0].Source
	wantContains(t, svc, "name: forward-auth\n      port: 8081\n      targetPort: forward-auth")
	wantContains(t, objects(r, "Deployment")[0].Source, "name: forward-auth\n              containerPort: 8081")
	np := objects(r, "NetworkPolicy")[0].Source
	wantContains(t, np, "port: forward-auth\n          protocol: TCP\n      from:\n        - namespaceSelector:")
	wantContains(t, np, "app.kubernetes.io/name: ingress-nginx")

	r = render(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}}, nil)
	for _, o := range append(objects(r, "Service"), objects(r, "Deployment")...) {
		if strings.Contains(o.Source, "forward-auth") {
			t.Errorf("forward-auth in %s without forwardAuth.enabled:\n%s", o.Kind, o.Source)
		}
	}
	if strings.Contains(configText(t, r), "forward_auth") {
		t.Errorf("forward_auth in the config without forwardAuth.enabled")
	}

	err := renderErr(t, chartDir, Options{ValueFiles: []string{ci("forward-auth.yaml")}, Set: []string{"networkPolicy.forwardAuthFrom=null"}})
	wantContains(t, err, "networkPolicy.forwardAuthFrom is empty")
	// The schema refuses it before the template's own check.
	err = renderErr(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}, Set: []string{"config.forward_auth.listen=:9999"}})
	wantContains(t, err, "/config/forward_auth/listen")
}

func TestExistingSecret(t *testing.T) {
	r := render(t, chartDir, Options{ValueFiles: []string{ci("existing-secret.yaml")}}, ciExternal)
	if n := len(objects(r, "Secret")); n != 0 {
		t.Errorf("%d Secrets rendered with existingSecret, want 0", n)
	}
	d := deployment(t, r, "demo-tokenrelay")
	var vol *corev1.Volume
	for i := range d.Spec.Template.Spec.Volumes {
		if d.Spec.Template.Spec.Volumes[i].Name == "tokenrelay-secrets" {
			vol = &d.Spec.Template.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.Secret == nil {
		t.Fatalf("no tokenrelay-secrets volume")
	}
	if got := vol.Secret.SecretName; got != "app-tokenrelay" {
		t.Errorf("secretName = %q, want app-tokenrelay", got)
	}
	var items []string
	for _, it := range vol.Secret.Items {
		items = append(items, it.Key+"->"+it.Path)
	}
	if want := []string{"redis-password->redis-password", "session-secret->session-secret"}; !slices.Equal(items, want) {
		t.Errorf("items = %v, want %v", items, want)
	}
	cfg := configOf(t, r)
	if got := dig(cfg, "provider", "client_secret_file"); got != nil {
		t.Errorf("provider.client_secret_file = %v, want unset (existingSecretKeys.clientSecret is empty)", got)
	}
	if got := dig(cfg, "session", "secret_file"); got != "/etc/tokenrelay/secrets/session-secret" {
		t.Errorf("session.secret_file = %v", got)
	}
	redis := deployment(t, r, "demo-tokenrelay-redis").Spec.Template.Spec.Containers[0]
	if got := redis.Env[0].ValueFrom.SecretKeyRef; got.Name != "app-tokenrelay" || got.Key != "redis-password" {
		t.Errorf("in-chart Redis password from %s/%s, want app-tokenrelay/redis-password", got.Name, got.Key)
	}

	got := renderErr(t, chartDir, Options{ValueFiles: []string{ci("existing-secret.yaml")}, Set: []string{"secrets.sessionSecret=0123456789abcdef0123456789abcdef"}})
	wantContains(t, got, "secrets.sessionSecret and secrets.existingSecret are both set")
}

func TestChecksumAnnotation(t *testing.T) {
	annotations := func(set ...string) map[string]string {
		r := render(t, chartDir, Options{ValueFiles: []string{ci("external-redis.yaml")}, Set: set}, nil)
		return deployment(t, r, "demo-tokenrelay").Spec.Template.Annotations
	}
	base := annotations()
	if base["checksum/tokenrelay-config"] == "" || base["checksum/tokenrelay-secret"] == "" {
		t.Fatalf("annotations = %v, want both checksums", base)
	}
	tests := []struct {
		set        string
		wantConfig bool // config checksum changes
		wantSecret bool
	}{
		{set: "service.port=8081", wantConfig: false, wantSecret: false},
		{set: "config.refresh.ahead=30s", wantConfig: true, wantSecret: false},
		{set: "redis.url=redis://other:6379/0", wantConfig: true, wantSecret: false},
		{set: "secrets.redisPassword=rotated", wantConfig: false, wantSecret: true},
	}
	for _, tt := range tests {
		got := annotations(tt.set)
		if changed := got["checksum/tokenrelay-config"] != base["checksum/tokenrelay-config"]; changed != tt.wantConfig {
			t.Errorf("--set %s: config checksum changed = %v, want %v", tt.set, changed, tt.wantConfig)
		}
		if changed := got["checksum/tokenrelay-secret"] != base["checksum/tokenrelay-secret"]; changed != tt.wantSecret {
			t.Errorf("--set %s: secret checksum changed = %v, want %v", tt.set, changed, tt.wantSecret)
		}
	}

	t.Run("sidecar", func(t *testing.T) {
		needSetup(t, "app")
		sum := func(set ...string) string {
			r := render(t, appChartDir, Options{Set: set}, nil)
			return deployment(t, r, "demo-sidecar-app").Spec.Template.Annotations["checksum/tokenrelay-config"]
		}
		a, b := sum(), sum("tokenrelay.config.refresh.ahead=30s")
		if a == "" || a == b {
			t.Errorf("app pod checksum %q → %q after a tokenrelay config change, want a change", a, b)
		}
	})
}

func TestMemoryStoreWithManyReplicasFails(t *testing.T) {
	tests := []struct {
		name    string
		set     []string
		wantErr bool
	}{
		{name: "one replica", set: nil, wantErr: false},
		{name: "two replicas", set: []string{"replicaCount=2"}, wantErr: true},
		{name: "autoscaling", set: []string{"autoscaling.enabled=true"}, wantErr: true},
		{name: "autoscaling to one", set: []string{"autoscaling.enabled=true", "autoscaling.minReplicas=1", "autoscaling.maxReplicas=1"}, wantErr: false},
		{name: "explicit memory, two replicas", set: []string{"config.session.store=memory", "replicaCount=2"}, wantErr: true},
		{name: "two replicas with redis", set: []string{"replicaCount=2", "redis.url=redis://r:6379/0", "secrets.sessionSecret=0123456789abcdef0123456789abcdef"}, wantErr: false},
		{name: "sidecar mode ignores replicaCount", set: []string{"mode=sidecar", "replicaCount=2"}, wantErr: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{ValueFiles: []string{ci("standalone.yaml")}, Set: tt.set}
			if !tt.wantErr {
				render(t, chartDir, o, nil)
				return
			}
			wantContains(t, renderErr(t, chartDir, o), "the memory session store keeps sessions inside one pod")
		})
	}
}

func TestSchemaRejects(t *testing.T) {
	tests := []struct {
		name string
		set  []string
		want string
	}{
		{name: "unknown top-level key", set: []string{"replicas=2"}, want: "replicas"},
		{name: "typo in config", set: []string{"config.refresh.aheadd=30s"}, want: "aheadd"},
		{name: "unknown config section", set: []string{"config.sessions.store=redis"}, want: "sessions"},
		{name: "typo in redis", set: []string{"redis.sentinel.master=m"}, want: "master"},
		{name: "bare number duration", set: []string{"config.refresh.ahead=60"}, want: "ahead"},
		{name: "bad duration", set: []string{"config.refresh.ahead=1 minute"}, want: "ahead"},
		{name: "inline client secret", set: []string{"config.provider.client_secret=s3cret"}, want: "client_secret"},
		{name: "inline session secret", set: []string{"config.session.secret=s3cret"}, want: "secret"},
		{name: "listen set in config", set: []string{"config.listen=:1"}, want: "listen"},
		{name: "unknown mode", set: []string{"mode=daemonset"}, want: "mode"},
		{name: "bad enum in config", set: []string{"config.provider.type=saml"}, want: "type"},
		{name: "route without upstream", set: []string{"config.routes[0].upstream=null"}, want: "upstream"},
		{name: "redis url scheme", set: []string{"redis.url=http://redis:6379"}, want: "url"},
		{name: "typo in sidecar", set: []string{"sidecar.nativ=true"}, want: "nativ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := renderErr(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}, Set: tt.set})
			wantContains(t, got, "schema")
			wantContains(t, got, tt.want)
		})
	}
}

// TestSchemaRejectsThroughAppChart: an app chart's values for its tokenrelay
// dependency are checked against the same schema.
func TestSchemaRejectsThroughAppChart(t *testing.T) {
	needSetup(t, "app")
	got := renderErr(t, appChartDir, Options{Set: []string{"tokenrelay.sidecar.nativ=true"}})
	wantContains(t, got, "tokenrelay")
	wantContains(t, got, "nativ")
}

func TestRequiredValues(t *testing.T) {
	wantContains(t, renderErr(t, chartDir, Options{}), "config.public_url is required")
	wantContains(t, renderErr(t, chartDir, Options{Set: []string{"config.public_url=https://a.example"}}), "config.routes needs at least one route")
	wantContains(t, renderErr(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}, Set: []string{"secrets.sessionSecret=short"}}), "at least 32 bytes")
}

func TestRedisConfig(t *testing.T) {
	const secret = "secrets.sessionSecret=0123456789abcdef0123456789abcdef"
	tests := []struct {
		name      string
		set       []string
		wantStore string
		wantRedis string // fmt of session.redis without password files
	}{
		{name: "none", set: nil, wantStore: "memory", wantRedis: "<nil>"},
		{name: "url", set: []string{secret, "redis.url=rediss://r:6380/2", "redis.username=tr"}, wantStore: "redis",
			wantRedis: "map[url:rediss://r:6380/2 username:tr]"},
		{name: "sentinel", set: []string{secret, "redis.sentinel.masterName=m", "redis.sentinel.addresses={s1:26379,s2:26379}", "redis.db=3"}, wantStore: "redis",
			wantRedis: "map[addresses:[s1:26379 s2:26379] db:3 master_name:m]"},
		{name: "cluster", set: []string{secret, "redis.cluster.addresses={c1:6379,c2:6379}", "redis.tls=true"}, wantStore: "redis",
			wantRedis: "map[addresses:[c1:6379 c2:6379] cluster:true tls:true]"},
		{name: "in chart", set: []string{secret, "redis.inChart.enabled=true"}, wantStore: "redis",
			wantRedis: "map[url:redis://demo-tokenrelay-redis:6379/0]"},
		{name: "advanced keys in config", set: []string{secret, "redis.url=redis://r:6379/0", "config.session.redis.pool_size=20", "config.session.redis.read_timeout=500ms"}, wantStore: "redis",
			wantRedis: "map[pool_size:20 read_timeout:500ms url:redis://r:6379/0]"},
		{name: "address in config only", set: []string{secret, "config.session.redis.url=redis://r:6379/0"}, wantStore: "redis",
			wantRedis: "map[url:redis://r:6379/0]"},
		{name: "session secret from the environment", set: []string{"redis.url=redis://r:6379/0", "extraEnv[0].name=TOKENRELAY_SESSION_SECRET", "extraEnv[0].valueFrom.secretKeyRef.name=s", "extraEnv[0].valueFrom.secretKeyRef.key=k"}, wantStore: "redis",
			wantRedis: "map[url:redis://r:6379/0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}, Set: tt.set}, External{"Secret/s": true})
			cfg := configOf(t, r)
			if got := dig(cfg, "session", "store"); got != tt.wantStore {
				t.Errorf("session.store = %v, want %s", got, tt.wantStore)
			}
			if got := fmt.Sprint(dig(cfg, "session", "redis")); got != tt.wantRedis {
				t.Errorf("session.redis = %s, want %s", got, tt.wantRedis)
			}
			wantInChart := tt.name == "in chart"
			if got := len(objects(r, "Deployment")) == 2; got != wantInChart {
				t.Errorf("in-chart Redis Deployment rendered = %v, want %v", got, wantInChart)
			}
			if got := strings.Contains(r.Notes, "FOR EVALUATION ONLY") || strings.Contains(r.Notes, "meant for evaluation only"); got != wantInChart {
				t.Errorf("NOTES warn about the in-chart Redis = %v, want %v", got, wantInChart)
			}
		})
	}

	errs := []struct {
		name string
		set  []string
		want string
	}{
		{name: "two kinds", set: []string{secret, "redis.url=redis://r:6379", "redis.cluster.addresses={c1:6379}"}, want: "set only one of url, sentinel.addresses, cluster.addresses, inChart.enabled (got url, cluster)"},
		{name: "memory store with redis", set: []string{secret, "config.session.store=memory", "redis.url=redis://r:6379"}, want: "config.session.store is memory but redis (url) is configured"},
		{name: "redis store without redis", set: []string{secret, "config.session.store=redis"}, want: "config.session.store is redis: set redis.url"},
		{name: "redis without session secret", set: []string{"redis.url=redis://r:6379"}, want: "needs a session secret"},
		{name: "sentinel without master", set: []string{secret, "redis.sentinel.addresses={s1:26379}"}, want: "redis.sentinel.masterName is required"},
		{name: "address twice", set: []string{secret, "redis.url=redis://r:6379", "config.session.redis.url=redis://q:6379"}, want: "config.session.redis.url and redis.* are both set"},
		{name: "file twice", set: []string{"config.provider.client_secret_file=/x"}, want: "config.provider.client_secret_file is set and secrets.clientSecret is given too"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			wantContains(t, renderErr(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}, Set: tt.set}), tt.want)
		})
	}
}

func TestInChartRedis(t *testing.T) {
	tests := []struct {
		name     string
		set      []string
		wantArgs []string
	}{
		{name: "with password", set: []string{"secrets.redisPassword=pw"}, wantArgs: []string{"--save", "", "--appendonly", "no", "--requirepass", "$(REDIS_PASSWORD)"}},
		{name: "without password", set: nil, wantArgs: []string{"--save", "", "--appendonly", "no", "--protected-mode", "no"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := append([]string{"redis.inChart.enabled=true", "secrets.sessionSecret=0123456789abcdef0123456789abcdef"}, tt.set...)
			r := render(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}, Set: set}, nil)
			c := deployment(t, r, "demo-tokenrelay-redis").Spec.Template.Spec.Containers[0]
			if !slices.Equal(c.Args, tt.wantArgs) {
				t.Errorf("redis args = %q, want %q", c.Args, tt.wantArgs)
			}
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
				t.Errorf("redis container has no read-only root filesystem")
			}
			svc := one[*corev1.Service](t, r, "Service", "demo-tokenrelay-redis")
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 6379 {
				t.Errorf("redis Service ports = %v", svc.Spec.Ports)
			}
			// The proxy Service must not select the Redis pod.
			proxy := one[*corev1.Service](t, r, "Service", "demo-tokenrelay")
			if got := proxy.Spec.Selector["app.kubernetes.io/component"]; got != "proxy" {
				t.Errorf("proxy Service selector component = %q, want proxy", got)
			}
		})
	}
}

func TestSecurityDefaults(t *testing.T) {
	r := render(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}}, nil)
	d := deployment(t, r, "demo-tokenrelay")
	ps := d.Spec.Template.Spec
	c := findContainer(t, ps.Containers, "tokenrelay")

	if got, want := c.Image, "ghcr.io/tokenrelay/tokenrelay:0.1.0"; got != want {
		t.Errorf("image = %q, want %q", got, want)
	}
	if got, want := c.Args, []string{"serve", "--config", "/etc/tokenrelay/config.yaml"}; !slices.Equal(got, want) {
		t.Errorf("args = %q, want %q", got, want)
	}
	sc := c.SecurityContext
	checks := []struct {
		what string
		ok   bool
	}{
		{"runAsNonRoot", sc.RunAsNonRoot != nil && *sc.RunAsNonRoot},
		{"runAsUser 65532", sc.RunAsUser != nil && *sc.RunAsUser == 65532},
		{"runAsGroup 65532", sc.RunAsGroup != nil && *sc.RunAsGroup == 65532},
		{"readOnlyRootFilesystem", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
		{"allowPrivilegeEscalation false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
		{"privileged false", sc.Privileged != nil && !*sc.Privileged},
		{"capabilities drop ALL only", sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(sc.Capabilities.Add) == 0},
		{"seccomp RuntimeDefault", sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		{"pod runAsNonRoot", ps.SecurityContext.RunAsNonRoot != nil && *ps.SecurityContext.RunAsNonRoot},
		{"pod fsGroup 65532", ps.SecurityContext.FSGroup != nil && *ps.SecurityContext.FSGroup == 65532},
		{"pod seccomp RuntimeDefault", ps.SecurityContext.SeccompProfile != nil && ps.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		{"no service account token", ps.AutomountServiceAccountToken != nil && !*ps.AutomountServiceAccountToken},
		{"memory limit", c.Resources.Limits.Memory().String() == "256Mi"},
		{"GOMEMLIMIT from the limit", len(c.Env) == 1 && c.Env[0].Name == "GOMEMLIMIT" && c.Env[0].ValueFrom.ResourceFieldRef.Resource == "limits.memory"},
		{"secret files 0440", secretMode(ps) == 0o440},
	}
	for _, ck := range checks {
		if !ck.ok {
			t.Errorf("%s: not so", ck.what)
		}
	}

	probes := map[string]string{}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe missing", name)
			continue
		}
		probes[name] = p.HTTPGet.Path + "@" + p.HTTPGet.Port.String()
	}
	if want := map[string]string{"startup": "/healthz@admin", "liveness": "/healthz@admin", "readiness": "/readyz@admin"}; fmt.Sprint(probes) != fmt.Sprint(want) {
		t.Errorf("probes = %v, want %v", probes, want)
	}

	r = render(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}, Set: []string{"image.digest=sha256:" + strings.Repeat("ab", 32)}}, nil)
	if got, want := findContainer(t, deployment(t, r, "demo-tokenrelay").Spec.Template.Spec.Containers, "tokenrelay").Image, "ghcr.io/tokenrelay/tokenrelay@sha256:"+strings.Repeat("ab", 32); got != want {
		t.Errorf("image with digest = %q, want %q", got, want)
	}

	t.Run("sidecar", func(t *testing.T) {
		needSetup(t, "app")
		r := render(t, appChartDir, Options{}, nil)
		ps := deployment(t, r, "demo-sidecar-app").Spec.Template.Spec
		c := findContainer(t, ps.Containers, "tokenrelay")
		if sc := c.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("sidecar securityContext = %+v", sc)
		}
		// No fsGroup is known in the app's pod: the files must stay readable.
		if got := secretMode(ps); got != 0o444 {
			t.Errorf("sidecar secret files mode = %o, want 444", got)
		}
	})
}

func secretMode(ps corev1.PodSpec) int32 {
	for _, v := range ps.Volumes {
		if v.Name == "tokenrelay-secrets" && v.Secret != nil && v.Secret.DefaultMode != nil {
			return *v.Secret.DefaultMode
		}
	}
	return -1
}

func TestIngress(t *testing.T) {
	r := render(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}}, nil)
	ing := objects(r, "Ingress")
	if len(ing) != 1 {
		t.Fatalf("%d Ingresses, want 1", len(ing))
	}
	for _, want := range []string{"ingressClassName: nginx", `host: "app.example.com"`, "secretName: app-example-com-tls", "name: demo-tokenrelay", "name: http"} {
		wantContains(t, ing[0].Source, want)
	}
	r = render(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}, Set: []string{"ingress.enabled=false"}}, nil)
	if n := len(objects(r, "Ingress")); n != 0 {
		t.Errorf("%d Ingresses when disabled, want 0", n)
	}
}

// TestValidatorIsLive feeds the validator broken objects, so the checks in
// render() can fail.
func TestValidatorIsLive(t *testing.T) {
	r := render(t, chartDir, Options{ValueFiles: []string{ci("external-redis.yaml")}}, nil)
	if p := Validate(r.Objects, nil); len(p) != 0 {
		t.Fatalf("baseline: %v", p)
	}
	tests := []struct {
		name   string
		mutate func(objs []Object)
		want   string
	}{
		{name: "probe port", mutate: func(objs []Object) {
			dep(objs).Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Port.StrVal = "nope"
		}, want: `readinessProbe port "nope" is not a port`},
		{name: "volume without mount target", mutate: func(objs []Object) {
			dep(objs).Spec.Template.Spec.Volumes = dep(objs).Spec.Template.Spec.Volumes[:1]
		}, want: `volumeMount "tokenrelay-secrets" has no volume`},
		{name: "secret key", mutate: func(objs []Object) {
			dep(objs).Spec.Template.Spec.Volumes[1].Secret.Items[0].Key = "nope"
		}, want: `has no key "nope"`},
		{name: "selector", mutate: func(objs []Object) {
			dep(objs).Spec.Template.Labels["app.kubernetes.io/component"] = "other"
		}, want: "does not match template labels"},
		{name: "label value", mutate: func(objs []Object) {
			dep(objs).Spec.Template.Labels["x"] = "not valid!"
		}, want: `"x" value "not valid!"`},
		{name: "restartPolicy on a regular container", mutate: func(objs []Object) {
			always := corev1.ContainerRestartPolicyAlways
			dep(objs).Spec.Template.Spec.Containers[0].RestartPolicy = &always
		}, want: "restartPolicy is only allowed on init containers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fresh, err := Render(chartDir, Options{ValueFiles: []string{ci("external-redis.yaml")}})
			if err != nil {
				t.Fatal(err)
			}
			tt.mutate(fresh.Objects)
			got := strings.Join(Validate(fresh.Objects, nil), "\n")
			wantContains(t, got, tt.want)
		})
	}

	_, err := decodeManifests("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {typo: 1}\n")
	if err == nil || !strings.Contains(err.Error(), `unknown field "typo"`) {
		t.Errorf("strict decoding of a typo: err = %v, want unknown field", err)
	}
}

// dep is the tokenrelay Deployment among objs.
func dep(objs []Object) *appsv1.Deployment {
	for _, o := range objs {
		if o.Kind == "Deployment" && o.Meta.Name == "demo-tokenrelay" {
			return o.Obj.(*appsv1.Deployment)
		}
	}
	panic("no Deployment demo-tokenrelay")
}

// TestPodsWithoutServiceLinksAndWithAdminAddress: every pod the charts own
// sets enableServiceLinks: false (the chart's Deployment and Redis, and the
// example app's pod with the sidecar), and the rendered configuration sets
// admin_listen to the pod's admin port, so probes and scraping reach a
// listener that defaults to loopback.
func TestPodsWithoutServiceLinksAndWithAdminAddress(t *testing.T) {
	r := render(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}, Set: []string{"redis.inChart.enabled=true", "secrets.sessionSecret=" + strings.Repeat("s", 32), "ports.admin=9191"}}, nil)
	pods := 0
	for _, o := range objects(r, "Deployment") {
		d := o.Obj.(*appsv1.Deployment)
		pods++
		if esl := d.Spec.Template.Spec.EnableServiceLinks; esl == nil || *esl {
			t.Errorf("Deployment %s: enableServiceLinks = %v, want false", d.Name, esl)
		}
	}
	if pods != 2 {
		t.Errorf("checked %d Deployments, want 2 (tokenrelay and its Redis)", pods)
	}
	if got := dig(configOf(t, r), "admin_listen"); got != ":9191" {
		t.Errorf("admin_listen = %v, want \":9191\" (from ports.admin)", got)
	}
	c := findContainer(t, deployment(t, r, "demo-tokenrelay").Spec.Template.Spec.Containers, "tokenrelay")
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "admin" {
		t.Errorf("readiness probe = %+v, want the admin port", p)
	}
	for _, p := range c.Ports {
		if p.Name == "admin" && p.ContainerPort != 9191 {
			t.Errorf("admin containerPort = %d, want 9191", p.ContainerPort)
		}
	}

	t.Run("sidecar", func(t *testing.T) {
		needSetup(t, "app")
		r := render(t, appChartDir, Options{}, nil)
		ps := deployment(t, r, "demo-sidecar-app").Spec.Template.Spec
		if esl := ps.EnableServiceLinks; esl == nil || *esl {
			t.Errorf("sidecar-app pod: enableServiceLinks = %v, want false", esl)
		}
		if got := dig(configOf(t, r), "admin_listen"); got != ":9090" {
			t.Errorf("sidecar admin_listen = %v, want \":9090\"", got)
		}
	})
}

// TestCheckConfigWithServiceLinks: a pod that does get service links (an
// app's pod whose spec the chart does not own) in a namespace with Services
// named tokenrelay and tokenrelay-redis still passes check-config: the
// variables Kubernetes would inject for the rendered Services are ignored.
func TestCheckConfigWithServiceLinks(t *testing.T) {
	needSetup(t, "bin")
	dir := t.TempDir()
	secretDir := filepath.Join(dir, "secrets")
	r := render(t, chartDir, Options{ValueFiles: []string{ci("standalone.yaml")}, Set: []string{
		"redis.inChart.enabled=true", "secrets.sessionSecret=" + strings.Repeat("s", 32),
		"secrets.mountPath=" + secretDir,
	}}, nil)
	var env []string
	for _, o := range objects(r, "Service") {
		// As in a release whose Services are tokenrelay and
		// tokenrelay-redis (release "demo" names them demo-…).
		svc := o.Obj.(*corev1.Service).DeepCopy()
		svc.Name = strings.TrimPrefix(svc.Name, "demo-")
		env = append(env, serviceLinkEnv(svc, "10.96.0.10")...)
	}
	var names []string
	for _, kv := range env {
		names = append(names, strings.SplitN(kv, "=", 2)[0])
	}
	for _, want := range []string{"TOKENRELAY_SERVICE_HOST", "TOKENRELAY_PORT", "TOKENRELAY_REDIS_PORT_6379_TCP_ADDR"} {
		if !slices.Contains(names, want) {
			t.Fatalf("service-link variables %v lack %s: the chart's Service names changed", names, want)
		}
	}
	out, err := checkConfig(t, r, dir, secretDir, env...)
	if err != nil {
		t.Errorf("check-config with the service links of %v: %v\n%s", names, err, out)
	}
	// A misspelt variable next to them is still refused.
	out, err = checkConfig(t, r, dir, secretDir, append(env, "TOKENRELAY_PROVIDER_CLIENTID=web")...)
	if err == nil {
		t.Errorf("check-config accepted TOKENRELAY_PROVIDER_CLIENTID:\n%s", out)
	}
	wantContains(t, out, "TOKENRELAY_PROVIDER_CLIENTID: unknown variable")
}

// serviceLinkEnv is what the kubelet injects into a pod for svc when
// enableServiceLinks is on (pkg/kubelet/envvars): {NAME}_SERVICE_HOST,
// {NAME}_SERVICE_PORT[_{PORTNAME}], and the Docker-link forms {NAME}_PORT,
// {NAME}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR].
func serviceLinkEnv(svc *corev1.Service, ip string) []string {
	if len(svc.Spec.Ports) == 0 {
		return nil
	}
	up := func(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
	name := up(svc.Name)
	first := svc.Spec.Ports[0]
	proto := func(p corev1.ServicePort) string {
		return strings.ToLower(string(cmp.Or(p.Protocol, corev1.ProtocolTCP)))
	}
	env := []string{
		name + "_SERVICE_HOST=" + ip,
		fmt.Sprintf("%s_SERVICE_PORT=%d", name, first.Port),
		fmt.Sprintf("%s_PORT=%s://%s:%d", name, proto(first), ip, first.Port),
	}
	for _, p := range svc.Spec.Ports {
		if p.Name != "" {
			env = append(env, fmt.Sprintf("%s_SERVICE_PORT_%s=%d", name, up(p.Name), p.Port))
		}
		prefix := fmt.Sprintf("%s_PORT_%d_%s", name, p.Port, strings.ToUpper(proto(p)))
		env = append(env,
			fmt.Sprintf("%s=%s://%s:%d", prefix, proto(p), ip, p.Port),
			prefix+"_PROTO="+proto(p),
			fmt.Sprintf("%s_PORT=%d", prefix, p.Port),
			prefix+"_ADDR="+ip,
		)
	}
	return env
}
