package forwardauthtest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// The headers tokenrelay's verify answer may carry for the upstream: the
// token, the browser's cookies without tokenrelay's, the DPoP proof of a
// DPoP-bound token, the default identity headers and the assertion.
var upstreamHeaders = []string{
	"authorization", "cookie", "dpop",
	"x-forwarded-user", "x-forwarded-email", "x-forwarded-groups", "x-forwarded-preferred-username",
	"x-tokenrelay-assertion",
}

// exampleBytes reads examples/forward-auth/<name>.
func exampleBytes(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "forward-auth", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// validated is what protoc-gen-validate generates on every Envoy message.
type validated interface {
	proto.Message
	ValidateAll() error
}

func validate(t *testing.T, what string, m validated) {
	t.Helper()
	if err := m.ValidateAll(); err != nil {
		t.Errorf("%s does not validate: %v", what, err)
	}
}

// unpack opens a typed_config and validates what it holds.
func unpack(t *testing.T, what string, a *anypb.Any, into validated) {
	t.Helper()
	if a == nil {
		t.Fatalf("%s: no typed_config", what)
	}
	if err := a.UnmarshalTo(into); err != nil {
		t.Fatalf("%s: typed_config is %s: %v", what, a.GetTypeUrl(), err)
	}
	validate(t, what, into)
}

// exacts returns the exact values of a string-matcher list, failing on any
// other kind of matcher (a prefix or regex would let more through than
// the documentation says).
func exacts(t *testing.T, what string, l *matcherv3.ListStringMatcher) []string {
	t.Helper()
	var out []string
	for _, p := range l.GetPatterns() {
		e := p.GetExact()
		if e == "" {
			t.Errorf("%s: pattern %v is not an exact match", what, p)
			continue
		}
		out = append(out, e)
	}
	return out
}

func wantAll(t *testing.T, what string, got, want []string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s = %q, missing %q", what, got, w)
		}
	}
}

