package policy

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/claims"
)

// User is who a policy judges: the session's subject and the identity
// claims kept with it. Numbers may be json.Number (as the session store
// decodes them) or float64.
type User = claims.User

// claimsOf returns the claims an expression sees, with sub set from
// Subject when the claims lack it (copying the map only then).
func claimsOf(u *User) map[string]any {
	if _, ok := u.Claims["sub"]; ok || u.Subject == "" {
		if u.Claims == nil {
			return map[string]any{}
		}
		return u.Claims
	}
	c := make(map[string]any, len(u.Claims)+1)
	for k, v := range u.Claims {
		c[k] = v
	}
	c["sub"] = u.Subject
	return c
}

// Request is what an expression sees of the HTTP request.
type Request struct {
	Method string
	// Path is the request's path as the route matched it: decoded, before
	// any strip_prefix.
	Path   string
	Header http.Header
}

// Effect is what a decision says. The zero value denies.
type Effect uint8

const (
	// Deny: 403 forbidden; the upstream never sees the request.
	Deny Effect = iota
	// Allow: the request goes on.
	Allow
	// StepUp: 401 step_up_required; the user may pass after logging in
	// again with Decision.Login.
	StepUp
)

func (e Effect) String() string {
	switch e {
	case Deny:
		return "deny"
	case Allow:
		return "allow"
	case StepUp:
		return "step_up"
	}
	return fmt.Sprintf("Effect(%d)", uint8(e))
}

// Decision is the answer for one request.
type Decision struct {
	Effect Effect
	// Rule names the requirement that denied or asked for step-up, for
	// the log ("default.email_domains", "route.expression",
	// "route.step_up.acr_values"); empty on Allow. Never send it to the
	// client: it tells an attacker what to forge.
	Rule string
	// Err is why an expression failed to evaluate (a missing claim), for
	// a debug log; nil when it simply was false.
	Err error
	// Login, for StepUp, is what the login URL must ask the provider for.
	Login LoginParams
}

// Policy is a route's compiled policy. Evaluate and Preview are safe for
// concurrent use.
type Policy struct {
	rules  []rule
	exprs  []*expression
	stepUp stepUp
	now    func() time.Time
}

// New compiles a route's effective policy: def (the default policy) and
// route combined as route.Mode says. now is the clock step-up reads
// (nil: time.Now). Options are expected to have passed Validate; New
// reports the first problem it meets otherwise.
func New(def Options, route RouteOptions, now func() time.Time) (*Policy, error) {
	if now == nil {
		now = time.Now
	}
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	p := &Policy{now: now}
	parts := []struct {
		prefix string
		o      Options
	}{{"default.", def}, {"route.", route.Options}}
	if route.Mode == ModeReplace {
		parts = parts[1:]
	}
	for _, part := range parts {
		o := part.o.withDefaults()
		p.rules = append(p.rules, listRules(part.prefix, o)...)
		if o.Expression != "" {
			e, err := newExpression(env, part.prefix+"expression", o.Expression)
			if err != nil {
				return nil, fmt.Errorf("policy: %sexpression: %w", part.prefix, err)
			}
			p.exprs = append(p.exprs, e)
		}
		p.stepUp = p.stepUp.override(part.prefix, o.StepUp)
	}
	return p, nil
}

// AllowsAll reports whether p has nothing to check: every logged-in user
// passes every request. A caller may then skip it (and the claims it
// would read).
func (p *Policy) AllowsAll() bool {
	return len(p.rules) == 0 && len(p.exprs) == 0 && p.stepUp.acr == nil && p.stepUp.amr == nil && p.stepUp.maxAge == 0
}

// Evaluate decides whether u may make request r. Allow-lists come first,
// then the expressions, then step-up: a user refused anyway is not sent to
// log in again first.
func (p *Policy) Evaluate(u User, r Request) Decision {
	for i := range p.rules {
		if !p.rules[i].match(&u) {
			return Decision{Effect: Deny, Rule: p.rules[i].name}
		}
	}
	for _, e := range p.exprs {
		if ok, err := e.eval(&u, &r); !ok {
			return Decision{Effect: Deny, Rule: e.rule, Err: err}
		}
	}
	if rule, login, ok := p.stepUp.check(&u, p.now); !ok {
		return Decision{Effect: StepUp, Rule: rule, Login: login}
	}
	return Decision{Effect: Allow}
}

// ClaimNames lists the top-level claims the policy reads, so the session
// can keep them (provider.claims): those of the allow-lists, step-up, and
// those the expressions name (claims.x or claims["x"]; a claim reached
// only by iterating over claims is not seen).
func (p *Policy) ClaimNames() []string {
	var names []string
	add := func(n string) {
		for _, have := range names {
			if have == n {
				return
			}
		}
		names = append(names, n)
	}
	for _, rl := range p.rules {
		switch rl.kind {
		case kindEmails, kindDomains:
			add("email")
			add("email_verified")
		case kindClaim:
			add(claims.Root(rl.claim))
		}
	}
	for _, e := range p.exprs {
		for _, c := range e.claims {
			add(c)
		}
	}
	p.stepUp.claimNames(add)
	return names
}
