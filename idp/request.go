package idp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/tokenrelay/tokenrelay/secret"
)

// Exchange trades an authorization code for tokens (RFC 6749 §4.1.3 with the
// RFC 7636 code_verifier), authenticating the client with the configured
// method. With DPoP it makes the session's key (Token.DPoPKey) and proves
// the request with it; the tokens must come back bound to it. Errors from
// the token endpoint are *TokenError.
func (p *Provider) Exchange(ctx context.Context, code, verifier string) (*Token, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	form := p.tokenParams()
	form.Set("grant_type", "authorization_code")
	form.Set("code", code)
	if p.opts.RedirectURL != "" {
		form.Set("redirect_uri", p.opts.RedirectURL)
	}
	form.Set("code_verifier", verifier)
	var key *DPoPKey
	if p.opts.DPoP {
		var err error
		if key, err = NewDPoPKey(); err != nil {
			return nil, err
		}
	}
	tok, err := p.postToken(ctx, form, key, true)
	if err != nil {
		return nil, err
	}
	tok.DPoPKey = key
	return tok, nil
}

// Refresh trades a refresh token for a fresh access token of the login's
// own audience, without DPoP: RefreshTarget with only the refresh token.
func (p *Provider) Refresh(ctx context.Context, refreshToken secret.String) (*Token, error) {
	return p.RefreshTarget(ctx, RefreshRequest{RefreshToken: refreshToken})
}

// RefreshTarget trades a refresh token for a fresh access token. oidc and
// oauth2 providers get RFC 6749 §6 (form POST, grant_type=refresh_token,
// TokenParams, client authentication), with the target's resource (RFC
// 8707) and scope when it names them, proved with the DPoP key when there
// is one; custom providers get their request template. The answer goes
// through the response mapping. A response without a refresh token leaves
// Token.RefreshToken empty: the caller keeps the one it has.
//
// Errors are *TokenError: Dead (errors.Is(err, ErrInvalidGrant)) means the
// refresh token is spent or revoked; Temporary means try again later. The
// call is bounded by ctx's deadline, or by Timeout when ctx has none.
func (p *Provider) RefreshTarget(ctx context.Context, r RefreshRequest) (*Token, error) {
	if r.RefreshToken.IsZero() {
		return nil, &TokenError{Dead: true, Err: errors.New("no refresh token")}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.opts.Timeout)
		defer cancel()
	}
	if p.opts.Type == TypeCustom {
		if !r.Target.IsZero() || r.DPoP != nil {
			return nil, errors.New("idp: refresh: a custom provider's refresh request has no resource, scope or DPoP")
		}
		req, err := p.customRefreshRequest(ctx, r.RefreshToken)
		if err != nil {
			return nil, fmt.Errorf("idp: refresh: %w", err)
		}
		return p.tokenCall(req)
	}
	form := p.tokenParams()
	form.Set("grant_type", "refresh_token")
	form.Set("refresh_token", r.RefreshToken.Reveal())
	r.Target.setOn(form)
	// A refresh answer is taken whatever its token type: its refresh
	// token may be the only live one, and is saved; a token the provider
	// did not bind is then refused by the upstream, not lost.
	return p.postToken(ctx, form, r.DPoP, false)
}

// Revoke revokes a refresh token (RFC 7009 §2.1: form POST token,
// token_type_hint=refresh_token, client authentication). It returns
// ErrNotSupported when the provider has no revocation endpoint, nil for an
// empty token (nothing to revoke), and a *TokenError for a non-2xx answer.
func (p *Provider) Revoke(ctx context.Context, refreshToken secret.String) error {
	if p.revocationURL == "" {
		return ErrNotSupported
	}
	if refreshToken.IsZero() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	form := url.Values{}
	form.Set("token", refreshToken.Reveal())
	form.Set("token_type_hint", "refresh_token")
	req, err := p.formRequest(ctx, p.revocationURL, form)
	if err != nil {
		return fmt.Errorf("idp: revoke: %w", err)
	}
	resp, err := p.opts.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("idp: revoke: %w", &TokenError{Err: sanitize(err)})
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, p.opts.MaxResponseBytes))
		return nil
	}
	te := &TokenError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), p.opts.Now())}
	if b, err := readCapped(resp.Body, p.opts.MaxResponseBytes); err == nil {
		if obj, err := decodeObject(b); err == nil {
			te.Code, _ = obj["error"].(string)
			te.Description, _ = obj["error_description"].(string)
		}
	}
	return fmt.Errorf("idp: revoke: %w", te)
}

