package policy

import (
	"maps"
	"slices"
	"strings"

	"github.com/tokenrelay/tokenrelay/internal/claims"
)

// kind is the sort of allow-list a rule is. Rules are one concrete type
// switched on kind rather than an interface, so Evaluate's arguments stay
// on the caller's stack (an interface call would make them escape).
type kind uint8

const (
	kindEmails kind = iota
	kindDomains
	kindClaim // groups and claims
	kindSubjects
)

// rule is one allow-list. Every rule of a policy must match.
type rule struct {
	// name is reported in decisions ("route.groups").
	name string
	kind kind
	// values holds the emails, exact domains, subjects or claim values.
	values set
	// suffixes are the ".example.com" of "*.example.com" domains.
	suffixes []string
	// claim is the claim a kindClaim rule reads.
	claim string
	// verified requires email_verified for kindEmails and kindDomains.
	verified bool
}

// set is a lookup table of strings.
type set map[string]struct{}

func newSet(entries []string, fold bool) set {
	s := make(set, len(entries))
	for _, e := range entries {
		if fold {
			e = strings.ToLower(e)
		}
		s[e] = struct{}{}
	}
	return s
}

func (s set) has(v string) bool { _, ok := s[v]; return ok }

// listRules builds the allow-lists o configures, in a fixed order so the
// rule named in a denial does not vary between runs.
func listRules(prefix string, o Options) []rule {
	var rs []rule
	verified := !o.AllowUnverifiedEmail
	if len(o.Emails) > 0 {
		rs = append(rs, rule{name: prefix + "emails", kind: kindEmails, values: newSet(o.Emails, true), verified: verified})
	}
	if len(o.EmailDomains) > 0 {
		rs = append(rs, domainRule(prefix+"email_domains", o.EmailDomains, verified))
	}
	if len(o.Groups) > 0 {
		rs = append(rs, rule{name: prefix + "groups", kind: kindClaim, claim: o.GroupsClaim, values: newSet(o.Groups, false)})
	}
	if len(o.Subjects) > 0 {
		rs = append(rs, rule{name: prefix + "subjects", kind: kindSubjects, values: newSet(o.Subjects, false)})
	}
	for _, name := range slices.Sorted(maps.Keys(o.Claims)) {
		rs = append(rs, rule{name: prefix + "claims." + name, kind: kindClaim, claim: name, values: newSet(o.Claims[name], false)})
	}
	return rs
}

func domainRule(name string, domains []string, verified bool) rule {
	r := rule{name: name, kind: kindDomains, values: set{}, verified: verified}
	for _, d := range domains {
		d = strings.ToLower(d)
		if rest, ok := strings.CutPrefix(d, "*"); ok {
			r.suffixes = append(r.suffixes, rest)
			continue
		}
		r.values[d] = struct{}{}
	}
	return r
}

// match reports whether u passes the rule.
func (r *rule) match(u *User) bool {
	switch r.kind {
	case kindEmails:
		e, ok := email(u, r.verified)
		return ok && r.values.has(e)
	case kindDomains:
		return r.matchDomain(u)
	case kindClaim:
		v, ok := u.Claim(r.claim)
		return ok && claims.Any(v, r.values.has)
	case kindSubjects:
		return u.Subject != "" && r.values.has(u.Subject)
	}
	return false
}

// matchDomain matches the part of the email after the last @: exact
// domains by lookup, "*.example.com" entries by suffix.
func (r *rule) matchDomain(u *User) bool {
	e, ok := email(u, r.verified)
	if !ok {
		return false
	}
	at := strings.LastIndexByte(e, '@')
	if at < 0 {
		return false
	}
	domain := e[at+1:]
	if r.values.has(domain) {
		return true
	}
	for _, s := range r.suffixes {
		if len(domain) > len(s) && strings.HasSuffix(domain, s) {
			return true
		}
	}
	return false
}

// email returns the user's email in lower case, and whether it may be
// trusted: email_verified is true, or verification is not required.
func email(u *User, verified bool) (string, bool) {
	e, ok := u.Claims["email"].(string)
	if !ok || e == "" {
		return "", false
	}
	if verified && !claims.True(u.Claims["email_verified"]) {
		return "", false
	}
	// ToLower returns e itself, without allocating, when it has no upper
	// case letter, which is how providers send most addresses.
	return strings.ToLower(e), true
}
