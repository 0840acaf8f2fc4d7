package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenrelay/tokenrelay/identity"
	"github.com/tokenrelay/tokenrelay/policy"
)

// policyYAML has a default policy, a route with its own policy, identity
// and the assertion, and a route with an empty identity.
const policyYAML = `
public_url: https://app.example.com
provider:
  issuer: https://id.example.com
  client_id: spa
session:
  secret: "0123456789abcdef0123456789abcdef"
policy:
  email_domains: [example.com]
assertion:
  lifetime: 30s
routes:
  - path: /api/admin/
    upstream: http://127.0.0.1:3000
    policy:
      mode: replace
      groups: [admins]
      claims: {department: [eng, ops]}
      step_up: {acr_values: ["urn:mfa"], max_auth_age: 10m}
    identity:
      headers: {X-User: sub, X-Roles: realm_access.roles}
      id_token_header: X-Id-Token
      assertion: true
  - path: /api/
    upstream: http://127.0.0.1:3000
    identity: {}
  - path: /
    upstream: http://127.0.0.1:5173
    auth: none
`

// TestPolicyKeys pins how the policy, identity and assertion keys load:
// the route's policy and identity as written, `identity: {}` present with
// the default headers, no identity key absent, and the assertion's
// defaults around the one key set.
func TestPolicyKeys(t *testing.T) {
	cfg, warnings := mustParse(t, policyYAML)
	if len(warnings) != 0 {
		t.Errorf("warnings = %v", warnings)
	}
	if got := cfg.Policy.EmailDomains; !reflect.DeepEqual(got, []string{"example.com"}) {
		t.Errorf("policy.email_domains = %q", got)
	}
	admin := cfg.Routes[0]
	wantPolicy := policy.RouteOptions{Mode: policy.ModeReplace, Options: policy.Options{
		Groups: []string{"admins"}, Claims: map[string][]string{"department": {"eng", "ops"}},
		StepUp: policy.StepUpOptions{ACRValues: []string{"urn:mfa"}, MaxAuthAge: 600e9},
	}}
	if !reflect.DeepEqual(admin.Policy, wantPolicy) {
		t.Errorf("routes[0].policy = %+v, want %+v", admin.Policy, wantPolicy)
	}
	wantIdentity := &identity.Options{Headers: map[string]string{"X-User": "sub", "X-Roles": "realm_access.roles"}, IDTokenHeader: "X-Id-Token", Assertion: true}
	if !reflect.DeepEqual(admin.Identity, wantIdentity) {
		t.Errorf("routes[0].identity = %+v, want %+v", admin.Identity, wantIdentity)
	}
	if id := cfg.Routes[1].Identity; id == nil || !reflect.DeepEqual(*id, identity.Options{}) {
		t.Errorf("routes[1].identity = %+v, want present and empty (the default headers)", id)
	}
	if cfg.Routes[2].Identity != nil {
		t.Errorf("routes[2].identity = %+v, want nil (no key)", cfg.Routes[2].Identity)
	}
	if a := cfg.Assertion; a.Lifetime != 30e9 || a.Header != "X-Tokenrelay-Assertion" || a.Algorithm != "ES256" {
		t.Errorf("assertion = %+v, want lifetime 30s and the other defaults", a)
	}

	// A variable inside routes[n].identity makes the key present.
	cfg, _ = mustParse(t, baseYAML, "TOKENRELAY_ROUTES_0_IDENTITY_ASSERTION=true", "TOKENRELAY_POLICY_GROUPS=staff,admins")
	if id := cfg.Routes[0].Identity; id == nil || !id.Assertion {
		t.Errorf("after TOKENRELAY_ROUTES_0_IDENTITY_ASSERTION: identity = %+v, want the assertion on", id)
	}
	if !reflect.DeepEqual(cfg.Policy.Groups, []string{"staff", "admins"}) {
		t.Errorf("after TOKENRELAY_POLICY_GROUPS: groups = %q", cfg.Policy.Groups)
	}
}

// TestPolicyProblems pins what check-config says about policies and
// identity: a bad expression with its key path and CEL's message (no
// "<input>"), a policy on a route that cannot enforce it, identity without
// a session, a reserved header, an assertion without an issuer.
func TestPolicyProblems(t *testing.T) {
	yaml := strings.NewReplacer(
		"public_url: https://app.example.com\n", "",
		"provider:\n", "provider:\n  type: custom\n  token_endpoint: https://id.example.com/token\n  custom:\n    refresh_request: {body: {refreshToken: \"{{refresh_token}}\"}}\n    token_response: {access_token: accessToken}\n",
		"  issuer: https://id.example.com\n  client_id: spa\n", "",
		"      groups: [admins]\n", "      groups: [admins]\n      expression: 'request.method == \"GET\" || grops.exists(g, g == \"x\")'\n",
		"    identity: {}\n", "    identity: {headers: {Authorization: sub}}\n    auth: optional\n    policy: {groups: [staff]}\n",
		"    auth: none\n", "    auth: none\n    identity: {}\n",
	).Replace(policyYAML)
	_, _, err := loader{readFile: memFiles(nil)}.load([]byte(yaml), nil)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("load = %v, want Problems", err)
	}
	want := []string{
		"routes[0].policy.expression: line 1, column 28: undeclared reference to 'grops' (in container '')\n" +
			" | request.method == \"GET\" || grops.exists(g, g == \"x\")\n" +
			" | ...........................^",
		"routes[1].identity.headers.Authorization: Authorization is reserved: choose another header",
		"routes[1].policy: applies only to auth: required routes (on an optional route a refused user would go on without a session)",
		"routes[2].identity: has nothing to tell with auth none: there is no session",
		"routes[0].identity.assertion: needs public_url: it is the assertion's issuer (iss)",
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.Path+": "+p.Message)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Errorf("problems lack %q; got:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
}