// tokenParams starts a token request body with the configured extra
// parameters; the caller then sets its own, which win.
func (p *Provider) tokenParams() url.Values {
	form := url.Values{}
	for k, v := range p.opts.TokenParams {
		form.Set(k, v)
	}
	return form
}

// customRefreshRequest fills a custom provider's request template.
func (p *Provider) customRefreshRequest(ctx context.Context, refreshToken secret.String) (*http.Request, error) {
	t := p.opts.Custom.RefreshRequest
	fill := func(v string) string {
		return strings.ReplaceAll(v, RefreshTokenPlaceholder, refreshToken.Reveal())
	}
	endpoint := p.tokenURL
	var body io.Reader
	var contentType string
	switch {
	case t.Method == http.MethodGet || t.Method == http.MethodHead:
		// No body: the fields go into the query.
		if len(t.Body) > 0 {
			u, err := url.Parse(endpoint)
			if err != nil {
				return nil, err
			}
			q := u.Query()
			for k, v := range t.Body {
				q.Set(k, fill(v))
			}
			u.RawQuery = q.Encode()
			endpoint = u.String()
		}
	case t.Format == FormatForm:
		form := url.Values{}
		for k, v := range t.Body {
			form.Set(k, fill(v))
		}
		body, contentType = strings.NewReader(form.Encode()), "application/x-www-form-urlencoded"
	default:
		fields := make(map[string]string, len(t.Body))
		for k, v := range t.Body {
			fields[k] = fill(v)
		}
		b, err := json.Marshal(fields)
		if err != nil {
			return nil, err
		}
		body, contentType = bytes.NewReader(b), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, t.Method, endpoint, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range t.Headers {
		req.Header.Set(k, fill(v))
	}
	for k, v := range t.SecretHeaders {
		req.Header.Set(k, fill(v.Reveal()))
	}
	return req, nil
}

// tokenCall sends a token request and parses the answer.
func (p *Provider) tokenCall(req *http.Request) (*Token, error) {
	tok, _, err := p.send(req)
	return tok, err
}

// send sends a token request and parses the answer, whose header it
// returns too (nil when none came).
func (p *Provider) send(req *http.Request) (*Token, http.Header, error) {
	var w wireTrace
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), w.trace()))
	start := p.opts.Now()
	resp, err := p.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, nil, &TokenError{Err: sanitize(err), Sent: w.sent()}
	}
	defer resp.Body.Close()
	tok, err := p.parseTokenResponse(start, resp.StatusCode, resp.Header, resp.Body)
	if err != nil {
		var te *TokenError
		if errors.As(err, &te) {
			p.opts.Logger.DebugContext(req.Context(), "idp: token endpoint refused",
				"status", te.Status, "code", te.Code, "dead", te.Dead, "temporary", te.Temporary())
		}
		return nil, resp.Header, err
	}
	return tok, resp.Header, nil
}

// wireTrace tells whether a request reached the server: written in full on
// a connection. A request that failed before (no connection, a failed
// write) cannot have been acted on; one written and then unanswered may
// have been. A transport that reports no connection events at all is
// assumed to have sent it. Safe for concurrent use.
type wireTrace struct {
	asked, wrote atomic.Bool
}

func (w *wireTrace) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GetConn: func(string) { w.asked.Store(true) },
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				w.wrote.Store(true)
			}
		},
	}
}

// sent reports whether the request may have reached the server.
func (w *wireTrace) sent() bool { return w.wrote.Load() || !w.asked.Load() }

// sanitize drops the URL from a *url.Error: a custom GET refresh request
// carries the refresh token in its query, and errors end up in logs.
func sanitize(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
