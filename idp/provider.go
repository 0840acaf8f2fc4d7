// Package idp is everything tokenrelay says to the identity provider: OIDC
// discovery, the authorization request with PKCE (pushed, RFC 9126, when
// asked), code exchange, refresh (RFC 6749, for a resource per RFC 8707, or
// a custom JSON/form template), client credentials, token exchange (RFC
// 8693), client authentication (secrets, private_key_jwt, mutual TLS), DPoP
// proofs (RFC 9449), revocation, RP-initiated logout,
// ID-token and back-channel logout-token verification against the provider's
// JWKS, and reading token responses (including captured login answers).
//
// A Provider is built once by New and is safe for concurrent use.
//
// Decisions worth knowing:
//
//   - New does the network work up front (discovery, first JWKS fetch) and
//     fails rather than retrying; cmd retries with backoff while /readyz
//     fails. After New, keys refresh in the background and on unknown kids.
//   - The client authentication method is used exactly as configured and
//     a refused request is never retried with another (x/oauth2's
//     auto-detection does, which doubles failed calls and hides a
//     misconfiguration). Left out, it follows the credentials configured,
//     and discovery picks between the two secret methods; any other
//     conflict with the discovery document (a method, an assertion or DPoP
//     algorithm the provider does not list, pushed authorization requests
//     it requires) makes New fail with the option's key path.
//   - private_key_jwt assertions are new for every request (a jti is
//     single-use), for the issuer, kid the key's RFC 7638 thumbprint.
//   - DPoP proofs carry the provider's last nonce; a use_dpop_nonce answer
//     is retried once, which is safe: the grant was not looked at.
//   - Authorization requests are pushed (RFC 9126) when the provider
//     requires it or the options say always, never merely because it can:
//     pushing makes each login start a call to the provider.
//   - ID and logout tokens must use an asymmetric algorithm announced by
//     discovery (RS256 when it announces none); alg none and HS* never
//     pass, whatever the provider claims to support.
//   - Lifetimes come from expires_in, then the access token's JWT exp read
//     without verification (it only schedules the next refresh), then
//     Options.AccessTokenLifetime.
//   - A custom refresh request is sent exactly as its template says: no
//     client authentication and no TokenParams are added.
//   - The logout-token jti replay cache is in memory and per replica.
//   - Every error that can reach a log is free of tokens, codes and
//     secrets; request URLs are dropped from transport errors because a
//     custom GET refresh request carries the refresh token in its query.
package idp

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/MicahParks/keyfunc/v3"

	"github.com/tokenrelay/tokenrelay/internal/problem"
)

// Provider talks to one identity provider. It is safe for concurrent use.
// Close stops its background key refresh.
type Provider struct {
	opts Options

	authURL       string
	tokenURL      string
	revocationURL string
	endSessionURL string
	userinfoURL   string
	jwksURL       string

	// algs are the JWS algorithms accepted for ID and logout tokens:
	// asymmetric ones the provider says it uses.
	algs []string
	// keys is nil when the provider has no jwks_uri (plain OAuth2).
	keys   keyfunc.Keyfunc
	stop   context.CancelFunc
	replay *replayCache
	closed atomic.Bool

	// signing and assertionAlg sign private_key_jwt client assertions.
	signing      *signingKey
	assertionAlg string
	// parURL is where authorization requests are pushed; "" when they
	// are not (RFC 9126).
	parURL string
	// nonce is the provider's last DPoP nonce.
	nonce nonceCache
	// meta is the discovery document; nil without discovery.
	meta *Metadata
}

