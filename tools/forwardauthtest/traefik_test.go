package forwardauthtest

import (
	"bytes"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// forwardAuth is the part of Traefik's ForwardAuth middleware the examples
// set (the same field names in the file provider and the CRD's spec).
type forwardAuth struct {
	Address             string   `json:"address"`
	TrustForwardHeader  bool     `json:"trustForwardHeader"`
	AuthRequestHeaders  []string `json:"authRequestHeaders"`
	AuthResponseHeaders []string `json:"authResponseHeaders"`
}

// checkForwardAuth asserts what docs/forward-auth.md says of the Traefik
// middleware: it asks the forward-auth listener's verify endpoint, sets its
// own X-Forwarded-* values, sends what tokenrelay reads and copies what it
// answers.
func checkForwardAuth(t *testing.T, what, wantAddress string, fa forwardAuth) {
	t.Helper()
	if fa.Address != wantAddress {
		t.Errorf("%s: address = %q, want %q", what, fa.Address, wantAddress)
	}
	if fa.TrustForwardHeader {
		t.Errorf("%s: trustForwardHeader is true: a client's X-Forwarded-Uri would decide the route", what)
	}
	lower := func(hs []string) []string {
		out := make([]string, len(hs))
		for i, h := range hs {
			out[i] = strings.ToLower(h)
		}
		return out
	}
	wantAll(t, what+": authRequestHeaders", lower(fa.AuthRequestHeaders),
		[]string{"accept", "cookie", "origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "x-csrf"})
	wantAll(t, what+": authResponseHeaders", lower(fa.AuthResponseHeaders), upstreamHeaders)
}

// TestTraefikFileExample: traefik-file.yaml's middleware is as documented,
// tokenrelay's own /.auth/ router has no middleware and goes to the public
// listener, and the API router is verified.
func TestTraefikFileExample(t *testing.T) {
	var cfg struct {
		HTTP struct {
			Routers map[string]struct {
				Rule        string   `json:"rule"`
				Service     string   `json:"service"`
				Middlewares []string `json:"middlewares"`
			} `json:"routers"`
			Middlewares map[string]struct {
				ForwardAuth *forwardAuth `json:"forwardAuth"`
			} `json:"middlewares"`
			Services map[string]struct {
				LoadBalancer struct {
					Servers []struct {
						URL string `json:"url"`
					} `json:"servers"`
				} `json:"loadBalancer"`
			} `json:"services"`
		} `json:"http"`
	}
	if err := yaml.Unmarshal(exampleBytes(t, "traefik-file.yaml"), &cfg); err != nil {
		t.Fatal(err)
	}
	fa := cfg.HTTP.Middlewares["tokenrelay-verify"].ForwardAuth
	if fa == nil {
		t.Fatal("no forwardAuth middleware tokenrelay-verify")
	}
	checkForwardAuth(t, "traefik-file.yaml", "http://127.0.0.1:8081/.auth/verify", *fa)

	auth, api := cfg.HTTP.Routers["tokenrelay"], cfg.HTTP.Routers["api"]
	if !strings.Contains(auth.Rule, "PathPrefix(`/.auth/`)") || len(auth.Middlewares) != 0 {
		t.Errorf("router tokenrelay = %+v, want /.auth/ without middleware", auth)
	}
	if got := cfg.HTTP.Services[auth.Service].LoadBalancer.Servers; len(got) != 1 || got[0].URL != "http://127.0.0.1:8080" {
		t.Errorf("tokenrelay's own endpoints go to %v, want the public listener http://127.0.0.1:8080", got)
	}
	if len(api.Middlewares) != 1 || api.Middlewares[0] != "tokenrelay-verify" {
		t.Errorf("router api middlewares = %q, want [tokenrelay-verify]", api.Middlewares)
	}
}

// TestTraefikCRDExample: traefik-crd.yaml's objects are traefik.io/v1alpha1
// Middlewares and an IngressRoute, its forwardAuth as documented, pointing
// at the chart's forward-auth Service port.
func TestTraefikCRDExample(t *testing.T) {
	found := 0
	for _, doc := range bytes.Split(exampleBytes(t, "traefik-crd.yaml"), []byte("\n---\n")) {
		var obj struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				ForwardAuth *forwardAuth `json:"forwardAuth"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatal(err)
		}
		if obj.APIVersion != "traefik.io/v1alpha1" || (obj.Kind != "Middleware" && obj.Kind != "IngressRoute") {
			t.Errorf("traefik-crd.yaml holds %s %s", obj.APIVersion, obj.Kind)
		}
		if obj.Spec.ForwardAuth != nil {
			found++
			checkForwardAuth(t, "traefik-crd.yaml "+obj.Metadata.Name, "http://tokenrelay.my-app.svc.cluster.local:8081/.auth/verify", *obj.Spec.ForwardAuth)
		}
	}
	if found != 1 {
		t.Errorf("traefik-crd.yaml has %d forwardAuth middlewares, want 1", found)
	}
}

// TestExamplesAgreeOnAddresses: every example names tokenrelay's two
// listeners as tokenrelay.yaml sets them, so they can be used together as
// they are (the e2e test replaces exactly these addresses in nginx.conf
// and the Caddyfile).
func TestExamplesAgreeOnAddresses(t *testing.T) {
	var cfg struct {
		Listen      string `json:"listen"`
		ForwardAuth struct {
			Listen string `json:"listen"`
		} `json:"forward_auth"`
	}
	if err := yaml.Unmarshal(exampleBytes(t, "tokenrelay.yaml"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.ForwardAuth.Listen != "127.0.0.1:8081" {
		t.Fatalf("tokenrelay.yaml listens on %q and %q, want 127.0.0.1:8080 and 127.0.0.1:8081", cfg.Listen, cfg.ForwardAuth.Listen)
	}
	for _, name := range []string{"nginx.conf", "Caddyfile", "traefik-file.yaml"} {
		text := string(exampleBytes(t, name))
		for _, addr := range []string{cfg.Listen, cfg.ForwardAuth.Listen} {
			if !strings.Contains(text, addr) {
				t.Errorf("%s does not name %s", name, addr)
			}
		}
	}
}
