// Package claims reads identity claims the way tokenrelay keeps them: a JSON
// object decoded into map[string]any, whose numbers are json.Number (the
// session store decodes with UseNumber) or float64 (plain encoding/json).
// It is shared by the packages that judge a user (policy) and describe one
// to the upstream (identity), so both read a claim the same way.
package claims

import (
	"encoding/json"
	"strconv"
	"strings"
)

// User is a session's subject and the identity claims kept with it: whom
// a policy judges and the identity headers describe.
type User struct {
	Subject string
	// Claims must not be modified while a policy or an identity route
	// reads them.
	Claims map[string]any
}

// Claim looks a claim up; "sub" falls back to Subject.
func (u *User) Claim(name string) (any, bool) {
	if v, ok := Lookup(u.Claims, name); ok {
		return v, true
	}
	if name == "sub" && u.Subject != "" {
		return u.Subject, true
	}
	return nil, false
}

// Lookup finds the claim called name. The exact key wins, so claims named by
// URL ("https://example.com/roles") work as they are; only when there is no
// such key and name has dots is it read as a path through nested objects
// ("realm_access.roles" in Keycloak's access token).
func Lookup(c map[string]any, name string) (any, bool) {
	if v, ok := c[name]; ok {
		return v, true
	}
	if !strings.Contains(name, ".") {
		return nil, false
	}
	var cur any = c
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Root is the top-level claim that Lookup(name) reads: name itself, or its
// first dotted segment when name is a path. A caller that keeps only some
// claims of the ID token keeps Root(name) and name.
func Root(name string) string {
	if i := strings.IndexByte(name, '.'); i > 0 {
		return name[:i]
	}
	return name
}

// Scalar renders a string, boolean or number as text. It reports false for
// nil, arrays and objects.
func Scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		if v {
			return "true", true
		}
		return "false", true
	case json.Number:
		return string(v), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case int64:
		return strconv.FormatInt(v, 10), true
	case int:
		return strconv.Itoa(v), true
	}
	return "", false
}

// Any reports whether match accepts one of v's values: v itself when it is
// a scalar, or any scalar element when v is an array. Objects and nested
// arrays never match.
func Any(v any, match func(string) bool) bool {
	if list, ok := v.([]any); ok {
		for _, e := range list {
			if s, ok := Scalar(e); ok && match(s) {
				return true
			}
		}
		return false
	}
	if list, ok := v.([]string); ok {
		for _, s := range list {
			if match(s) {
				return true
			}
		}
		return false
	}
	s, ok := Scalar(v)
	return ok && match(s)
}

// Number reads a numeric claim (a NumericDate such as auth_time) as whole
// seconds. Strings of digits are accepted too: some providers send them.
func Number(v any) (int64, bool) {
	switch v := v.(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n, true
		}
		f, err := v.Float64()
		return int64(f), err == nil
	case float64:
		return int64(v), true
	case int64:
		return v, true
	case int:
		return int64(v), true
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// True reads a boolean claim such as email_verified, which some providers
// send as the string "true".
func True(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return strings.EqualFold(v, "true")
	}
	return false
}