// New builds a Provider. For oidc it fetches the discovery document and the
// JWKS before returning, and fails when either cannot be had (unreachable,
// not 200, not JSON, issuer mismatch, no usable signing algorithm): it does
// not retry, so the caller (cmd) retries with backoff and keeps /readyz
// failing meanwhile. Explicitly configured endpoints override discovered
// ones. ctx bounds these first calls only; the background key refresh lives
// until Close.
func New(ctx context.Context, opts Options) (*Provider, error) {
	if err := problem.List(opts.Validate()).Err(); err != nil {
		return nil, fmt.Errorf("idp: %w", err)
	}
	o := opts.withDependencies()
	p := &Provider{
		opts:          o,
		authURL:       o.AuthorizationEndpoint,
		tokenURL:      o.TokenEndpoint,
		revocationURL: o.RevocationEndpoint,
		endSessionURL: o.EndSessionEndpoint,
		userinfoURL:   o.UserinfoEndpoint,
		jwksURL:       o.JWKSURI,
		algs:          []string{"RS256"},
		replay:        newReplayCache(o.ReplayCacheSize),
	}
	if o.AuthMethod == AuthMethodPrivateKeyJWT {
		key, err := parseSigningKey([]byte(o.PrivateKey.Reveal()))
		if err != nil {
			return nil, fmt.Errorf("idp: provider.private_key_file: %w", err)
		}
		p.signing, p.assertionAlg = key, key.alg(nil)
	}
	if o.Type == TypeOIDC {
		if err := p.applyDiscovery(ctx); err != nil {
			return nil, err
		}
	}
	if err := p.checkEndpoints(); err != nil {
		return nil, err
	}
	if p.jwksURL != "" {
		if err := p.startKeys(ctx); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// applyDiscovery reads the discovery document: the endpoints not
// configured explicitly, the ID-token signing algorithms, and what the
// metadata decides (client authentication, pushed authorization
// requests); a conflict between the options and the metadata fails.
func (p *Provider) applyDiscovery(ctx context.Context) error {
	doc, err := discover(ctx, p.opts)
	if err != nil {
		return fmt.Errorf("idp: discovery: %w", err)
	}
	if err := problem.List(p.opts.CheckMetadata(doc)).Err(); err != nil {
		return fmt.Errorf("idp: the provider's discovery document: %w", err)
	}
	p.meta = doc
	p.opts.AuthMethod = p.opts.authMethodFor(doc)
	p.authURL = cmp.Or(p.authURL, doc.AuthorizationEndpoint)
	p.tokenURL = cmp.Or(p.tokenURL, doc.tokenEndpoint(p.opts.AuthMethod))
	p.revocationURL = cmp.Or(p.revocationURL, doc.revocationEndpoint(p.opts.AuthMethod))
	p.endSessionURL = cmp.Or(p.endSessionURL, doc.EndSessionEndpoint)
	p.userinfoURL = cmp.Or(p.userinfoURL, doc.UserinfoEndpoint)
	p.jwksURL = cmp.Or(p.jwksURL, doc.JWKSURI)
	if p.signing != nil {
		p.assertionAlg = p.signing.alg(doc.TokenEndpointAuthSigningAlgs)
	}
	p.parURL = p.opts.parEndpoint(doc)
	if len(doc.IDTokenSigningAlgs) > 0 {
		p.algs = nil
		for _, a := range asymmetricAlgs {
			if slices.Contains(doc.IDTokenSigningAlgs, a) {
				p.algs = append(p.algs, a)
			}
		}
		if len(p.algs) == 0 {
			return fmt.Errorf("idp: discovery: no asymmetric ID token signing algorithm among %q", doc.IDTokenSigningAlgs)
		}
	}
	if p.jwksURL == "" {
		return errors.New("idp: discovery: no jwks_uri")
	}
	return nil
}

// checkEndpoints checks the endpoints, configured or discovered.
func (p *Provider) checkEndpoints() error {
	if p.tokenURL == "" {
		return fmt.Errorf("idp: %s provider has no token endpoint", p.opts.Type)
	}
	if p.opts.Type != TypeCustom && p.authURL == "" {
		return fmt.Errorf("idp: %s provider has no authorization endpoint", p.opts.Type)
	}
	for name, u := range map[string]string{
		"authorization": p.authURL, "token": p.tokenURL, "revocation": p.revocationURL,
		"end_session": p.endSessionURL, "userinfo": p.userinfoURL, "jwks": p.jwksURL,
	} {
		if err := checkEndpoint(u); err != nil {
			return fmt.Errorf("idp: %s endpoint: %w", name, err)
		}
	}
	return nil
}

// startKeys fetches the key set and starts its background refresh.
func (p *Provider) startKeys(ctx context.Context) error {
	// jwkset takes one context for the first fetch and for the refresh
	// goroutine. Give it one that outlives ctx, but cancel it if ctx ends
	// while the first fetch runs.
	life, stop := context.WithCancel(context.WithoutCancel(ctx))
	stopOnCancel := context.AfterFunc(ctx, stop)
	keys, err := p.newKeySet(life)
	if !stopOnCancel() && err == nil {
		err = context.Cause(ctx)
	}
	if err != nil {
		stop()
		return fmt.Errorf("idp: jwks: %w", err)
	}
	p.keys, p.stop = keys, stop
	return nil
}

// Metadata returns the provider's discovery document, nil for a provider
// without discovery. It must not be changed.
func (p *Provider) Metadata() *Metadata { return p.meta }

// Close stops the background JWKS refresh. The Provider must not verify
// tokens afterwards; Ready reports it closed.
func (p *Provider) Close() {
	if p.closed.Swap(true) {
		return
	}
	if p.stop != nil {
		p.stop()
	}
}

// Ready reports whether the provider can serve logins: metadata loaded by
// New and, when the provider publishes keys, at least one signing key in
// the cache.
func (p *Provider) Ready(ctx context.Context) error {
	if p.closed.Load() {
		return errors.New("idp: provider closed")
	}
	if p.keys == nil {
		return nil
	}
	all, err := p.keys.Storage().KeyReadAll(ctx)
	if err != nil {
		return fmt.Errorf("idp: ready: %w", err)
	}
	if len(all) == 0 {
		return errors.New("idp: ready: no signing keys in the JWKS")
	}
	return nil
}

// Discover reads the provider's discovery document with opts' HTTP
// client and timeout, for a check of the options against it
// (Options.CheckMetadata) without building a Provider.
func Discover(ctx context.Context, opts Options) (*Metadata, error) {
	m, err := discover(ctx, opts.withDependencies())
	if err != nil {
		return nil, fmt.Errorf("idp: discovery: %w", err)
	}
	return m, nil
}

// discover reads the discovery document; o has its dependencies.
func discover(ctx context.Context, o Options) (*Metadata, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	u := strings.TrimSuffix(o.Issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := o.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := readCapped(resp.Body, o.MaxResponseBytes)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d", u, resp.StatusCode)
	}
	var doc Metadata
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	if doc.Issuer != o.Issuer {
		return nil, fmt.Errorf("issuer %q in the document does not match the configured issuer %q", doc.Issuer, o.Issuer)
	}
	return &doc, nil
}

// errTooLarge is returned by readCapped for a body over the limit.
var errTooLarge = errors.New("response body too large")

// readCapped reads r to the end, or fails with errTooLarge after max bytes.
func readCapped(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w (over %d bytes)", errTooLarge, max)
	}
	return b, nil
}

// checkEndpoint accepts "" (not configured) and absolute http(s) URLs.
func checkEndpoint(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	return nil
}

// Endpoints are the provider's endpoints in use, configured or
// discovered; "" for one it does not have.
type Endpoints struct {
	Authorization, Token, Revocation, EndSession, Userinfo, JWKS string
}

// Endpoints returns the endpoints the provider uses (check-config --online
// reports them).
func (p *Provider) Endpoints() Endpoints {
	return Endpoints{
		Authorization: p.authURL, Token: p.tokenURL, Revocation: p.revocationURL,
		EndSession: p.endSessionURL, Userinfo: p.userinfoURL, JWKS: p.jwksURL,
	}
}

// KeyCount returns how many keys the cached JWKS holds; 0 without a
// jwks_uri.
func (p *Provider) KeyCount(ctx context.Context) (int, error) {
	if p.keys == nil {
		return 0, nil
	}
	all, err := p.keys.Storage().KeyReadAll(ctx)
	return len(all), err
}
