package config

import (
	"fmt"
	"strings"

	"github.com/tokenrelay/tokenrelay/internal/problem"
)

// Problem is one thing wrong with a configuration, or one warning about it.
// Its Path is the full YAML key path ("routes[1].upstream") or, for a
// problem in the environment, the variable's name; it is empty for the file
// as a whole.
type Problem = problem.Problem

// Problems lists everything wrong with a configuration. It is the error Load
// and Validate return, so one run reports every problem at once.
type Problems []Problem

// Error prints one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// add appends a problem with a formatted message.
func (ps *Problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// err returns ps as an error, or nil when there is no problem.
func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Warnings are things that work but deserve attention (a generated session
// secret, an insecure cookie). They never stop tokenrelay from starting. A
// warning whose Severity is problem.Debug is worth only a debug-level log
// line.
type Warnings []Problem

// String prints one warning per line.
func (ws Warnings) String() string { return Problems(ws).Error() }

func (ws *Warnings) add(path, format string, args ...any) {
	*ws = append(*ws, Problem{Path: path, Message: fmt.Sprintf(format, args...), Severity: problem.Warning})
}
