// Package idp is everything tokenrelay says to the identity provider: OIDC
// discovery, the authorization request with PKCE, code exchange, refresh
// (RFC 6749 or a custom JSON/form template), revocation, RP-initiated logout,
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
//     misconfiguration).
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
}

// discoveryDoc holds the fields of an OpenID Provider Metadata document
// (OpenID Connect Discovery 1.0 §3) that tokenrelay uses.
type discoveryDoc struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	UserinfoEndpoint      string   `json:"userinfo_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	RevocationEndpoint    string   `json:"revocation_endpoint"`
	EndSessionEndpoint    string   `json:"end_session_endpoint"`
	IDTokenSigningAlgs    []string `json:"id_token_signing_alg_values_supported"`
}

// New builds a Provider. For oidc it fetches the discovery document and the
// JWKS before returning, and fails when either cannot be had (unreachable,
// not 200, not JSON, issuer mismatch, no usable signing algorithm): it does
// not retry, so the caller (cmd) retries with backoff and keeps /readyz
// failing meanwhile. Explicitly configured endpoints override discovered
// ones. ctx bounds these first calls only; the background key refresh lives
// until Close.
func New(ctx context.Context, opts Options) (*Provider, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
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
	if o.Type == TypeOIDC {
		doc, err := p.discover(ctx)
		if err != nil {
			return nil, fmt.Errorf("idp: discovery: %w", err)
		}
		p.authURL = cmp.Or(p.authURL, doc.AuthorizationEndpoint)
		p.tokenURL = cmp.Or(p.tokenURL, doc.TokenEndpoint)
		p.revocationURL = cmp.Or(p.revocationURL, doc.RevocationEndpoint)
		p.endSessionURL = cmp.Or(p.endSessionURL, doc.EndSessionEndpoint)
		p.userinfoURL = cmp.Or(p.userinfoURL, doc.UserinfoEndpoint)
		p.jwksURL = cmp.Or(p.jwksURL, doc.JWKSURI)
		if len(doc.IDTokenSigningAlgs) > 0 {
			p.algs = nil
			for _, a := range asymmetricAlgs {
				if slices.Contains(doc.IDTokenSigningAlgs, a) {
					p.algs = append(p.algs, a)
				}
			}
			if len(p.algs) == 0 {
				return nil, fmt.Errorf("idp: discovery: no asymmetric ID token signing algorithm among %q", doc.IDTokenSigningAlgs)
			}
		}
		if p.jwksURL == "" {
			return nil, errors.New("idp: discovery: no jwks_uri")
		}
	}
	if p.tokenURL == "" {
		return nil, fmt.Errorf("idp: %s provider has no token endpoint", o.Type)
	}
	if o.Type != TypeCustom && p.authURL == "" {
		return nil, fmt.Errorf("idp: %s provider has no authorization endpoint", o.Type)
	}
	for name, u := range map[string]string{
		"authorization": p.authURL, "token": p.tokenURL, "revocation": p.revocationURL,
		"end_session": p.endSessionURL, "userinfo": p.userinfoURL, "jwks": p.jwksURL,
	} {
		if err := checkEndpoint(u); err != nil {
			return nil, fmt.Errorf("idp: %s endpoint: %w", name, err)
		}
	}
	if p.jwksURL != "" {
		// jwkset takes one context for the first fetch and for the
		// refresh goroutine. Give it one that outlives ctx, but cancel it
		// if ctx ends while the first fetch runs.
		life, stop := context.WithCancel(context.WithoutCancel(ctx))
		stopOnCancel := context.AfterFunc(ctx, stop)
		keys, err := p.newKeySet(life)
		if !stopOnCancel() && err == nil {
			err = context.Cause(ctx)
		}
		if err != nil {
			stop()
			return nil, fmt.Errorf("idp: jwks: %w", err)
		}
		p.keys, p.stop = keys, stop
	}
	return p, nil
}

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

func (p *Provider) discover(ctx context.Context) (*discoveryDoc, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	u := strings.TrimSuffix(p.opts.Issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := readCapped(resp.Body, p.opts.MaxResponseBytes)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d", u, resp.StatusCode)
	}
	var doc discoveryDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	if doc.Issuer != p.opts.Issuer {
		return nil, fmt.Errorf("issuer %q in the document does not match the configured issuer %q", doc.Issuer, p.opts.Issuer)
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
