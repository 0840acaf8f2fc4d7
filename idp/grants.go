package idp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/tokenrelay/tokenrelay/secret"
)

// The grants behind per-route tokens: a refresh for a route's resource
// (RFC 8707), tokenrelay's own client-credentials token (RFC 6749 §4.4),
// and token exchange of the user's token for one of the route's audience
// (RFC 8693). All of them go through postToken: client authentication,
// the DPoP proof and the provider's DPoP nonce.

// Target names the access token a route needs: the RFC 8707 resource it
// is for and the scopes it carries. The zero Target is the login's own
// token, of whatever audience the provider gives it. Make one with
// NewTarget, so that equal targets compare equal.
type Target struct {
	// Resource is an absolute URI naming the API (RFC 8707 §2); empty for
	// none.
	Resource string
	// Scope is the space-separated scopes, sorted, without duplicates;
	// empty for the grant's own.
	Scope string
}

// NewTarget returns the target of resource and scopes, its scopes sorted
// and without duplicates.
func NewTarget(resource string, scopes []string) Target {
	s := slices.Clone(scopes)
	slices.Sort(s)
	return Target{Resource: resource, Scope: strings.Join(slices.Compact(s), " ")}
}

// IsZero reports whether t is the login's own token.
func (t Target) IsZero() bool { return t.Resource == "" && t.Scope == "" }

// Key names t in a session record: "" for the zero target, else the
// resource and the scope joined by a space (neither an absolute URI nor a
// scope token holds one).
func (t Target) Key() string {
	if t.IsZero() {
		return ""
	}
	return t.Resource + " " + t.Scope
}

// String is the target as logs show it.
func (t Target) String() string {
	if t.IsZero() {
		return "the login's token"
	}
	return fmt.Sprintf("resource %q scope %q", t.Resource, t.Scope)
}

// setOn puts t's resource and scope into a token request.
func (t Target) setOn(form url.Values) {
	if t.Resource != "" {
		form.Set("resource", t.Resource)
	}
	if t.Scope != "" {
		form.Set("scope", t.Scope)
	}
}

// RefreshRequest is a refresh grant.
type RefreshRequest struct {
	RefreshToken secret.String
	// Target is the token asked for; zero for the login's own.
	Target Target
	// DPoP proves the request and binds the new token; nil for Bearer.
	DPoP *DPoPKey
}

// ExchangeRequest is a token exchange (RFC 8693): the user's access token
// for one of Target.
type ExchangeRequest struct {
	SubjectToken secret.String
	Target       Target
	// DPoP proves the request and binds the new token; nil for Bearer.
	DPoP *DPoPKey
}

// Token exchange names (RFC 8693 §2.1, §3).
const (
	grantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// ClientCredentials obtains an access token of tokenrelay's own client
// (RFC 6749 §4.4) for target, bound to key when it is set (DPoP). The
// client must be confidential. Errors are *TokenError.
func (p *Provider) ClientCredentials(ctx context.Context, target Target, key *DPoPKey) (*Token, error) {
	if !p.opts.Confidential() {
		return nil, errors.New("idp: client credentials: the client is public (provider.auth_method none)")
	}
	ctx, cancel := p.callContext(ctx)
	defer cancel()
	form := p.tokenParams()
	form.Set("grant_type", "client_credentials")
	target.setOn(form)
	return p.postToken(ctx, form, key, true)
}

// ExchangeToken trades the user's access token for one of the request's
// target (RFC 8693 token exchange: subject_token_type and
// requested_token_type access_token), authenticating the client. Errors
// are *TokenError; invalid_grant here means the subject token was refused,
// not that a refresh token died.
func (p *Provider) ExchangeToken(ctx context.Context, r ExchangeRequest) (*Token, error) {
	if p.opts.Type == TypeCustom {
		return nil, errors.New("idp: token exchange: a custom provider has no RFC 8693 token endpoint")
	}
	ctx, cancel := p.callContext(ctx)
	defer cancel()
	form := p.tokenParams()
	form.Set("grant_type", grantTokenExchange)
	form.Set("subject_token", r.SubjectToken.Reveal())
	form.Set("subject_token_type", tokenTypeAccessToken)
	form.Set("requested_token_type", tokenTypeAccessToken)
	r.Target.setOn(form)
	return p.postToken(ctx, form, r.DPoP, true)
}

// callContext bounds a call by ctx's deadline, or Timeout when it has
// none.
func (p *Provider) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, p.opts.Timeout)
}

// postToken sends form to the token endpoint with client authentication
// and, when key is set, a DPoP proof. A provider that answers
// use_dpop_nonce with a nonce other than the one sent gets the request
// once more with it (a nonce error spends nothing: the grant was not
// looked at). With mustBind, a token not bound to key is an error; a
// refresh takes any answer, since its refresh token may be the only live
// one.
func (p *Provider) postToken(ctx context.Context, form url.Values, key *DPoPKey, mustBind bool) (*Token, error) {
	for retried := false; ; retried = true {
		// Built anew each time: a private_key_jwt assertion is single-use.
		req, err := p.formRequest(ctx, p.tokenURL, maps.Clone(form))
		if err != nil {
			return nil, err
		}
		sentNonce := p.nonce.get()
		if key != nil {
			proof, err := key.Proof(http.MethodPost, p.tokenURL, "", sentNonce, p.opts.Now())
			if err != nil {
				return nil, err
			}
			req.Header.Set("DPoP", proof)
		}
		tok, header, err := p.send(req)
		p.nonce.remember(header)
		if err != nil && key != nil && !retried && useDPoPNonce(err) && p.nonce.get() != sentNonce {
			continue
		}
		if err != nil {
			return nil, err
		}
		if key != nil && mustBind && !strings.EqualFold(tok.TokenType, dpopScheme) {
			return nil, &TokenError{Status: http.StatusOK, Code: "dpop_not_bound", Sent: true, Err: errNotBound}
		}
		return tok, nil
	}
}
