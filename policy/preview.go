package policy

import "fmt"

// Access is what Preview says about a route for a user, without a request.
type Access uint8

const (
	// Denied: the policy refuses the user whatever the request.
	Denied Access = iota
	// Allowed: the policy lets the user in whatever the request.
	Allowed
	// StepUpRequired: the user passes the policy but must log in again
	// (stronger or more recently) first.
	StepUpRequired
	// Conditional: the expression depends on the request (its method,
	// path or headers): some requests will pass, others not.
	Conditional
)

func (a Access) String() string {
	switch a {
	case Denied:
		return "denied"
	case Allowed:
		return "allowed"
	case StepUpRequired:
		return "step_up"
	case Conditional:
		return "conditional"
	}
	return fmt.Sprintf("Access(%d)", uint8(a))
}

// MarshalText renders the access as its String, for the JSON of
// /.auth/session.
func (a Access) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Preview says whether u may use the route at all, for /.auth/session to
// tell a single-page app what to show. It evaluates the expressions with
// request.* unknown, so a rule such as `request.method == "GET" || "admin"
// in claims.groups` answers Allowed for an admin and Conditional for
// anyone else, rather than guessing from a made-up request. It costs more
// than Evaluate; it is not for the request path.
func (p *Policy) Preview(u User) Access {
	for i := range p.rules {
		if !p.rules[i].match(&u) {
			return Denied
		}
	}
	conditional := false
	for _, e := range p.exprs {
		switch e.preview(&u) {
		case outcomeFalse:
			return Denied
		case outcomeUnknown:
			conditional = true
		}
	}
	if _, _, ok := p.stepUp.check(&u, p.now); !ok {
		return StepUpRequired
	}
	if conditional {
		return Conditional
	}
	return Allowed
}
