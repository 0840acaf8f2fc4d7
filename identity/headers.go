package identity

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"github.com/tokenrelay/tokenrelay/internal/claims"
	"github.com/tokenrelay/tokenrelay/secret"
)

// MaxHeaderValue bounds one identity header's value in bytes. A longer
// value (a user in hundreds of groups) is left out rather than cut short,
// so the upstream never mistakes part of a list for all of it.
const MaxHeaderValue = 4096

// User is whom the headers and the assertion describe: the session's
// subject and the identity claims kept with it.
type User = claims.User

// Stripper removes client-sent identity headers. Strip is safe for
// concurrent use.
type Stripper struct {
	names []string // canonical
}

// NewStripper builds the stripper for a set of routes: it removes the
// default headers' names, every name any route maps (claims and ID token)
// and the assertion header, on every route, so no route's upstream can
// receive one of them from the client.
func NewStripper(routes []Options, assertion AssertionOptions) *Stripper {
	seen := map[string]bool{}
	add := func(name string) {
		if name != "" {
			seen[textproto.CanonicalMIMEHeaderKey(name)] = true
		}
	}
	for name := range defaultHeaders {
		add(name)
	}
	for _, o := range routes {
		for name := range o.Headers {
			add(name)
		}
		add(o.IDTokenHeader)
	}
	add(assertion.withDefaults().Header)
	return &Stripper{names: slices.Sorted(maps.Keys(seen))}
}

// Names lists the headers Strip removes, in canonical form.
func (s *Stripper) Names() []string { return slices.Clone(s.names) }

// Strip removes every identity header from h, which must use canonical
// keys (as net/http's server and httputil.ReverseProxy do).
func (s *Stripper) Strip(h http.Header) {
	for _, name := range s.names {
		delete(h, name)
	}
}

// mapped is one header → claim pair.
type mapped struct {
	header string // canonical
	claim  string
}

// headerPlan is a route's header mapping, compiled.
type headerPlan struct {
	headers []mapped
	idToken string // canonical; "" to send none
}

func newHeaderPlan(o Options) headerPlan {
	o = o.withDefaults()
	p := headerPlan{}
	if o.IDTokenHeader != "" {
		p.idToken = textproto.CanonicalMIMEHeaderKey(o.IDTokenHeader)
	}
	for _, name := range slices.Sorted(maps.Keys(o.Headers)) {
		p.headers = append(p.headers, mapped{header: textproto.CanonicalMIMEHeaderKey(name), claim: o.Headers[name]})
	}
	return p
}

// ValueTooLargeError says a claim's header value was longer than
// MaxHeaderValue and was left out.
type ValueTooLargeError struct {
	Header string
	Len    int
}

func (e *ValueTooLargeError) Error() string {
	return fmt.Sprintf("identity: %s left out: its value has %d bytes, more than %d", e.Header, e.Len, MaxHeaderValue)
}

// set writes u's mapped claims (and the ID token) into h. A claim the user
// lacks sends no header. The first header left out for its size is
// reported; the others are still set.
func (p *headerPlan) set(h http.Header, u *User, idToken secret.String) error {
	var err error
	for _, m := range p.headers {
		v, ok := u.Claim(m.claim)
		if !ok {
			continue
		}
		s, ok := headerValue(v)
		if !ok || s == "" {
			continue
		}
		if len(s) > MaxHeaderValue {
			if err == nil {
				err = &ValueTooLargeError{Header: m.header, Len: len(s)}
			}
			continue
		}
		h[m.header] = []string{s}
	}
	if p.idToken != "" && !idToken.IsZero() {
		h[p.idToken] = []string{idToken.Reveal()}
	}
	return err
}

// headerValue renders a claim for a header: a scalar as text, an array as
// its scalar elements joined by commas (objects and nested arrays are
// skipped). Control characters, CR and LF among them, become spaces, so a
// claim can never start a new header line.
func headerValue(v any) (string, bool) {
	if s, ok := claims.Scalar(v); ok {
		return sanitize(s), true
	}
	list, ok := v.([]any)
	if !ok {
		return "", false
	}
	var b strings.Builder
	for _, e := range list {
		s, ok := claims.Scalar(e)
		if !ok {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(sanitize(s))
		if b.Len() > MaxHeaderValue {
			break // too large anyway: stop copying
		}
	}
	return b.String(), true
}

// sanitize replaces control characters (including CR, LF, NUL, TAB and
// DEL) with spaces and trims surrounding space. It returns s itself when
// nothing changes.
func sanitize(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			clean = false
			break
		}
	}
	if !clean {
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, s)
	}
	return strings.TrimSpace(s)
}

// Route is what one route tells its upstream: its header mapping and, when
// enabled, the assertion. It is built once at start; Apply is safe for
// concurrent use.
type Route struct {
	plan     headerPlan
	audience string
	// signer is nil when the route sends no assertion.
	signer *signer
	header string
}

// Apply sets the route's identity headers on h (the outbound request's
// header, already stripped) for u. cacheKey identifies the session (a
// hash of its id, never the id itself); the assertion signed for one
// (session, route) is reused for part of its lifetime. An empty cacheKey
// signs every time. An error from the assertion means the request must
// not go on; a ValueTooLargeError only reports a header left out.
func (rt *Route) Apply(ctx context.Context, h http.Header, u User, idToken secret.String, cacheKey string) error {
	tooLarge := rt.plan.set(h, &u, idToken)
	if rt.signer != nil {
		tok, err := rt.signer.assertion(ctx, &u, rt.audience, &rt.plan, cacheKey)
		if err != nil {
			return err
		}
		h[rt.header] = []string{tok}
	}
	return tooLarge
}
