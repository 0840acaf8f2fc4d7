package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/problem"
)

// DefaultGroupsClaim is the claim Options.Groups is matched against when
// GroupsClaim is empty.
const DefaultGroupsClaim = "groups"

// Options is one policy: the default one (key `policy`) or the rules of a
// route (key `routes[i].policy`, in RouteOptions). The zero value allows
// every logged-in user.
type Options struct {
	// Users whose `email` is one of these (case does not matter) may
	// pass.
	Emails []string `yaml:"emails"`
	// Users whose `email` is at one of these domains may pass:
	// `example.com` is that domain only, `*.example.com` its subdomains.
	EmailDomains []string `yaml:"email_domains"`
	// Trust an `email` without `email_verified: true` for `emails` and
	// `email_domains`.
	//
	// Leave it off unless the provider never sends email_verified and
	// verifies every address itself (Microsoft Entra ID is one).
	AllowUnverifiedEmail bool `yaml:"allow_unverified_email"`
	// Members of any of these groups may pass.
	Groups []string `yaml:"groups"`
	// Claim holding the groups (a string or a list); a dotted name reads
	// nested objects (`realm_access.roles`).
	//
	// The exact claim name wins over the dotted path. Empty means
	// DefaultGroupsClaim.
	// +default=`groups`
	GroupsClaim string `yaml:"groups_claim"`
	// Users whose `sub` is one of these may pass.
	Subjects []string `yaml:"subjects"`
	// Claim → accepted values: each claim named must equal one of its
	// values, or (a list claim) contain one.
	Claims map[string][]string `yaml:"claims"`
	// A [CEL](policy.md#expressions) expression over `claims`,
	// `request.method`, `request.path` and `request.headers` that must be
	// true.
	//
	// Header names are lower case; several values of one header are
	// joined with ", ". It is compiled and type-checked at start.
	Expression string `yaml:"expression"`
	// StepUp asks for a stronger or more recent login.
	StepUp StepUpOptions `yaml:"step_up"`
}

// StepUpOptions are the login qualities a route needs. A session lacking one
// gets a step-up decision whose login parameters ask the provider for it.
type StepUpOptions struct {
	// The session's `acr` must be one of these; the step-up login asks for
	// them (`acr_values`, in this order of preference).
	ACRValues []string `yaml:"acr_values"`
	// The session's `amr` must contain one of these (`mfa`, `hwk`, …); the
	// step-up login forces a new authentication (`prompt=login`).
	//
	// No standard login parameter asks for an amr, so the step-up relies
	// on the provider's own rules.
	AMRValues []string `yaml:"amr_values"`
	// The user must have logged in at most this long ago (`auth_time`);
	// the step-up login sends `max_age`.
	//
	// Zero: no limit.
	MaxAuthAge time.Duration `yaml:"max_auth_age"`
}

// Mode says how a route's policy combines with the default one.
type Mode string

const (
	// ModeExtend (the default, also spelt "") requires both the default
	// policy and the route's.
	ModeExtend Mode = "extend"
	// ModeReplace uses the route's policy alone.
	ModeReplace Mode = "replace"
)

// RouteOptions is a route's policy: its own rules and how they combine with
// the default policy.
type RouteOptions struct {
	// How the route's policy combines with the top-level one: `extend`
	// (both must pass) or `replace` (the route's alone).
	Mode    Mode `yaml:"mode"`
	Options `yaml:",inline"`
}

// withDefaults returns o with every default filled in. It is the only place
// that knows them.
func (o Options) withDefaults() Options {
	if o.GroupsClaim == "" {
		o.GroupsClaim = DefaultGroupsClaim
	}
	return o
}

// IsZero reports whether o configures nothing: it lets every logged-in
// user in.
func (o Options) IsZero() bool {
	return len(o.Emails) == 0 && len(o.EmailDomains) == 0 && len(o.Groups) == 0 &&
		len(o.Subjects) == 0 && len(o.Claims) == 0 && o.Expression == "" && o.StepUp.isZero()
}

func (s StepUpOptions) isZero() bool {
	return len(s.ACRValues) == 0 && len(s.AMRValues) == 0 && s.MaxAuthAge == 0
}

// IsZero reports whether o configures nothing, not even a mode.
func (o RouteOptions) IsZero() bool { return o.Mode == "" && o.Options.IsZero() }

// Validate reports every problem in o, compiling and type-checking the
// expression. Paths are relative to the options ("email_domains[1]",
// "expression"); the caller places them under the options' key.
func (o Options) Validate() []problem.Problem {
	var ps problems
	ps.list("emails", o.Emails, validEmail)
	ps.list("email_domains", o.EmailDomains, validDomain)
	ps.list("groups", o.Groups, nonEmpty)
	ps.list("subjects", o.Subjects, nonEmpty)
	for _, name := range slices.Sorted(maps.Keys(o.Claims)) {
		path := "claims." + name
		switch {
		case name == "":
			ps.add("claims", "a claim name must not be empty")
		case len(o.Claims[name]) == 0:
			ps.add(path, "list at least one value")
		default:
			ps.list(path, o.Claims[name], nonEmpty)
		}
	}
	if o.Expression != "" {
		if err := checkExpression(o.Expression); err != nil {
			ps.add("expression", err.Error())
		}
	}
	o.StepUp.validate(&ps)
	return ps
}

func (s StepUpOptions) validate(ps *problems) {
	ps.list("step_up.acr_values", s.ACRValues, func(v string) string {
		if strings.ContainsAny(v, " \t\r\n") {
			return "must not contain white space (acr_values is a space-separated list)"
		}
		return nonEmpty(v)
	})
	ps.list("step_up.amr_values", s.AMRValues, nonEmpty)
	switch {
	case s.MaxAuthAge < 0:
		ps.add("step_up.max_auth_age", "must not be negative")
	case s.MaxAuthAge > 0 && s.MaxAuthAge < time.Second:
		ps.add("step_up.max_auth_age", "must be at least 1s (max_age counts whole seconds)")
	}
}

// Validate reports every problem in o.
func (o RouteOptions) Validate() []problem.Problem {
	ps := problems(o.Options.Validate())
	switch o.Mode {
	case "", ModeExtend, ModeReplace:
	default:
		ps.add("mode", fmt.Sprintf("unknown mode %q (want extend or replace)", o.Mode))
	}
	return ps
}

// checkExpression compiles src in a fresh environment.
func checkExpression(src string) error {
	env, err := newEnv()
	if err != nil {
		return err
	}
	_, err = compileExpression(env, src)
	return err
}

type problems []problem.Problem

func (ps *problems) add(path, msg string) {
	*ps = append(*ps, problem.Problem{Path: path, Message: msg})
}

// list checks every entry of a list with check, which returns "" when the
// entry is fine.
func (ps *problems) list(path string, entries []string, check func(string) string) {
	for i, e := range entries {
		if msg := check(e); msg != "" {
			ps.add(fmt.Sprintf("%s[%d]", path, i), msg)
		}
	}
}

func nonEmpty(s string) string {
	if strings.TrimSpace(s) == "" {
		return "must not be empty"
	}
	return ""
}

func validEmail(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Sprintf("%q is not an email address", s)
	}
	return ""
}

func validDomain(s string) string {
	d := strings.TrimPrefix(s, "*.")
	if d == "" || strings.ContainsAny(d, "@*/: \t\r\n") || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
		return fmt.Sprintf("%q is not a domain (write example.com, or *.example.com for its subdomains)", s)
	}
	return ""
}
