package identity

import (
	"fmt"
	"maps"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/problem"
)

// DefaultHeaders is the claim mapping of a route that sets none: header
// name → claim.
var defaultHeaders = map[string]string{
	"X-Forwarded-User":               "sub",
	"X-Forwarded-Email":              "email",
	"X-Forwarded-Groups":             "groups",
	"X-Forwarded-Preferred-Username": "preferred_username",
}

// DefaultHeaders returns the mapping a route without a headers key uses:
// X-Forwarded-User (sub), X-Forwarded-Email (email), X-Forwarded-Groups
// (groups) and X-Forwarded-Preferred-Username (preferred_username).
func DefaultHeaders() map[string]string { return maps.Clone(defaultHeaders) }

// Defaults of AssertionOptions.
const (
	DefaultAssertionHeader = "X-Tokenrelay-Assertion"
	DefaultLifetime        = time.Minute
	DefaultAlgorithm       = "ES256"
	DefaultRotation        = 24 * time.Hour
	DefaultPublishAhead    = time.Hour
)

// Options say what one route tells its upstream (key `routes[i].identity`).
// The zero value sends the default headers, no ID token and no assertion.
type Options struct {
	// Header → claim sent to the upstream; `{}` sends none.
	//
	// Nil (the key left out) means DefaultHeaders.
	// +default=`X-Forwarded-User: sub`, `X-Forwarded-Email: email`, `X-Forwarded-Groups: groups`, `X-Forwarded-Preferred-Username: preferred_username`
	Headers map[string]string `yaml:"headers"`
	// Header carrying the session's raw ID token (none when empty).
	IDTokenHeader string `yaml:"id_token_header"`
	// Send the signed identity assertion (in `assertion.header`).
	Assertion bool `yaml:"assertion"`
}

// Claims lists the claims o sends (its headers', or the default headers'),
// sorted; sub is among them when mapped.
func (o Options) Claims() []string {
	seen := map[string]bool{}
	for _, c := range o.withDefaults().Headers {
		seen[c] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// AssertionOptions configure the signed identity assertion for every route
// that sends it (key `assertion`).
type AssertionOptions struct {
	// Header carrying the signed identity assertion.
	Header string `yaml:"header"`
	// Lifetime of an assertion, `iat` to `exp` (1s to 1h).
	Lifetime time.Duration `yaml:"lifetime"`
	// `ES256` or `EdDSA` (Ed25519); with `key_file`, the key's (may be
	// left out).
	Algorithm string `yaml:"algorithm"`
	// PEM private key that signs (PKCS #8, or SEC 1 `EC PRIVATE KEY`);
	// empty: keys are generated, kept sealed in the session store, and
	// rotate.
	KeyFile string `yaml:"key_file"`
	// PEM key that `key_file` replaced (private, or `PUBLIC KEY`):
	// published in the JWKS, never signing.
	//
	// The assertions it signed verify until they expire; remove it once
	// the new key has signed for longer than Lifetime. Only with KeyFile.
	PreviousKeyFile string `yaml:"previous_key_file"`
	// How long a generated key signs before the next one takes over (at
	// least `publish_ahead` + 2 × `lifetime`).
	Rotation time.Duration `yaml:"rotation"`
	// How long a new generated key is in the JWKS before it signs, so
	// upstreams that cache the JWKS know it in time.
	PublishAhead time.Duration `yaml:"publish_ahead"`
}

// withDefaults returns o with every default filled in; it is the only
// place that knows them.
func (o Options) withDefaults() Options {
	if o.Headers == nil {
		o.Headers = defaultHeaders
	}
	return o
}

// WithDefaults returns o with every default filled in; it is the only
// place that knows them.
func (o AssertionOptions) WithDefaults() AssertionOptions { return o.withDefaults() }

// withDefaults returns o with every default filled in.
func (o AssertionOptions) withDefaults() AssertionOptions {
	if o.Header == "" {
		o.Header = DefaultAssertionHeader
	}
	if o.Lifetime == 0 {
		o.Lifetime = DefaultLifetime
	}
	if o.Algorithm == "" && o.KeyFile == "" {
		o.Algorithm = DefaultAlgorithm
	}
	if o.Rotation == 0 {
		o.Rotation = DefaultRotation
	}
	if o.PublishAhead == 0 {
		o.PublishAhead = DefaultPublishAhead
	}
	return o
}

// reservedHeaders are headers tokenrelay or HTTP itself owns: a claim
// mapped onto one would break the request or let a claim impersonate
// something else.
var reservedHeaders = map[string]bool{
	"Authorization": true, "Proxy-Authorization": true, "Cookie": true, "Set-Cookie": true,
	"Host": true, "Content-Length": true, "Content-Type": true, "Transfer-Encoding": true,
	"Connection": true, "Upgrade": true, "Te": true, "Trailer": true, "Keep-Alive": true,
	"X-Request-Id": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
	"Forwarded": true, "Dpop": true,
}

// Validate reports every problem in o. Paths are relative to the options
// ("headers.X-Forwarded-Email"); the caller places them under the options'
// key.
func (o Options) Validate() []problem.Problem {
	var ps problem.List
	for _, name := range slices.Sorted(maps.Keys(o.Headers)) {
		if msg := checkHeaderName(name); msg != "" {
			ps.Add("headers."+name, "%s", msg)
		} else if strings.TrimSpace(o.Headers[name]) == "" {
			ps.Add("headers."+name, "name the claim this header carries")
		}
	}
	if o.IDTokenHeader != "" {
		if msg := checkHeaderName(o.IDTokenHeader); msg != "" {
			ps.Add("id_token_header", "%s", msg)
		} else if _, dup := canonicalKeys(o.withDefaults().Headers)[textproto.CanonicalMIMEHeaderKey(o.IDTokenHeader)]; dup {
			ps.Add("id_token_header", "already carries a claim (headers)")
		}
	}
	return ps
}

func canonicalKeys(m map[string]string) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[textproto.CanonicalMIMEHeaderKey(k)] = true
	}
	return out
}

