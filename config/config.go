// Package config is tokenrelay's configuration file: Load reads the YAML,
// applies TOKENRELAY_* environment variables and reads the *_file secrets,
// then fills defaults and validates. The options of each part are the
// types of the package that uses them (idp.Options, session.CookieOptions,
// redisstore.Options, proxy.Route...), each with its defaults and its
// Validate; config embeds them, owns only the keys no package does (the
// listeners, logging, TLS, the session store and secrets), and checks what
// spans sections. It does no I/O beyond reading the file and the secret
// files it names, and holds no runtime objects.
//
// A field's first doc paragraph, here and in the embedded types, is its
// entry in the configuration reference (docs/configuration.md), which `go
// generate ./...` writes from them (see internal/configref).
package config

//go:generate go run ../internal/configref/gen -o ../docs/configuration.md

import (
	"time"

	"github.com/tokenrelay/tokenrelay/admin"
	"github.com/tokenrelay/tokenrelay/errorpage"
	"github.com/tokenrelay/tokenrelay/identity"
	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/policy"
	"github.com/tokenrelay/tokenrelay/proxy"
	"github.com/tokenrelay/tokenrelay/secret"
	"github.com/tokenrelay/tokenrelay/session"
	"github.com/tokenrelay/tokenrelay/session/redisstore"
	"github.com/tokenrelay/tokenrelay/tracing"
)

// Config is the whole configuration file.
type Config struct {
	// Address of the traffic listener.
	Listen string `yaml:"listen"`
	// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`).
	// Loopback by default; in a pod set the pod's address (`:9090`; the
	// Helm chart does) so probes and Prometheus reach it, and keep it off
	// the public network.
	AdminListen string `yaml:"admin_listen"`
	// Where browsers reach tokenrelay (https; http only on loopback). The
	// redirect URI is `<public_url><auth_prefix>/callback`. Required.
	PublicURL string `yaml:"public_url"`
	// Path prefix of tokenrelay's own endpoints.
	AuthPrefix string `yaml:"auth_prefix"`
	// How long in-flight requests may finish after SIGTERM.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// How long `/readyz` fails before the listener stops accepting, so load
	// balancers drain first.
	//
	// Zero, the default, stops accepting at once.
	ShutdownDelay time.Duration `yaml:"shutdown_delay"`

	Log      LogConfig             `yaml:"log"`
	TLS      TLSConfig             `yaml:"tls"`
	Provider idp.Options           `yaml:"provider"`
	Session  SessionConfig         `yaml:"session"`
	Cookie   session.CookieOptions `yaml:"cookie"`
	Refresh  RefreshConfig         `yaml:"refresh"`
	CSRF     proxy.CSRFOptions     `yaml:"csrf"`
	Logout   proxy.LogoutOptions   `yaml:"logout"`
	Upstream proxy.UpstreamOptions `yaml:"upstream"`
	Routes   []proxy.Route         `yaml:"routes"`
	Admin    admin.Options         `yaml:"admin"`
	Tracing  tracing.Options       `yaml:"tracing"`
	// Policy is the default of every `auth: required` route's policy
	// (routes[n].policy extends or replaces it).
	Policy     policy.Options            `yaml:"policy"`
	Assertion  identity.AssertionOptions `yaml:"assertion"`
	ErrorPages errorpage.Options         `yaml:"error_pages"`

	ForwardAuth proxy.ForwardAuthOptions `yaml:"forward_auth"`
}

// LogConfig selects the log format and level.
type LogConfig struct {
	// `debug`, `info`, `warn` or `error`.
	Level string `yaml:"level"`
	// `json` or `text`.
	Format string `yaml:"format"`
}

// TLSConfig says whether tokenrelay terminates TLS itself.
type TLSConfig struct {
	// `none` (plain HTTP, e.g. behind an ingress), `files` or `acme`.
	Mode string `yaml:"mode"`
	// PEM certificate chain (`files`); reloaded when the file changes.
	CertFile string `yaml:"cert_file"`
	// PEM private key (`files`); reloaded with the certificate.
	KeyFile string     `yaml:"key_file"`
	ACME    ACMEConfig `yaml:"acme"`
	// Plain-HTTP listener in `acme` mode: answers HTTP-01 challenges,
	// redirects everything else to https.
	HTTPListen string `yaml:"http_listen"`
}

// ACMEConfig configures certmagic.
type ACMEConfig struct {
	// Names to obtain certificates for (`acme`).
	Domains []string `yaml:"domains"`
	// ACME account e-mail.
	Email string `yaml:"email"`
	// ACME directory URL.
	CA string `yaml:"ca"`
	// PEM roots to trust for a private ACME server.
	CARootFile string `yaml:"ca_root_file"`
	// Folder for certificates and account keys (a persistent volume).
	Storage string `yaml:"storage"`
	// ACME challenge types to answer: `http-01`, `tls-alpn-01`.
	//
	// http-01 is answered on tls.http_listen, tls-alpn-01 on listen.
	Challenges []string `yaml:"challenges"`
}

// SessionConfig chooses the store, the server secret and the session
// lifetimes.
type SessionConfig struct {
	// `memory` (one replica) or `redis` (many).
	Store string `yaml:"store"`
	// Server secret, ≥ 32 bytes (`tokenrelay gen-secret`). Required with
	// Redis; generated at start (with a warning) for memory.
	//
	// It seals session records together with each session's own key.
	Secret secret.String `yaml:"secret"`
	// File holding the server secret.
	SecretFile string `yaml:"secret_file"`
	// Earlier secrets that still open existing sessions during a rotation.
	//
	// New records are always sealed with Secret.
	PreviousSecrets []secret.String `yaml:"previous_secrets"`
	// Files holding earlier secrets.
	PreviousSecretFiles []string `yaml:"previous_secret_files"`

	session.LifetimeOptions `yaml:",inline"`

	Redis redisstore.Options `yaml:"redis"`
}

// RefreshConfig is the refresh section: the refresh engine's options and
// the retry of a request its upstream answered 401.
type RefreshConfig struct {
	session.RefreshOptions `yaml:",inline"`
	proxy.RetryOptions     `yaml:",inline"`
}