// TestEnvoyExample: envoy.yaml is a valid Envoy bootstrap (every message,
// and every typed_config inside, passes Envoy's own validation rules), and
// it sets what docs/forward-auth.md says: the check goes to the
// forward-auth listener with path_prefix /.auth/verify and a timeout longer
// than a refresh may take; a failure refuses with 503; the headers
// tokenrelay reads are sent and the ones it answers are copied; identity
// headers a client sent are removed first; tokenrelay's own /.auth/ route
// and the public route are not checked, /api/ is.
func TestEnvoyExample(t *testing.T) {
	js, err := yaml.YAMLToJSON(exampleBytes(t, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, &b); err != nil {
		t.Fatalf("envoy.yaml is not an Envoy v3 bootstrap: %v", err)
	}
	validate(t, "bootstrap", &b)

	clusters := map[string]uint32{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = clusterPort(t, c)
	}
	if want := map[string]uint32{"tokenrelay": 8080, "tokenrelay_verify": 8081, "app": 3000}; !mapsEqual(clusters, want) {
		t.Errorf("clusters and their ports = %v, want %v", clusters, want)
	}

	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) != 1 || len(listeners[0].GetFilterChains()) != 1 || len(listeners[0].GetFilterChains()[0].GetFilters()) != 1 {
		t.Fatalf("want one listener with one filter chain of one filter")
	}
	var hcm hcmv3.HttpConnectionManager
	unpack(t, "http_connection_manager", listeners[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig(), &hcm)

	filters := hcm.GetHttpFilters()
	var names []string
	for _, f := range filters {
		names = append(names, f.GetName())
	}
	if want := []string{"envoy.filters.http.header_mutation", "envoy.filters.http.ext_authz", "envoy.filters.http.router"}; !slices.Equal(names, want) {
		t.Fatalf("http filters = %q, want %q (identity headers must be removed before the check)", names, want)
	}
	var mutation headermutationv3.HeaderMutation
	unpack(t, "header_mutation", filters[0].GetTypedConfig(), &mutation)
	var removed []string
	for _, m := range mutation.GetMutations().GetRequestMutations() {
		removed = append(removed, m.GetRemove())
	}
	wantAll(t, "header_mutation removes", removed, upstreamHeaders[2:])

	var authz extauthzv3.ExtAuthz
	unpack(t, "ext_authz", filters[1].GetTypedConfig(), &authz)
	checkExtAuthz(t, &authz)
	var router routerv3.Router
	unpack(t, "router", filters[2].GetTypedConfig(), &router)

	checkRoutes(t, hcm.GetRouteConfig())
}

func checkExtAuthz(t *testing.T, a *extauthzv3.ExtAuthz) {
	t.Helper()
	hs := a.GetHttpService()
	if hs == nil {
		t.Fatal("ext_authz has no http_service")
	}
	if got, want := hs.GetPathPrefix(), "/.auth/verify"; got != want {
		t.Errorf("path_prefix = %q, want %q", got, want)
	}
	if got := hs.GetServerUri().GetCluster(); got != "tokenrelay_verify" {
		t.Errorf("server_uri.cluster = %q, want tokenrelay_verify (the forward-auth listener)", got)
	}
	// A verify may wait for a refresh: refresh.timeout is 10s by default.
	if got := hs.GetServerUri().GetTimeout().AsDuration(); got <= 10*time.Second {
		t.Errorf("server_uri.timeout = %s, want more than refresh.timeout (10s)", got)
	}
	if a.GetFailureModeAllow() {
		t.Error("failure_mode_allow is true: requests would pass while tokenrelay is down")
	}
	if got := a.GetStatusOnError().GetCode(); got != 503 {
		t.Errorf("status_on_error = %d, want 503", got)
	}
	wantAll(t, "allowed_headers", exacts(t, "allowed_headers", a.GetAllowedHeaders()),
		[]string{"cookie", "accept", "origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "x-csrf", "upgrade"})
	resp := hs.GetAuthorizationResponse()
	up := exacts(t, "allowed_upstream_headers", resp.GetAllowedUpstreamHeaders())
	wantAll(t, "allowed_upstream_headers", up, upstreamHeaders)
	client := exacts(t, "allowed_client_headers", resp.GetAllowedClientHeaders())
	wantAll(t, "allowed_client_headers", client, []string{"set-cookie", "retry-after", "x-tokenrelay-error", "x-tokenrelay-login-url"})
	for _, h := range client {
		if h == "authorization" || h == "cookie" || h == "x-tokenrelay-assertion" {
			t.Errorf("allowed_client_headers lists %q: a refusal must never hand it to the browser", h)
		}
	}
}

// checkRoutes: /.auth/ goes to tokenrelay unchecked, /api/ to the app
// checked, / to the app unchecked.
func checkRoutes(t *testing.T, rc *routev3.RouteConfiguration) {
	t.Helper()
	if len(rc.GetVirtualHosts()) != 1 {
		t.Fatalf("want one virtual host, got %d", len(rc.GetVirtualHosts()))
	}
	type want struct {
		cluster string
		checked bool
	}
	wants := map[string]want{"/.auth/": {"tokenrelay", false}, "/api/": {"app", true}, "/": {"app", false}}
	seen := map[string]bool{}
	for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
		prefix := r.GetMatch().GetPrefix()
		w, ok := wants[prefix]
		if !ok {
			t.Errorf("unexpected route %q", prefix)
			continue
		}
		seen[prefix] = true
		if got := r.GetRoute().GetCluster(); got != w.cluster {
			t.Errorf("route %q goes to %q, want %q", prefix, got, w.cluster)
		}
		checked := true
		if cfg, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]; ok {
			var per extauthzv3.ExtAuthzPerRoute
			unpack(t, "ext_authz of route "+prefix, cfg, &per)
			checked = !per.GetDisabled()
		}
		if checked != w.checked {
			t.Errorf("route %q: checked by ext_authz = %v, want %v", prefix, checked, w.checked)
		}
	}
	for p := range wants {
		if !seen[p] {
			t.Errorf("no route %q", p)
		}
	}
}

func clusterPort(t *testing.T, c *clusterv3.Cluster) uint32 {
	t.Helper()
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		t.Errorf("cluster %s: want one endpoint", c.GetName())
		return 0
	}
	return eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
}

func mapsEqual(a, b map[string]uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