// checkHeaderName returns why name cannot carry identity, or "".
func checkHeaderName(name string) string {
	if name == "" || !validToken(name) {
		return fmt.Sprintf("%q is not a valid header name", name)
	}
	if reservedHeaders[textproto.CanonicalMIMEHeaderKey(name)] {
		return fmt.Sprintf("%s is reserved: choose another header", textproto.CanonicalMIMEHeaderKey(name))
	}
	return ""
}

// validToken reports whether s is an RFC 9110 token (a header name).
func validToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Validate reports every problem in o, loading KeyFile when set.
func (o AssertionOptions) Validate() []problem.Problem {
	var ps problem.List
	add := ps.Add
	if o.Header != "" {
		if msg := checkHeaderName(o.Header); msg != "" {
			add("header", "%s", msg)
		}
	}
	if o.Algorithm != "" && o.Algorithm != "ES256" && o.Algorithm != "EdDSA" {
		add("algorithm", "unknown algorithm %q (want ES256 or EdDSA)", o.Algorithm)
	}
	d := o.withDefaults()
	if d.Lifetime < time.Second || d.Lifetime > time.Hour {
		add("lifetime", "must be between 1s and 1h, not %s", d.Lifetime)
	}
	if d.PublishAhead < 0 {
		add("publish_ahead", "must not be negative")
	}
	if d.Rotation < 2*d.Lifetime+d.PublishAhead {
		add("rotation", "must be at least publish_ahead plus twice the lifetime (%s)", 2*d.Lifetime+d.PublishAhead)
	}
	if o.KeyFile != "" {
		if _, err := loadKeyFile(o.KeyFile, o.Algorithm); err != nil {
			add("key_file", "%v", err)
		}
	}
	switch {
	case o.PreviousKeyFile != "" && o.KeyFile == "":
		add("previous_key_file", "only with key_file (generated keys rotate by themselves)")
	case o.PreviousKeyFile != "":
		if _, err := loadPreviousKeyFile(o.PreviousKeyFile); err != nil {
			add("previous_key_file", "%v", err)
		}
	}
	return ps
}
