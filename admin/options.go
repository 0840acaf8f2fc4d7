package admin

import (
	"github.com/tokenrelay/tokenrelay/internal/problem"
	"github.com/tokenrelay/tokenrelay/secret"
)

// MinTokenBytes is the shortest bearer token the admin API accepts.
const MinTokenBytes = 32

// Options is the admin key: the session admin API on the admin listener.
type Options struct {
	// Bearer token of the session admin API (`/admin/…` on the admin
	// listener), at least 32 bytes (`tokenrelay gen-secret` makes one).
	// Unset, the default, turns the API off.
	//
	// Prefer token_file.
	Token secret.String `yaml:"token"`
	// File holding the admin API's bearer token.
	TokenFile string `yaml:"token_file"`
	// Keep each new session's key in the store, sealed under the server
	// secret, so that ending a session through the admin API also
	// revokes its refresh token at the provider. Off by default: with it
	// on, a dump of the store and the server secret together open every
	// session created meanwhile (docs/security.md). Without it, ended
	// sessions stop working at once but their refresh tokens stay valid
	// at the provider until they expire there.
	Escrow bool `yaml:"escrow"`
}

// Enabled reports whether the admin API is on: a token is configured.
func (o Options) Enabled() bool { return !o.Token.IsZero() }

// Escrowed reports whether sessions' keys are escrowed: the API is on and
// escrow asked for.
func (o Options) Escrowed() bool { return o.Enabled() && o.Escrow }

// Validate reports a token too short to resist guessing, and escrow
// without the API.
func (o Options) Validate() []problem.Problem {
	var ps problem.List
	if o.Enabled() && len(o.Token.Reveal()) < MinTokenBytes {
		ps.Add("token", "must be at least %d bytes (tokenrelay gen-secret makes one)", MinTokenBytes)
	}
	if o.Escrow && !o.Enabled() {
		ps.Add("escrow", "needs the admin API: set token_file (or token)")
	}
	return ps
}
