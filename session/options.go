package session

import (
	"net/http"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/problem"
	"github.com/tokenrelay/tokenrelay/internal/valid"
)

// The options types of this package: what the configuration file says
// about sessions (LifetimeOptions, in key `session`), the refresh engine
// (RefreshOptions, in key `refresh`) and the session cookie
// (CookieOptions, key `cookie`). A field's first doc paragraph is its entry
// in the configuration reference (docs/configuration.md); its default is
// the one WithDefaults writes, the only place that knows it.

// LifetimeOptions bound a session's life and a login's (in key `session`).
type LifetimeOptions struct {
	// A session unused this long ends (sliding).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// A session ends this long after login, used or not.
	//
	// It is also the Max-Age of the session cookie.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// How long a login may take at the provider: the `Max-Age` of the
	// login-binding cookie, and the age (from the creation time sealed
	// inside it) after which it no longer opens.
	LoginStateTTL time.Duration `yaml:"login_state_ttl"`
}

// WithDefaults returns o with every zero duration replaced by its default.
func (o LifetimeOptions) WithDefaults() LifetimeOptions {
	o.IdleTimeout = orDefault(o.IdleTimeout, 24*time.Hour)
	o.MaxLifetime = orDefault(o.MaxLifetime, 720*time.Hour)
	o.LoginStateTTL = orDefault(o.LoginStateTTL, 10*time.Minute)
	return o
}

// Validate reports every problem in o, after defaults, with paths relative
// to the section that holds it.
func (o LifetimeOptions) Validate() []problem.Problem {
	o = o.WithDefaults()
	var ps problem.List
	positive(&ps, "idle_timeout", o.IdleTimeout)
	positive(&ps, "max_lifetime", o.MaxLifetime)
	positive(&ps, "login_state_ttl", o.LoginStateTTL)
	if o.IdleTimeout > o.MaxLifetime && o.MaxLifetime > 0 {
		ps.Warn("idle_timeout", "is longer than session.max_lifetime, so it never applies")
	}
	return ps
}

// RefreshOptions tune the refresh engine (in key `refresh`).
type RefreshOptions struct {
	// An access token this close to expiry is refreshed (still served if
	// the refresh fails).
	//
	// It must be below the access tokens' lifetime (config checks it
	// against provider.access_token_lifetime).
	Ahead time.Duration `yaml:"ahead"`
	// Longest a request waits for a refresh, another replica's included;
	// then it gets the still-valid token or `503 refresh_unavailable`, and
	// the refresh goes on in the background.
	Timeout time.Duration `yaml:"timeout"`
	// Lifetime of the cross-replica refresh lock, and so the longest one
	// refresh may take in the background; must exceed `refresh.timeout`. A
	// token endpoint call still unanswered 2 s before the lock lapses is
	// given up and its outcome is unknown (see
	// [refresh](refresh.md#what-never-sent-twice-means)).
	//
	// +default=`3 × refresh.timeout`
	LockTTL time.Duration `yaml:"lock_ttl"`
	// Least time between a refresh and one forced by an upstream `401`,
	// per session across replicas; within it the upstream's `401` is passed
	// on.
	MinInterval time.Duration `yaml:"min_interval"`
	// The provider's refresh-token reuse grace period (Auth0 *reuse
	// interval*, Okta *grace period*). `0`: the provider has none, and a
	// refresh token whose call's answer was lost is never sent again. Set
	// it only to what the provider really grants (see
	// [refresh](refresh.md#refresh-token-reuse-grace-periods)).
	//
	// Zero is the default and means no grace.
	//
	// +default=`0`
	ReuseGrace time.Duration `yaml:"reuse_grace"`
	// Minimum wait between failed refresh attempts of one session, shared
	// by every replica through the session record (longer when the
	// provider's `Retry-After` says so).
	FailureBackoff time.Duration `yaml:"failure_backoff"`
}

// lockTTLFactor × Timeout is LockTTL's default: a token endpoint call may
// run on in the background well after the requests that started it have
// stopped waiting.
const lockTTLFactor = 3

