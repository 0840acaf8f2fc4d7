package idp

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Identify turns a fresh token response into the user's identity.
//
//   - oidc: the ID token is verified (see verifyIDToken) and the identity is
//     read from it.
//   - oauth2: the userinfo endpoint when one is configured (sub, or id as
//     GitHub sends it); else the sub of a JWT access token, read unverified
//     (it came straight from the token endpoint over TLS); else an empty
//     subject.
//   - custom: the Subject mapping of the token response, else the sub of a
//     JWT access token, read unverified.
//
// Claims holds the configured claims found in the source.
func (p *Provider) Identify(ctx context.Context, tok *Token, nonce string) (*Identity, error) {
	if tok == nil {
		return nil, errors.New("idp: identify: no token")
	}
	switch p.opts.Type {
	case TypeOIDC:
		id, err := p.verifyIDToken(ctx, tok.IDToken, nonce)
		if err != nil {
			return nil, fmt.Errorf("idp: identify: %w", err)
		}
		return id, nil
	case TypeOAuth2:
		if p.userinfoURL != "" {
			info, err := p.userinfo(ctx, tok.AccessToken)
			if err != nil {
				return nil, fmt.Errorf("idp: identify: %w", err)
			}
			sub, err := subjectAt(info, "sub")
			if err == nil && sub == "" {
				sub, err = subjectAt(info, "id")
			}
			if err != nil {
				return nil, fmt.Errorf("idp: identify: userinfo: %w", err)
			}
			return &Identity{Issuer: p.opts.Issuer, Subject: sub, Claims: p.pickClaims(info)}, nil
		}
	}
	return p.identityFromToken(tok), nil
}

// identityFromToken is the identity of a token without an ID token: the
// Subject mapping, else the access token's JWT sub (unverified).
func (p *Provider) identityFromToken(tok *Token) *Identity {
	id := &Identity{Issuer: p.opts.Issuer, Subject: tok.subject}
	src := map[string]any{}
	if claims := jwtClaims(tok.AccessToken.Reveal()); claims != nil {
		for k, v := range claims {
			src[k] = v
		}
		if id.Subject == "" {
			id.Subject, _ = claims["sub"].(string)
		}
	}
	for k, v := range tok.profile {
		src[k] = v
	}
	if id.Subject != "" {
		src["sub"] = id.Subject
	}
	id.Claims = p.pickClaims(src)
	return id
}

// pickClaims copies the configured claims present in src.
func (p *Provider) pickClaims(src map[string]any) map[string]any {
	out := make(map[string]any, len(p.opts.Claims))
	for _, name := range p.opts.Claims {
		if v, ok := src[name]; ok && v != nil {
			out[name] = v
		}
	}
	return out
}

// verifyIDToken validates an ID token per OIDC Core §3.1.3.7: signature
// from the JWKS with an asymmetric algorithm the provider announced (alg
// none and HS* are refused, so a token MACed with the public key cannot
// pass: algorithm confusion); iss equal to the issuer; aud containing the
// client id and, with several audiences, azp equal to it (azp, when
// present, must always equal it); exp required and in the future, iat
// required and not in the future, nbf not in the future, each with
// ClockSkew; nonce equal to the one sent; sub present.
func (p *Provider) verifyIDToken(ctx context.Context, raw secret.String, nonce string) (*Identity, error) {
	if raw.IsZero() {
		return nil, errors.New("no id_token in the token response")
	}
	claims, _, err := p.parseSigned(ctx, raw.Reveal(), jwt.WithExpirationRequired())
	if err != nil {
		return nil, fmt.Errorf("id token: %w", err)
	}
	if _, ok := claims["iat"]; !ok {
		return nil, errors.New("id token: no iat")
	}
	aud, _ := claims.GetAudience()
	azp, ok := claims["azp"]
	switch {
	case ok && azp != p.opts.ClientID:
		return nil, errors.New("id token: azp is not the client id")
	case !ok && len(aud) > 1:
		return nil, errors.New("id token: several audiences and no azp")
	}
	got, _ := claims["nonce"].(string)
	if subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
		return nil, errors.New("id token: nonce does not match")
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return nil, errors.New("id token: no sub")
	}
	sid, _ := claims["sid"].(string)
	id := &Identity{Issuer: p.opts.Issuer, Subject: sub, SID: sid, Claims: p.pickClaims(claims)}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.Expiry = exp.Time
	}
	return id, nil
}

// parseSigned verifies a JWT's signature against the JWKS with the
// allowed algorithms and checks iss (exact), aud (contains the client id),
// exp/nbf when present and iat not in the future, with ClockSkew. extra
// adds parser options.
func (p *Provider) parseSigned(ctx context.Context, raw string, extra ...jwt.ParserOption) (jwt.MapClaims, *jwt.Token, error) {
	if p.keys == nil {
		return nil, nil, ErrNotSupported
	}
	if p.closed.Load() {
		return nil, nil, errors.New("provider closed")
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	opts := append([]jwt.ParserOption{
		jwt.WithValidMethods(p.algs),
		jwt.WithIssuer(p.opts.Issuer),
		jwt.WithAudience(p.opts.ClientID),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(p.opts.clockSkew()),
		jwt.WithTimeFunc(p.opts.Now),
	}, extra...)
	claims := jwt.MapClaims{}
	tok, err := jwt.NewParser(opts...).ParseWithClaims(raw, claims, p.keys.KeyfuncCtx(ctx))
	if err != nil {
		return nil, nil, err
	}
	return claims, tok, nil
}

// userinfo asks the userinfo endpoint (OIDC Core §5.3) with the access
// token. Only JSON answers are understood.
func (p *Provider) userinfo(ctx context.Context, access secret.String) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.userinfoURL, nil)
	if err != nil {
		return nil, fmt.Errorf("userinfo: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+access.Reveal())
	req.Header.Set("Accept", "application/json")
	resp, err := p.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("userinfo: %w", sanitize(err))
	}
	defer resp.Body.Close()
	b, err := readCapped(resp.Body, p.opts.MaxResponseBytes)
	if err != nil {
		return nil, fmt.Errorf("userinfo: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("userinfo: status %d", resp.StatusCode)
	}
	obj, err := decodeObject(b)
	if err != nil {
		return nil, fmt.Errorf("userinfo: %w", err)
	}
	return obj, nil
}
