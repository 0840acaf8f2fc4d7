package idp

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// LoginRequest is what one login asks the provider for beyond the
// configured authorization parameters: a stronger authentication
// (acr_values), a recent one (max_age) or a new one (prompt). A step-up
// login carries one; the zero value asks for nothing more.
type LoginRequest struct {
	// ACRValues are sent as acr_values, space-separated, in order of
	// preference.
	ACRValues []string
	// MaxAge, when positive, is sent as max_age in whole seconds.
	MaxAge time.Duration
	// Prompt values (login, consent, select_account) are added to the
	// configured prompt; "none" (a silent login) stands alone and replaces
	// it.
	Prompt []string
}

// Limits of a LoginRequest read from a URL: a login URL is handed to
// browsers, so what it can ask the provider for is bounded.
const (
	maxACRValues   = 8
	maxACRValueLen = 256
	// maxMaxAge bounds max_age: a year is longer than any session.
	maxMaxAge = 365 * 24 * time.Hour
)

// promptValues are the prompt values a login URL may add. "none" (a
// silent login: the provider answers login_required rather than ask the
// user) may only stand alone; it is never part of a step-up.
var promptValues = []string{"login", "consent", "select_account", promptNone}

const promptNone = "none"

// IsZero reports whether r asks for nothing beyond a plain login.
func (r LoginRequest) IsZero() bool {
	return len(r.ACRValues) == 0 && r.MaxAge == 0 && len(r.Prompt) == 0
}

// Covers reports whether r asked for everything want asks for: each of its
// acr values, a max_age at most want's, each of its prompt values. A
// session whose login covered a step-up request and still falls short of it
// shows that the provider did not (or could not) give what was asked.
func (r LoginRequest) Covers(want LoginRequest) bool {
	for _, v := range want.ACRValues {
		if !slices.Contains(r.ACRValues, v) {
			return false
		}
	}
	if want.MaxAge > 0 && (r.MaxAge <= 0 || r.MaxAge > want.MaxAge) {
		return false
	}
	for _, p := range want.Prompt {
		if !slices.Contains(r.Prompt, p) {
			return false
		}
	}
	return true
}

// Set writes r into q, the query of a login URL or an authorization
// request: acr_values, max_age and prompt, each when r has it.
func (r LoginRequest) Set(q url.Values) {
	if len(r.ACRValues) > 0 {
		q.Set("acr_values", strings.Join(r.ACRValues, " "))
	}
	if r.MaxAge > 0 {
		q.Set("max_age", strconv.FormatInt(int64(r.MaxAge/time.Second), 10))
	}
	if len(r.Prompt) > 0 {
		q.Set("prompt", strings.Join(r.Prompt, " "))
	}
}

// ErrBadLoginRequest marks a login URL whose acr_values, max_age or prompt
// cannot be sent to the provider.
var ErrBadLoginRequest = errors.New("idp: bad login request")

// ParseLoginRequest reads acr_values, max_age and prompt from the query of
// a login URL (and nothing else). acr_values are printable ASCII tokens
// (at most 8, of 256 bytes each), max_age a whole number of seconds from 1
// to a year, prompt any of login, consent and select_account; each may
// appear once; prompt=none only alone. Anything else is an error wrapping
// ErrBadLoginRequest.
func ParseLoginRequest(q url.Values) (LoginRequest, error) {
	for _, name := range []string{"acr_values", "max_age", "prompt"} {
		if len(q[name]) > 1 {
			return LoginRequest{}, fmt.Errorf("%w: %s given twice", ErrBadLoginRequest, name)
		}
	}
	var r LoginRequest
	var err error
	if r.ACRValues, err = parseACRValues(q.Get("acr_values")); err != nil {
		return LoginRequest{}, err
	}
	if r.MaxAge, err = parseMaxAge(q.Get("max_age")); err != nil {
		return LoginRequest{}, err
	}
	if r.Prompt, err = parsePrompt(q.Get("prompt")); err != nil {
		return LoginRequest{}, err
	}
	return r, nil
}

func parseACRValues(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	vals := strings.Fields(v)
	if len(vals) == 0 || len(vals) > maxACRValues {
		return nil, fmt.Errorf("%w: acr_values must hold 1 to %d values", ErrBadLoginRequest, maxACRValues)
	}
	for _, a := range vals {
		if len(a) > maxACRValueLen || !printableASCII(a) {
			return nil, fmt.Errorf("%w: acr_values must be printable ASCII tokens of at most %d bytes", ErrBadLoginRequest, maxACRValueLen)
		}
	}
	return vals, nil
}

func parseMaxAge(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || time.Duration(n)*time.Second > maxMaxAge {
		return 0, fmt.Errorf("%w: max_age must be a whole number of seconds from 1 to %d", ErrBadLoginRequest, int64(maxMaxAge/time.Second))
	}
	return time.Duration(n) * time.Second, nil
}

func parsePrompt(v string) ([]string, error) {
	var out []string
	for _, p := range strings.Fields(v) {
		if !slices.Contains(promptValues, p) {
			return nil, fmt.Errorf("%w: prompt may hold %s", ErrBadLoginRequest, strings.Join(promptValues, ", "))
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if slices.Contains(out, promptNone) && len(out) > 1 {
		return nil, fmt.Errorf("%w: prompt=none cannot be combined with another prompt value", ErrBadLoginRequest)
	}
	return out, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return s != ""
}

// mergePrompt adds the prompt values of r to configured, the prompt of the
// configured authorization parameters, without repeating one. A configured
// "none" cannot be combined: r's values replace it; nor can a requested
// "none" (a silent login), which replaces the configured ones.
func mergePrompt(configured string, extra []string) string {
	if slices.Contains(extra, promptNone) {
		return promptNone
	}
	vals := strings.Fields(configured)
	if slices.Contains(vals, "none") {
		vals = nil
	}
	for _, p := range extra {
		if !slices.Contains(vals, p) {
			vals = append(vals, p)
		}
	}
	return strings.Join(vals, " ")
}
