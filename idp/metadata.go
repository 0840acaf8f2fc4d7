package idp

import (
	"slices"
	"strings"

	"github.com/tokenrelay/tokenrelay/internal/problem"
)

// Metadata holds the fields of a provider's discovery document (OpenID
// Connect Discovery 1.0 §3, RFC 8414) that tokenrelay reads, with those of
// mutual TLS (RFC 8705), pushed authorization requests (RFC 9126) and DPoP
// (RFC 9449).
type Metadata struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	UserinfoEndpoint      string   `json:"userinfo_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	RevocationEndpoint    string   `json:"revocation_endpoint"`
	EndSessionEndpoint    string   `json:"end_session_endpoint"`
	IDTokenSigningAlgs    []string `json:"id_token_signing_alg_values_supported"`

	GrantTypes                   []string `json:"grant_types_supported"`
	TokenEndpointAuthMethods     []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgs []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	DPoPSigningAlgs              []string `json:"dpop_signing_alg_values_supported"`
	PAREndpoint                  string   `json:"pushed_authorization_request_endpoint"`
	RequirePAR                   bool     `json:"require_pushed_authorization_requests"`
	MTLSAliases                  struct {
		TokenEndpoint      string `json:"token_endpoint"`
		RevocationEndpoint string `json:"revocation_endpoint"`
		PAREndpoint        string `json:"pushed_authorization_request_endpoint"`
	} `json:"mtls_endpoint_aliases"`
}

// Grant types a route's token may need (RFC 6749 §4.4, RFC 8693).
const (
	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = grantTokenExchange
)

// SupportsGrant reports whether the provider may issue tokens by grant:
// it lists it in grant_types_supported, or lists nothing (the field is
// optional, so its absence says nothing).
func (m *Metadata) SupportsGrant(grant string) bool {
	return len(m.GrantTypes) == 0 || slices.Contains(m.GrantTypes, grant)
}

// tokenEndpoint is where token requests go: the mutual-TLS alias with
// tls_client_auth (RFC 8705 §5), else the token endpoint.
func (m *Metadata) tokenEndpoint(method string) string {
	if method == AuthMethodTLS && m.MTLSAliases.TokenEndpoint != "" {
		return m.MTLSAliases.TokenEndpoint
	}
	return m.TokenEndpoint
}

func (m *Metadata) revocationEndpoint(method string) string {
	if method == AuthMethodTLS && m.MTLSAliases.RevocationEndpoint != "" {
		return m.MTLSAliases.RevocationEndpoint
	}
	return m.RevocationEndpoint
}

// CheckMetadata reports, with paths relative to the options, where o
// conflicts with the provider's discovery document m: an assertion
// algorithm it does not accept, DPoP without ES256 among its DPoP
// algorithms, pushed authorization requests asked for without its endpoint
// or refused while it requires them; and, as a warning, a client
// authentication method it does not list. What m decides for options left
// to their defaults (a secret method the provider lists; the assertion
// algorithm) is no problem.
func (o Options) CheckMetadata(m *Metadata) []problem.Problem {
	o = o.WithDefaults()
	var ps problem.List
	// A warning, not an error: providers list their methods loosely (Auth0
	// and Entra ID serve public clients without listing none), and a
	// refused method shows at the first token request anyway.
	if methods := m.TokenEndpointAuthMethods; len(methods) > 0 && o.AuthMethod != AuthMethodNone && !slices.Contains(methods, o.authMethodFor(m)) {
		ps.Warn("auth_method", "%s is not among the client authentication methods the provider lists (token_endpoint_auth_methods_supported: %s)", o.AuthMethod, strings.Join(methods, ", "))
	}
	o.checkAssertionAlg(&ps, m)
	if o.DPoP && !slices.Contains(m.DPoPSigningAlgs, DPoPAlg) {
		ps.Add("dpop", "the provider does not support DPoP with %s (dpop_signing_alg_values_supported: %s)", DPoPAlg, orNone(m.DPoPSigningAlgs))
	}
	switch {
	case o.PAR == PARAlways && m.PAREndpoint == "":
		ps.Add("par", "always, but the provider has no pushed_authorization_request_endpoint")
	case o.PAR == PARNever && m.RequirePAR:
		ps.Add("par", "never, but the provider requires pushed authorization requests (require_pushed_authorization_requests)")
	case o.PAR == PARAuto && m.RequirePAR && m.PAREndpoint == "":
		ps.Add("par", "the provider requires pushed authorization requests but names no pushed_authorization_request_endpoint")
	}
	return ps
}

// checkAssertionAlg checks that the provider accepts an algorithm the
// private_key_jwt key can sign with.
func (o Options) checkAssertionAlg(ps *problem.List, m *Metadata) {
	if o.AuthMethod != AuthMethodPrivateKeyJWT || o.PrivateKey.IsZero() {
		return
	}
	key, err := parseSigningKey([]byte(o.PrivateKey.Reveal()))
	if err != nil {
		return // Validate reports it
	}
	if key.alg(m.TokenEndpointAuthSigningAlgs) == "" {
		ps.Add("private_key_file", "the key signs %s, none of which the provider accepts for client assertions (token_endpoint_auth_signing_alg_values_supported: %s)",
			strings.Join(key.algs, ", "), strings.Join(m.TokenEndpointAuthSigningAlgs, ", "))
	}
}

// authMethodFor is the client authentication to use with m: the
// configured one, or, when it was left to its default, the other secret
// method if the provider lists only that one.
func (o Options) authMethodFor(m *Metadata) string {
	methods := m.TokenEndpointAuthMethods
	if !o.AuthMethodDefaulted || len(methods) == 0 || slices.Contains(methods, o.AuthMethod) {
		return o.AuthMethod
	}
	for _, alt := range [][2]string{{AuthMethodBasic, AuthMethodPost}, {AuthMethodPost, AuthMethodBasic}} {
		if o.AuthMethod == alt[0] && slices.Contains(methods, alt[1]) {
			return alt[1]
		}
	}
	return o.AuthMethod
}

// parEndpoint is where authorization requests are pushed, "" when they
// are not: always when asked to, and with auto when the provider requires
// it. The mutual-TLS alias serves tls_client_auth.
func (o Options) parEndpoint(m *Metadata) string {
	push := o.PAR == PARAlways || (o.PAR == PARAuto && m.RequirePAR)
	switch {
	case !push:
		return ""
	case o.AuthMethod == AuthMethodTLS && m.MTLSAliases.PAREndpoint != "":
		return m.MTLSAliases.PAREndpoint
	}
	return m.PAREndpoint
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}
