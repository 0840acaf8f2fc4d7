package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// accessClaims are the RFC 9068 claims the API reads from an access token.
type accessClaims struct {
	Scope string `json:"scope"`
	jwt.RegisteredClaims
}

// verifier checks access tokens: signature against the provider's JWKS,
// typ at+jwt, issuer, audience, exp and iat. It is safe for concurrent use.
type verifier struct {
	keys   keyfunc.Keyfunc
	parser *jwt.Parser
}

// newVerifier reads the provider's discovery document (retrying while the
// provider starts, until ctx ends or 30 seconds pass) and starts keeping its
// JWKS, refreshed when a token names an unknown key.
func newVerifier(ctx context.Context, client *http.Client, logger *slog.Logger, issuer, audience string) (*verifier, error) {
	jwksURI, err := discoverJWKS(ctx, client, logger, issuer)
	if err != nil {
		return nil, err
	}
	keys, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{jwksURI}, keyfunc.Override{
		Client: client,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				logger.ErrorContext(ctx, "refreshing the JWKS failed", "url", u, "error", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return newVerifierWithKeys(keys, issuer, audience, nil), nil
}

// newVerifierWithKeys builds a verifier over a key set; now nil means
// time.Now.
func newVerifierWithKeys(keys keyfunc.Keyfunc, issuer, audience string, now func() time.Time) *verifier {
	opts := []jwt.ParserOption{
		// RSA and EC families only: never "none", never HMAC (a public key
		// used as an HMAC secret is the classic algorithm confusion).
		jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if audience != "" {
		opts = append(opts, jwt.WithAudience(audience))
	}
	if now != nil {
		opts = append(opts, jwt.WithTimeFunc(now))
	}
	return &verifier{keys: keys, parser: jwt.NewParser(opts...)}
}

func discoverJWKS(ctx context.Context, client *http.Client, logger *slog.Logger, issuer string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	wait := 100 * time.Millisecond
	for {
		jwksURI, err := fetchJWKSURI(ctx, client, u)
		if err == nil {
			return jwksURI, nil
		}
		logger.Warn("waiting for the provider", "url", u, "error", err)
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("discovery %s: %w", u, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func fetchJWKSURI(ctx context.Context, client *http.Client, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return "", fmt.Errorf("decode: %w", err)
	}
	if doc.JWKSURI == "" {
		return "", errors.New("no jwks_uri")
	}
	return doc.JWKSURI, nil
}

// Verify parses and validates a raw access token.
func (v *verifier) Verify(ctx context.Context, raw string) (*accessClaims, error) {
	var c accessClaims
	tok, err := v.parser.ParseWithClaims(raw, &c, v.keys.KeyfuncCtx(ctx))
	if err != nil {
		return nil, err
	}
	// RFC 9068 §4: an access token says so in its typ header, which keeps an
	// ID token from being accepted as an access token.
	typ, _ := tok.Header["typ"].(string)
	if t := strings.ToLower(typ); t != "at+jwt" && t != "application/at+jwt" {
		return nil, fmt.Errorf("typ %q is not at+jwt", typ)
	}
	if c.ID == "" {
		return nil, errors.New("no jti")
	}
	return &c, nil
}
