package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestForwardAuthDPoPNginx and TestForwardAuthDPoPCaddy: behind a real
// ingress run from its example, with DPoP on and a route of its own
// resource, the app (which trusts only DPoP-bound tokens of that resource,
// each with a proof for the request it got, as the OP's JWKS and RFC 9449
// say) accepts every call the ingress forwards, a client's own
// Authorization and DPoP headers included: the ingress replaces them with
// verify's. Each verify answer's proof has a jti of its own.
func TestForwardAuthDPoPNginx(t *testing.T) {
	t.Parallel()
	testForwardAuthDPoP(t, startNginx)
}

func TestForwardAuthDPoPCaddy(t *testing.T) {
	t.Parallel()
	testForwardAuthDPoP(t, startCaddy)
}

func testForwardAuthDPoP(t *testing.T, start startIngress) {
	requireBinaries(t)
	front := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	verify := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var app *audUpstream
	s := startStack(t, stackOptions{
		PublicURL: "http://" + front,
		OPArgs:    []string{"--resources=" + resOrders},
		Configure: func(s *stack, _ int, yaml string) string {
			app = newAudUpstreamAt(t, s.OP, resOrders, true, "http://"+front)
			yaml = editYAML(t, yaml, "  auth_params:\n", "  dpop: true\n  auth_params:\n")
			yaml = routesYAML(t, yaml, fmt.Sprintf("  - {path: /api/, resource: %q}\n", resOrders))
			return editYAML(t, yaml, "\nroutes:\n", fmt.Sprintf("\nforward_auth:\n  listen: %q\nroutes:\n", verify))
		},
	})
	in := start(t, ingressAddrs{Front: front, Relay: s.Relays[0].listen, Verify: verify, App: strings.TrimPrefix(app.URL, "http://")})

	b := newBrowser(t)
	res := b.login(t, in.URL, "/api/orders?page=1", "ben")
	var first audSeen
	if err := json.Unmarshal(res.Final.Body, &first); err != nil || res.Final.Status != http.StatusOK {
		_, refused := app.Seen()
		t.Fatalf("after login through %s: %d %s; the app refused %q", in.Name, res.Final.Status, res.Final.Body, refused)
	}
	if first.Aud != resOrders || first.Sub == "" || first.JKT == "" {
		t.Fatalf("the app saw %+v, want a DPoP-bound token of %s", first, resOrders)
	}
	forged := http.Header{"Authorization": {"DPoP forged"}, "DPoP": {"forged.proof.jwt"}}
	for _, path := range []string{"/api/orders/7", "/api/orders%2F8"} {
		req, _ := http.NewRequest(http.MethodGet, in.URL+path, nil)
		req.Header = forged.Clone()
		req.Header.Set("Accept", "application/json")
		o, err := b.do(req)
		var seen audSeen
		if err != nil || o.Status != http.StatusOK || json.Unmarshal(o.Body, &seen) != nil || seen.JTI != first.JTI || seen.JKT != first.JKT {
			t.Errorf("GET %s with a client's own DPoP headers = %d %s (%v), want 200 with the session's token", path, o.Status, o.Body, err)
		}
	}
	seen, refused := app.Seen()
	if len(refused) != 0 || len(seen) != 3 {
		t.Errorf("the app accepted %d requests and refused %q; want 3 and none (each proof fresh, for the request it came with)", len(seen), refused)
	}
}
