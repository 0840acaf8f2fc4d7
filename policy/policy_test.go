package policy

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// decode turns JSON into claims the way the session store does, numbers as
// json.Number.
func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

func mustNew(t testing.TB, def Options, route RouteOptions, now func() time.Time) *Policy {
	t.Helper()
	for _, p := range def.Validate() {
		t.Fatalf("default policy: %s", p)
	}
	for _, p := range route.Validate() {
		t.Fatalf("route policy: %s", p)
	}
	p, err := New(def, route, now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func get(path string) Request {
	return Request{Method: http.MethodGet, Path: path, Header: http.Header{}}
}

// users every table below refers to by name.
func testUsers(t testing.TB) map[string]User {
	return map[string]User{
		"alice": {Subject: "u-alice", Claims: decode(t, `{"sub":"u-alice","email":"Alice@Example.com","email_verified":true,"groups":["staff","admins"],"department":"eng","realm_access":{"roles":["billing"]}}`)},
		"bob":   {Subject: "u-bob", Claims: decode(t, `{"sub":"u-bob","email":"bob@example.com","email_verified":false,"groups":["staff"]}`)},
		"carol": {Subject: "u-carol", Claims: decode(t, `{"sub":"u-carol","email":"carol@partner.org","email_verified":"true","groups":"partners","level":3}`)},
		"dave":  {Subject: "u-dave", Claims: decode(t, `{"email":"dave@eu.example.com","email_verified":true,"department":["ops","eng"]}`)},
		"erin":  {Subject: "u-erin", Claims: nil},
	}
}

// TestEvaluateAllowLists pins who each kind of allow-list lets through: a
// table of user × policy → decision, with the rule named on a denial.
func TestEvaluateAllowLists(t *testing.T) {
	users := testUsers(t)
	tests := []struct {
		name   string
		policy Options
		// want maps a user to the rule that denies them; users not
		// listed are allowed.
		deny map[string]string
	}{
		{"nothing configured", Options{}, nil},
		{"emails, case-insensitive, verified only", Options{Emails: []string{"alice@example.com", "BOB@example.com", "carol@partner.org"}},
			map[string]string{"bob": "route.emails", "dave": "route.emails", "erin": "route.emails"}},
		{"emails, unverified allowed", Options{Emails: []string{"bob@example.com"}, AllowUnverifiedEmail: true},
			map[string]string{"alice": "route.emails", "carol": "route.emails", "dave": "route.emails", "erin": "route.emails"}},
		{"email domain, exact", Options{EmailDomains: []string{"example.com"}},
			map[string]string{"bob": "route.email_domains", "carol": "route.email_domains", "dave": "route.email_domains", "erin": "route.email_domains"}},
		{"email domain, subdomains", Options{EmailDomains: []string{"*.example.com", "PARTNER.org"}},
			map[string]string{"alice": "route.email_domains", "bob": "route.email_domains", "erin": "route.email_domains"}},
		{"groups, array or string claim", Options{Groups: []string{"admins", "partners"}},
			map[string]string{"bob": "route.groups", "dave": "route.groups", "erin": "route.groups"}},
		{"groups from a nested claim", Options{Groups: []string{"billing"}, GroupsClaim: "realm_access.roles"},
			map[string]string{"bob": "route.groups", "carol": "route.groups", "dave": "route.groups", "erin": "route.groups"}},
		{"subjects, from the claim or the session", Options{Subjects: []string{"u-bob", "u-dave"}},
			map[string]string{"alice": "route.subjects", "carol": "route.subjects", "erin": "route.subjects"}},
		{"claim equal or containing", Options{Claims: map[string][]string{"department": {"eng"}}},
			map[string]string{"bob": "route.claims.department", "carol": "route.claims.department", "erin": "route.claims.department"}},
		{"numeric claim", Options{Claims: map[string][]string{"level": {"3", "4"}}},
			map[string]string{"alice": "route.claims.level", "bob": "route.claims.level", "dave": "route.claims.level", "erin": "route.claims.level"}},
		{"every kind must pass", Options{EmailDomains: []string{"example.com", "*.example.com"}, Groups: []string{"staff"}},
			map[string]string{"bob": "route.email_domains", "carol": "route.email_domains", "dave": "route.groups", "erin": "route.email_domains"}},
		{"several claims all required", Options{Claims: map[string][]string{"department": {"eng"}, "groups": {"admins"}}},
			map[string]string{"bob": "route.claims.department", "carol": "route.claims.department", "dave": "route.claims.groups", "erin": "route.claims.department"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, Options{}, RouteOptions{Options: tt.policy}, nil)
			for _, name := range slices.Sorted(maps.Keys(users)) {
				got := p.Evaluate(users[name], get("/"))
				want := Decision{Effect: Allow}
				if rule, ok := tt.deny[name]; ok {
					want = Decision{Effect: Deny, Rule: rule}
				}
				if got.Effect != want.Effect || got.Rule != want.Rule {
					t.Errorf("%s: Evaluate = %v %q, want %v %q", name, got.Effect, got.Rule, want.Effect, want.Rule)
				}
			}
		})
	}
}

// TestEvaluateExpression pins what a CEL expression sees: claims with
// numbers as numbers, the request's method, path and lower-cased headers;
// an expression that fails to evaluate denies.
func TestEvaluateExpression(t *testing.T) {
	users := testUsers(t)
	post := Request{Method: http.MethodPost, Path: "/api/orders", Header: http.Header{
		"X-Tenant":  {"acme"},
		"X-Forward": {"a", "b"},
	}}
	tests := []struct {
		expr string
		user string
		req  Request
		want Effect
		err  bool
	}{
		{`"admins" in claims.groups`, "alice", get("/"), Allow, false},
		{`"admins" in claims.groups`, "bob", get("/"), Deny, false},
		{`"admins" in claims.groups`, "erin", get("/"), Deny, true},
		{`"admins" in claims.?groups.orValue([])`, "erin", get("/"), Deny, false},
		{`has(claims.groups) && "admins" in claims.groups`, "erin", get("/"), Deny, false},
		{`request.method == "GET" || "admins" in claims.groups`, "bob", get("/"), Allow, false},
		{`request.method == "GET" || "admins" in claims.groups`, "bob", post, Deny, false},
		{`request.method == "GET" || "admins" in claims.groups`, "alice", post, Allow, false},
		{`request.path.startsWith("/api/") && request.headers["x-tenant"] == "acme"`, "bob", post, Allow, false},
		{`request.headers["x-tenant"] == "acme"`, "bob", get("/"), Deny, true},
		{`"x-tenant" in request.headers`, "bob", post, Allow, false},
		{`!("x-tenant" in request.headers)`, "bob", get("/"), Allow, false},
		{`request.headers["X-Tenant"] == "acme"`, "bob", post, Allow, false},
		{`request.headers["x-forward"] == "a, b"`, "bob", post, Allow, false},
		{`request.headers.exists(k, k == "x-tenant") && size(request.headers) == 2`, "bob", post, Allow, false},
		{`claims.level >= 3`, "carol", get("/"), Allow, false},
		{`claims.level > 3`, "carol", get("/"), Deny, false},
		{`claims.level == 3.0`, "carol", get("/"), Allow, false},
		{`claims.email.lowerAscii().endsWith("@example.com") && claims.email_verified == true`, "alice", get("/"), Allow, false},
		{`claims.sub == "u-dave"`, "dave", get("/"), Allow, false},
		{`claims.realm_access.roles.exists(r, r == "billing")`, "alice", get("/"), Allow, false},
		{`sets.intersects(claims.groups, ["admins", "ops"])`, "alice", get("/"), Allow, false},
		{`claims.groups`, "alice", get("/"), Deny, true},
	}
	for _, tt := range tests {
		// `claims.groups` type-checks (claim values are dyn) but is not a
		// bool at run time, which denies.
		p := mustNew(t, Options{}, RouteOptions{Options: Options{Expression: tt.expr}}, nil)
		got := p.Evaluate(users[tt.user], tt.req)
		if got.Effect != tt.want || (got.Err != nil) != tt.err {
			t.Errorf("%q for %s %s %s: Evaluate = %v (err %v), want %v (err %v)", tt.expr, tt.user, tt.req.Method, tt.req.Path, got.Effect, got.Err, tt.want, tt.err)
		}
		if got.Effect == Deny && got.Rule != "route.expression" {
			t.Errorf("%q: denied by %q, want route.expression", tt.expr, got.Rule)
		}
	}
}

// TestDefaultAndRoute pins how a route's policy combines with the default:
// extend requires both, replace drops the default.
func TestDefaultAndRoute(t *testing.T) {
	users := testUsers(t)
	def := Options{EmailDomains: []string{"example.com"}, Expression: `request.method != "DELETE"`}
	tests := []struct {
		name  string
		route RouteOptions
		user  string
		req   Request
		want  Effect
		rule  string
	}{
		{"default alone", RouteOptions{}, "alice", get("/"), Allow, ""},
		{"default refuses", RouteOptions{}, "carol", get("/"), Deny, "default.email_domains"},
		{"default expression", RouteOptions{}, "alice", Request{Method: "DELETE", Path: "/"}, Deny, "default.expression"},
		{"extend: both pass", RouteOptions{Options: Options{Groups: []string{"admins"}}}, "alice", get("/"), Allow, ""},
		{"extend: route refuses", RouteOptions{Options: Options{Groups: []string{"admins"}}}, "bob", get("/"), Deny, "default.email_domains"},
		{"extend: route refuses a default-allowed user", RouteOptions{Mode: ModeExtend, Options: Options{Subjects: []string{"u-bob"}}}, "alice", get("/"), Deny, "route.subjects"},
		{"extend: both expressions", RouteOptions{Options: Options{Expression: `request.path != "/secret"`}}, "alice", get("/secret"), Deny, "route.expression"},
		{"replace: default dropped", RouteOptions{Mode: ModeReplace, Options: Options{Groups: []string{"partners"}}}, "carol", get("/"), Allow, ""},
		{"replace: default expression dropped", RouteOptions{Mode: ModeReplace}, "alice", Request{Method: "DELETE", Path: "/"}, Allow, ""},
		{"replace: route refuses", RouteOptions{Mode: ModeReplace, Options: Options{Groups: []string{"partners"}}}, "alice", get("/"), Deny, "route.groups"},
	}
	for _, tt := range tests {
		p := mustNew(t, def, tt.route, nil)
		got := p.Evaluate(users[tt.user], tt.req)
		if got.Effect != tt.want || got.Rule != tt.rule {
			t.Errorf("%s: Evaluate(%s) = %v %q, want %v %q", tt.name, tt.user, got.Effect, got.Rule, tt.want, tt.rule)
		}
	}
}

// TestStepUp pins the step-up checks (acr, amr, auth_time with an injected
// clock), their order after the allow-lists, and the login parameters a
// step-up decision carries.
func TestStepUp(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	user := func(claims string) User { return User{Subject: "u", Claims: decode(t, claims)} }
	tests := []struct {
		name   string
		def    Options
		route  RouteOptions
		user   User
		want   Effect
		rule   string
		params string
	}{
		{"acr satisfied", Options{}, RouteOptions{Options: Options{StepUp: StepUpOptions{ACRValues: []string{"gold", "silver"}}}},
			user(`{"acr":"silver"}`), Allow, "", ""},
		{"acr missing", Options{}, RouteOptions{Options: Options{StepUp: StepUpOptions{ACRValues: []string{"gold", "silver"}}}},
			user(`{}`), StepUp, "route.step_up.acr_values", "acr_values=gold+silver"},
		{"acr too weak", Options{}, RouteOptions{Options: Options{StepUp: StepUpOptions{ACRValues: []string{"gold"}}}},
			user(`{"acr":"bronze"}`), StepUp, "route.step_up.acr_values", "acr_values=gold"},
		{"amr contains one", Options{}, RouteOptions{Options: Options{StepUp: StepUpOptions{AMRValues: []string{"mfa", "hwk"}}}},
			user(`{"amr":["pwd","hwk"]}`), Allow, "", ""},
		{"amr lacking forces a login", Options{}, RouteOptions{Options: Options{StepUp: StepUpOptions{AMRValues: []string{"mfa"}}}},
			user(`{"amr":["pwd"]}`), StepUp, "route.step_up.amr_values", "prompt=login"},
		{"recent enough", Options{}, RouteOptions{Options: Options{StepUp: StepUpOptions{MaxAuthAge: 10 * time.Minute}}},
			user(`{"auth_time":1799999400}`), Allow, "", ""},
		{"too old", Options{}, RouteOptions{Options: Options{StepUp: StepUpOptions{MaxAuthAge: 10 * time.Minute}}},
			user(`{"auth_time":1799999399}`), StepUp, "route.step_up.max_auth_age", "max_age=600"},
		{"no auth_time", Options{}, RouteOptions{Options: Options{StepUp: StepUpOptions{MaxAuthAge: 10 * time.Minute}}},
			user(`{}`), StepUp, "route.step_up.max_auth_age", "max_age=600"},
		{"default step-up applies", Options{StepUp: StepUpOptions{ACRValues: []string{"gold"}}}, RouteOptions{},
			user(`{"acr":"silver"}`), StepUp, "default.step_up.acr_values", "acr_values=gold"},
		{"route overrides a field", Options{StepUp: StepUpOptions{ACRValues: []string{"gold"}, MaxAuthAge: time.Hour}},
			RouteOptions{Options: Options{StepUp: StepUpOptions{ACRValues: []string{"silver"}}}},
			user(`{"acr":"silver","auth_time":1799990000}`), StepUp, "default.step_up.max_auth_age", "acr_values=silver&max_age=3600"},
		{"replace drops the default step-up", Options{StepUp: StepUpOptions{ACRValues: []string{"gold"}}}, RouteOptions{Mode: ModeReplace},
			user(`{}`), Allow, "", ""},
		{"denial comes before step-up", Options{}, RouteOptions{Options: Options{Groups: []string{"admins"}, StepUp: StepUpOptions{ACRValues: []string{"gold"}}}},
			user(`{}`), Deny, "route.groups", ""},
	}
	for _, tt := range tests {
		p := mustNew(t, tt.def, tt.route, clock)
		got := p.Evaluate(tt.user, get("/"))
		q := url.Values{}
		got.Login.Set(q)
		if got.Effect != tt.want || got.Rule != tt.rule || q.Encode() != tt.params {
			t.Errorf("%s: Evaluate = %v %q %q, want %v %q %q", tt.name, got.Effect, got.Rule, q.Encode(), tt.want, tt.rule, tt.params)
		}
	}
}

// TestValidate pins the problems check-config reports, with key paths
// relative to the options and CEL's own error for a bad expression.
func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		opts RouteOptions
		want []string // "path: message fragment"
	}{
		{"valid", RouteOptions{Mode: ModeReplace, Options: Options{
			Emails: []string{"a@b.c"}, EmailDomains: []string{"b.c", "*.b.c"}, Groups: []string{"g"},
			Subjects: []string{"s"}, Claims: map[string][]string{"dept": {"eng"}},
			Expression: `"g" in claims.groups && request.method == "GET"`,
			StepUp:     StepUpOptions{ACRValues: []string{"urn:gold"}, AMRValues: []string{"mfa"}, MaxAuthAge: time.Minute},
		}}, nil},
		{"undeclared reference", RouteOptions{Options: Options{Expression: `claims.x == foo`}},
			[]string{"expression: undeclared reference to 'foo'"}},
		{"misspelt request field", RouteOptions{Options: Options{Expression: `request.methd == "GET"`}},
			[]string{"expression: undeclared reference to 'request'"}},
		{"syntax error", RouteOptions{Options: Options{Expression: `claims.x ==`}},
			[]string{"expression: Syntax error"}},
		{"not a bool", RouteOptions{Options: Options{Expression: `request.path`}},
			[]string{"expression: the expression must give a bool, it gives string"}},
		{"type error", RouteOptions{Options: Options{Expression: `request.method == 3`}},
			[]string{"expression: found no matching overload for '_==_'"}},
		{"lists", RouteOptions{Options: Options{
			Emails:       []string{"alice@example.com", "alice", ""},
			EmailDomains: []string{"example.com", "@example.com", "*.", "*example.com"},
			Groups:       []string{"  "},
			Subjects:     []string{""},
		}}, []string{
			`emails[1]: "alice" is not an email address`,
			`emails[2]: "" is not an email address`,
			`email_domains[1]: "@example.com" is not a domain`,
			`email_domains[2]: "*." is not a domain`,
			`email_domains[3]: "*example.com" is not a domain`,
			"groups[0]: must not be empty",
			"subjects[0]: must not be empty",
		}},
		{"claims", RouteOptions{Options: Options{Claims: map[string][]string{"a": nil, "b": {"x", ""}, "": {"x"}}}},
			[]string{"claims: a claim name must not be empty", "claims.a: list at least one value", "claims.b[1]: must not be empty"}},
		{"step-up", RouteOptions{Options: Options{StepUp: StepUpOptions{ACRValues: []string{"a b"}, AMRValues: []string{""}, MaxAuthAge: 500 * time.Millisecond}}},
			[]string{"step_up.acr_values[0]: must not contain white space", "step_up.amr_values[0]: must not be empty", "step_up.max_auth_age: must be at least 1s"}},
		{"negative age", RouteOptions{Options: Options{StepUp: StepUpOptions{MaxAuthAge: -time.Second}}},
			[]string{"step_up.max_auth_age: must not be negative"}},
		{"mode", RouteOptions{Mode: "merge"}, []string{`mode: unknown mode "merge"`}},
	}
	for _, tt := range tests {
		got := tt.opts.Validate()
		if len(got) != len(tt.want) {
			t.Errorf("%s: Validate = %v, want %d problems %v", tt.name, got, len(tt.want), tt.want)
			continue
		}
		for i, p := range got {
			path, frag, _ := strings.Cut(tt.want[i], ": ")
			if p.Path != path || !strings.Contains(p.Message, frag) {
				t.Errorf("%s: problem %d = %s, want path %q and a message containing %q", tt.name, i, p, path, frag)
			}
		}
	}
}

