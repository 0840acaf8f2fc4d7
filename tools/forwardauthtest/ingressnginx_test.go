package forwardauthtest

import (
	"bytes"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// TestIngressNginxExample: ingress-nginx.yaml holds exactly two Ingress
// objects that decode strictly (no unknown or misspelt field): tokenrelay's
// /.auth/ paths go to its public port, and the API's Ingress asks the
// forward-auth port's verify endpoint, copies what its answer says onto the
// request, and leaves the auth cache off.
func TestIngressNginxExample(t *testing.T) {
	var ings []networkingv1.Ingress
	for _, doc := range bytes.Split(exampleBytes(t, "ingress-nginx.yaml"), []byte("\n---\n")) {
		var ing networkingv1.Ingress
		if err := yaml.UnmarshalStrict(doc, &ing); err != nil {
			t.Fatalf("ingress-nginx.yaml: %v", err)
		}
		if ing.APIVersion != "networking.k8s.io/v1" || ing.Kind != "Ingress" {
			t.Fatalf("ingress-nginx.yaml holds %s %s, want Ingress objects", ing.APIVersion, ing.Kind)
		}
		ings = append(ings, ing)
	}
	if len(ings) != 2 {
		t.Fatalf("ingress-nginx.yaml holds %d Ingress objects, want 2", len(ings))
	}
	auth, api := ings[0], ings[1]

	path := auth.Spec.Rules[0].HTTP.Paths[0]
	if path.Path != "/.auth/" || path.Backend.Service.Name != "tokenrelay" || path.Backend.Service.Port.Name != "http" {
		t.Errorf("%s routes %s to %s:%s, want /.auth/ to tokenrelay:http (the public port)",
			auth.Name, path.Path, path.Backend.Service.Name, path.Backend.Service.Port.Name)
	}
	if _, ok := auth.Annotations["nginx.ingress.kubernetes.io/auth-url"]; ok {
		t.Errorf("%s (tokenrelay's own endpoints) must not be behind auth-url", auth.Name)
	}

	ann := api.Annotations
	if got, want := ann["nginx.ingress.kubernetes.io/auth-url"], "http://tokenrelay.my-app.svc.cluster.local:8081/.auth/verify"; got != want {
		t.Errorf("auth-url = %q, want %q (the forward-auth port)", got, want)
	}
	var copied []string
	for h := range strings.SplitSeq(ann["nginx.ingress.kubernetes.io/auth-response-headers"], ",") {
		copied = append(copied, strings.ToLower(strings.TrimSpace(h)))
	}
	wantAll(t, "auth-response-headers", copied, upstreamHeaders)
	if ann["nginx.ingress.kubernetes.io/proxy-buffer-size"] == "" {
		t.Error("no proxy-buffer-size: a large access token in the verify answer fails every request")
	}
	for k := range ann {
		if strings.Contains(k, "auth-cache") {
			t.Errorf("%s sets %s: cached verify answers outlive refreshes and logouts", api.Name, k)
		}
	}
}
