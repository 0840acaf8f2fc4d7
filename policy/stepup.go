package policy

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/claims"
)

// LoginParams are what a step-up login asks the provider for. They are
// shared between decisions: do not modify ACRValues.
type LoginParams struct {
	// ACRValues, when not empty, is sent as acr_values (space-separated,
	// in order of preference).
	ACRValues []string
	// MaxAge, when positive, is sent as max_age in whole seconds.
	MaxAge time.Duration
	// Prompt, when not empty, is sent as prompt ("login": authenticate
	// again even with a live provider session).
	Prompt string
}

// IsZero reports whether the login asks for nothing in particular.
func (l LoginParams) IsZero() bool {
	return len(l.ACRValues) == 0 && l.MaxAge == 0 && l.Prompt == ""
}

// Set writes the parameters into q, the query of a login or authorization
// URL.
func (l LoginParams) Set(q url.Values) {
	if len(l.ACRValues) > 0 {
		q.Set("acr_values", strings.Join(l.ACRValues, " "))
	}
	if l.MaxAge > 0 {
		q.Set("max_age", strconv.FormatInt(int64(l.MaxAge/time.Second), 10))
	}
	if l.Prompt != "" {
		q.Set("prompt", l.Prompt)
	}
}

// stepUp holds a route's effective step-up requirements. Each field comes
// from the route's options when set there, else from the default's; the
// names record which, for decisions.
type stepUp struct {
	acr, amr         set
	acrRule, amrRule string
	maxAge           time.Duration
	maxAgeRule       string
	// login is what every step-up login asks for: the acr values and the
	// max age configured (the check that failed may be either).
	login LoginParams
}

// override lays o's configured fields over s.
func (s stepUp) override(prefix string, o StepUpOptions) stepUp {
	if len(o.ACRValues) > 0 {
		s.acr, s.acrRule = newSet(o.ACRValues, false), prefix+"step_up.acr_values"
		s.login.ACRValues = slices.Clone(o.ACRValues)
	}
	if len(o.AMRValues) > 0 {
		s.amr, s.amrRule = newSet(o.AMRValues, false), prefix+"step_up.amr_values"
	}
	if o.MaxAuthAge > 0 {
		s.maxAge, s.maxAgeRule = o.MaxAuthAge, prefix+"step_up.max_auth_age"
		s.login.MaxAge = o.MaxAuthAge
	}
	return s
}

// check reports whether u's login satisfies s; when not, the rule that
// failed and the login that may satisfy it. The clock is read only for a
// max_auth_age.
func (s *stepUp) check(u *User, now func() time.Time) (string, LoginParams, bool) {
	if s.acr != nil {
		acr, _ := claims.Scalar(u.Claims["acr"])
		if !s.acr.has(acr) {
			return s.acrRule, s.login, false
		}
	}
	if s.amr != nil && !claims.Any(u.Claims["amr"], s.amr.has) {
		// No parameter asks for an amr: make the provider authenticate
		// again, under whatever rules it applies for this client.
		login := s.login
		login.Prompt = "login"
		return s.amrRule, login, false
	}
	if s.maxAge > 0 && !recentAuth(u, now(), s.maxAge) {
		return s.maxAgeRule, s.login, false
	}
	return "", LoginParams{}, true
}

// recentAuth reports whether u's auth_time lies within maxAge of now. A
// missing auth_time is not recent: the provider sends it whenever max_age
// was asked for.
func recentAuth(u *User, now time.Time, maxAge time.Duration) bool {
	at, ok := claims.Number(u.Claims["auth_time"])
	if !ok {
		return false
	}
	return now.Sub(time.Unix(at, 0)) <= maxAge
}

func (s *stepUp) claimNames(add func(string)) {
	if s.acr != nil {
		add("acr")
	}
	if s.amr != nil {
		add("amr")
	}
	if s.maxAge > 0 {
		add("auth_time")
	}
}
