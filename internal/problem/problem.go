// Package problem holds the one type every options type reports with: a
// problem, or a warning, at a key path relative to the options it was found
// in. A package's Validate returns problems with paths relative to its own
// options ("issuer", "routes[1].upstream"); whoever embeds the options
// places them under the key where they sit in the file with Under
// ("provider.issuer"). The package imports nothing of tokenrelay's, so any
// package may use it.
package problem

import (
	"fmt"
	"strings"
)

// Severity says whether a problem stops a configuration from loading.
type Severity int

const (
	// Error: the configuration cannot be used.
	Error Severity = iota
	// Warning: the configuration works but deserves attention (a
	// generated session secret, an insecure cookie).
	Warning
	// Debug: a note worth only a debug-level log line (an ignored
	// Kubernetes service-link variable); check-config does not print it.
	Debug
)

// Problem is one thing wrong with a configuration, or one warning about
// it. Path is the YAML key path ("routes[1].upstream") relative to the
// options validated, or, for a problem in the environment, the variable's
// name; it is empty for the options as a whole.
type Problem struct {
	Path     string
	Message  string
	Severity Severity
}

// String formats the problem as "path: message", or the message alone
// when the path is empty.
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// List collects problems in the order they are found. The zero value is
// an empty list ready to use.
type List []Problem

// Add appends an error at path with a formatted message.
func (l *List) Add(path, format string, args ...any) {
	*l = append(*l, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Warn appends a warning at path with a formatted message.
func (l *List) Warn(path, format string, args ...any) {
	*l = append(*l, Problem{Path: path, Message: fmt.Sprintf(format, args...), Severity: Warning})
}

// Append appends ps, placed under prefix (see Under).
func (l *List) Append(prefix string, ps []Problem) {
	*l = append(*l, Under(prefix, ps)...)
}

// Errors returns the problems that are errors, in order.
func (l List) Errors() List { return l.filter(func(s Severity) bool { return s == Error }) }

// Warnings returns the problems that are not errors (warnings and debug
// notes), in order.
func (l List) Warnings() List { return l.filter(func(s Severity) bool { return s != Error }) }

// String prints one problem per line.
func (l List) String() string {
	lines := make([]string, len(l))
	for i, p := range l {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Err returns the errors of l (not its warnings) as one error that prints
// one per line, or nil when there is none. A constructor that checks its
// options with Validate returns it.
func (l List) Err() error {
	errs := l.Errors()
	if len(errs) == 0 {
		return nil
	}
	return errorList(errs)
}

// errorList is the error Err returns.
type errorList List

func (e errorList) Error() string { return List(e).String() }

func (l List) filter(keep func(Severity) bool) List {
	var out List
	for _, p := range l {
		if keep(p.Severity) {
			out = append(out, p)
		}
	}
	return out
}

// Under returns copies of ps whose paths are placed under prefix, the key
// path of the options they were found in: "issuer" under "provider" is
// "provider.issuer", "[2]" under "routes" is "routes[2]", and a problem
// about the options as a whole (empty path) gets the prefix itself.
func Under(prefix string, ps []Problem) []Problem {
	if len(ps) == 0 {
		return nil
	}
	out := make([]Problem, len(ps))
	for i, p := range ps {
		p.Path = Join(prefix, p.Path)
		out[i] = p
	}
	return out
}

// Join joins two key paths: Join("session", "redis.url") is
// "session.redis.url", Join("routes", "[0].path") is "routes[0].path", and
// an empty side leaves the other.
func Join(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "":
		return prefix
	case strings.HasPrefix(path, "["):
		return prefix + path
	}
	return prefix + "." + path
}