// WithDefaults returns o with every zero duration but ReuseGrace replaced
// by its default; a zero ReuseGrace means no grace.
func (o RefreshOptions) WithDefaults() RefreshOptions {
	o.Ahead = orDefault(o.Ahead, 60*time.Second)
	o.Timeout = orDefault(o.Timeout, 10*time.Second)
	o.LockTTL = orDefault(o.LockTTL, lockTTLFactor*o.Timeout)
	o.MinInterval = orDefault(o.MinInterval, 30*time.Second)
	o.FailureBackoff = orDefault(o.FailureBackoff, 5*time.Second)
	return o
}

// Validate reports every problem in o, after defaults, with paths relative
// to the section that holds it.
func (o RefreshOptions) Validate() []problem.Problem {
	o = o.WithDefaults()
	var ps problem.List
	positive(&ps, "ahead", o.Ahead)
	positive(&ps, "timeout", o.Timeout)
	positive(&ps, "lock_ttl", o.LockTTL)
	positive(&ps, "failure_backoff", o.FailureBackoff)
	positive(&ps, "min_interval", o.MinInterval)
	if o.ReuseGrace < 0 {
		ps.Add("reuse_grace", "must not be negative")
	}
	if o.Timeout > 0 && o.LockTTL > 0 && o.Timeout >= o.LockTTL {
		ps.Add("timeout", "must be below refresh.lock_ttl (%s): a refresh may go on in the background, under the lock, after requests stop waiting", o.LockTTL)
	}
	return ps
}

// SameSite is the SameSite attribute of the session cookie.
type SameSite string

// SameSite values.
const (
	SameSiteLax    SameSite = "lax"
	SameSiteStrict SameSite = "strict"
)

// insecureCookieName is the session cookie's default name when it is not
// Secure, since the __Host- prefix requires Secure.
const insecureCookieName = "tokenrelay"

// CookieOptions say how the session cookie is written (key `cookie`). The
// cookie is always HttpOnly with Path=/ and no Domain. Its methods apply
// the defaults themselves, so the zero value writes the product's cookie:
// __Host-tokenrelay, Secure, SameSite=Lax.
type CookieOptions struct {
	// Session cookie name (`tokenrelay` when `secure` is off, since
	// `__Host-` requires Secure).
	Name string `yaml:"name"`
	// Turn off only for plain-http local use other than `localhost` (logs a
	// warning).
	//
	// Nil (the key left out) means true.
	Secure *bool `yaml:"secure"`
	// `lax` or `strict`.
	SameSite SameSite `yaml:"same_site"`
}

// WithDefaults returns o with every default filled in.
func (o CookieOptions) WithDefaults() CookieOptions {
	if o.Secure == nil {
		o.Secure = new(true)
	}
	if o.Name == "" {
		o.Name = DefaultCookieName
		if !*o.Secure {
			o.Name = insecureCookieName
		}
	}
	if o.SameSite == "" {
		o.SameSite = SameSiteLax
	}
	return o
}

// Validate reports every problem in o, after defaults, with paths relative
// to the options, and a warning when the cookie is not Secure.
func (o CookieOptions) Validate() []problem.Problem {
	o = o.WithDefaults()
	var ps problem.List
	switch {
	case !valid.Token(o.Name):
		ps.Add("name", "must be a valid cookie name")
	case !*o.Secure && (strings.HasPrefix(o.Name, "__Host-") || strings.HasPrefix(o.Name, "__Secure-")):
		ps.Add("name", "a __Host- or __Secure- cookie requires cookie.secure")
	}
	if !*o.Secure {
		ps.Warn("secure", "false: the session cookie also travels over plain HTTP; use only for local development")
	}
	if o.SameSite != SameSiteLax && o.SameSite != SameSiteStrict {
		ps.Add("same_site", "must be one of lax, strict (got %q)", o.SameSite)
	}
	return ps
}

// secure reports whether the cookie is Secure (the default).
func (o CookieOptions) secure() bool { return o.Secure == nil || *o.Secure }

// name is the cookie's name, defaults applied.
func (o CookieOptions) name() string {
	if o.Name != "" {
		return o.Name
	}
	return o.WithDefaults().Name
}

// sameSite is the cookie's SameSite attribute, defaults applied.
func (o CookieOptions) sameSite() http.SameSite {
	if o.SameSite == SameSiteStrict {
		return http.SameSiteStrictMode
	}
	return http.SameSiteLaxMode
}

func positive(ps *problem.List, path string, d time.Duration) {
	if d <= 0 {
		ps.Add(path, "must be a positive duration")
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
