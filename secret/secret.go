// Package secret holds the String type used for every credential tokenrelay
// handles: access, refresh and ID tokens, client secrets, server secrets.
//
// A String prints as REDACTED through fmt, log/slog and encoding/json, so a
// token that reaches a log line or an error message by accident does not leak.
// Code that really needs the value calls Reveal, which is easy to grep for.
package secret

import (
	"fmt"
	"log/slog"
)

const redacted = "REDACTED"

// String is a secret value. The zero value is the empty secret.
type String string

// Reveal returns the secret itself.
func (s String) Reveal() string { return string(s) }

// IsZero reports whether the secret is empty.
func (s String) IsZero() bool { return s == "" }

// String implements fmt.Stringer and never returns the secret.
func (s String) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer for %#v.
func (s String) GoString() string { return `secret.String("` + s.String() + `")` }

// Format makes every verb (%s, %v, %q, %x, ...) print the redacted form.
func (s String) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s.String())
		return
	}
	_, _ = f.Write([]byte(s.String()))
}

// LogValue implements slog.LogValuer.
func (s String) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON keeps secrets out of JSON written for people (logs, debug
// endpoints). Code that must persist a secret converts it with Reveal first.
func (s String) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }
