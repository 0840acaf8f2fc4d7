// Package identity tells an upstream who the user is: claims copied into
// request headers (X-Forwarded-User, X-Forwarded-Email, ...), optionally
// the ID token, and a short signed JWT, the identity assertion, that an
// upstream can verify against tokenrelay's JWKS instead of trusting
// headers.
//
// Headers the upstream trusts must come from tokenrelay alone: Stripper
// removes every header of a name any route maps, whatever the route and
// whether or not there is a session, before Route.Apply sets this
// request's values.
//
// The assertion's signing keys come from a PEM file or are generated and
// kept, sealed under the server secret, in a KeyStore every replica shares,
// so any replica's assertion verifies against any replica's JWKS. Generated
// keys rotate: a new key is published ahead of its use and the previous
// one stays published until the last assertion it signed has expired.
package identity