// TestExpressionErrorNamesNoSource pins how a bad expression is reported:
// CEL's message with a line and column and the line with a caret, without
// the "<input>" CEL would name, since check-config puts the key path first.
func TestExpressionErrorNamesNoSource(t *testing.T) {
	ps := Options{Expression: "request.method == \"GET\" ||\n  grops.exists(g, g == \"x\")"}.Validate()
	if len(ps) != 1 {
		t.Fatalf("Validate = %v, want one problem", ps)
	}
	want := "line 2, column 3: undeclared reference to 'grops' (in container '')\n" +
		" |   grops.exists(g, g == \"x\")\n" +
		" | ..^"
	if ps[0].Path != "expression" || ps[0].Message != want {
		t.Errorf("problem = %s: %q, want expression: %q", ps[0].Path, ps[0].Message, want)
	}
}

// TestAllowsAll pins when a route's policy has nothing to check: neither
// the default nor the route configures anything, or the route replaces a
// default with nothing.
func TestAllowsAll(t *testing.T) {
	def := Options{Groups: []string{"staff"}}
	tests := []struct {
		name  string
		def   Options
		route RouteOptions
		want  bool
	}{
		{"nothing", Options{}, RouteOptions{}, true},
		{"a default", def, RouteOptions{}, false},
		{"a default replaced by nothing", def, RouteOptions{Mode: ModeReplace}, true},
		{"a route's step-up", Options{}, RouteOptions{Options: Options{StepUp: StepUpOptions{MaxAuthAge: time.Minute}}}, false},
		{"a route's expression", Options{}, RouteOptions{Options: Options{Expression: "true"}}, false},
	}
	for _, tt := range tests {
		if got := mustNew(t, tt.def, tt.route, nil).AllowsAll(); got != tt.want {
			t.Errorf("%s: AllowsAll = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestPreview pins what /.auth/session can tell about a route without a
// request: the claims decide, or the request would.
func TestPreview(t *testing.T) {
	users := testUsers(t)
	now := func() time.Time { return time.Unix(1_800_000_000, 0) }
	tests := []struct {
		name  string
		route Options
		want  map[string]Access
	}{
		{"allow-list", Options{Groups: []string{"admins"}}, map[string]Access{"alice": Allowed, "bob": Denied}},
		{"claims-only expression", Options{Expression: `"admins" in claims.groups`}, map[string]Access{"alice": Allowed, "bob": Denied, "erin": Denied}},
		{"request decides for some", Options{Expression: `"admins" in claims.groups || request.method == "GET"`},
			map[string]Access{"alice": Allowed, "bob": Conditional}},
		{"request decides for all", Options{Expression: `request.headers["x-tenant"] == "acme"`},
			map[string]Access{"alice": Conditional}},
		{"claims refuse before the request matters", Options{Expression: `"admins" in claims.groups && request.path.startsWith("/a")`},
			map[string]Access{"alice": Conditional, "bob": Denied}},
		{"step-up", Options{StepUp: StepUpOptions{ACRValues: []string{"gold"}}}, map[string]Access{"alice": StepUpRequired}},
		{"denied before step-up", Options{Groups: []string{"admins"}, StepUp: StepUpOptions{ACRValues: []string{"gold"}}},
			map[string]Access{"alice": StepUpRequired, "bob": Denied}},
	}
	for _, tt := range tests {
		p := mustNew(t, Options{}, RouteOptions{Options: tt.route}, now)
		for name, want := range tt.want {
			if got := p.Preview(users[name]); got != want {
				t.Errorf("%s: Preview(%s) = %v, want %v", tt.name, name, got, want)
			}
		}
	}
}

// TestClaimNames pins the claims a session must keep for the allow-lists
// and step-up to work.
func TestClaimNames(t *testing.T) {
	p := mustNew(t, Options{EmailDomains: []string{"example.com"}}, RouteOptions{Options: Options{
		Groups: []string{"x"}, GroupsClaim: "realm_access.roles",
		Claims:     map[string][]string{"dept": {"eng"}},
		Expression: `claims.level > 2 && has(claims.team) && claims["https://x.example/roles"].size() > 0 && claims.?nick.orValue("") != "" && claims.realm_access.roles.size() > 0 && request.method == "GET"`,
		StepUp:     StepUpOptions{ACRValues: []string{"gold"}, MaxAuthAge: time.Minute},
	}}, nil)
	got := p.ClaimNames()
	want := []string{"email", "email_verified", "realm_access", "dept", "level", "team", "https://x.example/roles", "nick", "acr", "auth_time"}
	if !slices.Equal(got, want) {
		t.Errorf("ClaimNames = %q, want %q", got, want)
	}
}

// TestZeroEffectDenies pins that a Decision nobody filled in denies.
func TestZeroEffectDenies(t *testing.T) {
	var d Decision
	if d.Effect != Deny {
		t.Errorf("zero Decision.Effect = %v, want deny", d.Effect)
	}
}
