package idp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenrelay/tokenrelay/secret"
)

// maxSeconds bounds lifetimes and Retry-After read from answers (ten
// years), so absurd numbers cannot overflow a time.Duration.
const maxSeconds = 10 * 365 * 24 * 3600

// FieldError says a field of a token response is missing or has a JSON type
// or value tokenrelay cannot use. It reaches callers inside a *TokenError.
type FieldError struct {
	// Field is the dotted path of the field ("data.auth.accessToken").
	Field string
	// Problem says what is wrong ("missing", "want a string, got number").
	Problem string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("idp: token response field %q: %s", e.Field, e.Problem)
}

// errNotJSON says an answer was not a JSON object.
var errNotJSON = errors.New("answer is not a JSON object")

// maxExpirySkew is taken off every access token's expiry (a quarter of the
// lifetime at most), so a token is not forwarded in the last moment of its
// life, when the upstream's clock or the time on the wire would make it
// expired on arrival.
const maxExpirySkew = time.Second

// parseTokenResponse turns one token endpoint answer, to a request sent at
// start, into a Token. It is the single reader of token answers behind
// Exchange and Refresh (Capture shares tokenFromObject). Every failure is a
// *TokenError carrying the status, so callers can tell a dead refresh token
// (Dead, errors.Is ErrInvalidGrant) from a transient failure (Temporary)
// from a refusal of the client (errors.Is ErrClientRejected).
func (p *Provider) parseTokenResponse(start time.Time, status int, header http.Header, body io.Reader) (*Token, error) {
	te := &TokenError{Status: status, Sent: true, RetryAfter: parseRetryAfter(header.Get("Retry-After"), p.opts.Now())}
	b, err := readCapped(body, p.opts.MaxResponseBytes)
	if err != nil {
		te.Err = err
		te.Dead = p.deadStatus(status)
		return nil, te
	}
	obj, jerr := decodeObject(b)
	if obj != nil {
		if code, ok := obj["error"].(string); ok {
			te.Code = code
			te.Description, _ = obj["error_description"].(string)
		}
	}
	te.Dead = te.Code == "invalid_grant" || p.deadStatus(status) || p.deadField(obj)
	ok2xx := status >= 200 && status < 300
	switch {
	case jerr != nil:
		te.Err = jerr
		return nil, te
	case !ok2xx:
		if te.Code == "" {
			te.Err = errors.New("error answer without an RFC 6749 error code")
		}
		return nil, te
	case te.Code != "" || te.Dead:
		// A 2xx carrying an error object (some providers do this).
		return nil, te
	}
	tok, err := p.tokenFromObjectAt(obj, start)
	if err != nil {
		te.Err = err
		return nil, te
	}
	return tok, nil
}

// deadStatus applies the custom dead-status rule. RFC 6749 providers have
// one sign of a dead refresh token, invalid_grant: a 400 or 401 without it
// is the provider refusing the client or the request, never the token.
func (p *Provider) deadStatus(status int) bool {
	return p.opts.Type == TypeCustom && slices.Contains(p.opts.Custom.DeadStatuses, status)
}

// deadField applies the custom dead-error-field rule.
func (p *Provider) deadField(obj map[string]any) bool {
	c := p.opts.Custom
	if p.opts.Type != TypeCustom || c.DeadErrorField == "" || obj == nil {
		return false
	}
	v, ok := lookup(obj, c.DeadErrorField)
	if !ok {
		return false
	}
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case json.Number:
		s = v.String()
	case bool:
		s = strconv.FormatBool(v)
	default:
		return false
	}
	return slices.Contains(c.DeadErrorValues, s)
}

// decodeObject decodes b as one JSON object, numbers kept as json.Number.
func decodeObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %w", errNotJSON, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON value", errNotJSON)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: got %s", errNotJSON, jsonKind(v))
	}
	return obj, nil
}

// tokenFromObject applies the response mapping to an answer received now.
func (p *Provider) tokenFromObject(obj map[string]any) (*Token, error) {
	return p.tokenFromObjectAt(obj, p.opts.Now())
}

// tokenFromObjectAt applies the response mapping to a decoded answer to a
// request sent at start. See accessExpiry for the access token's expiry.
func (p *Provider) tokenFromObjectAt(obj map[string]any, start time.Time) (*Token, error) {
	m := p.opts.Custom.Mapping
	now := start
	access, err := stringAt(obj, m.AccessToken)
	if err != nil {
		return nil, err
	}
	if access == "" {
		return nil, &FieldError{Field: m.AccessToken, Problem: "missing"}
	}
	refresh, err := stringAt(obj, m.RefreshToken)
	if err != nil {
		return nil, err
	}
	idToken, err := stringAt(obj, m.IDToken)
	if err != nil {
		return nil, err
	}
	tokenType, err := stringAt(obj, "token_type")
	if err != nil {
		return nil, err
	}
	tok := &Token{
		AccessToken:  secret.String(access),
		RefreshToken: secret.String(refresh),
		IDToken:      secret.String(idToken),
		TokenType:    tokenType,
	}

	expiresIn, ok, err := secondsAt(obj, m.ExpiresIn)
	if err != nil {
		return nil, err
	}
	tok.Expiry = p.accessExpiry(access, start, expiresIn, ok)
	refreshIn, ok, err := secondsAt(obj, "refresh_expires_in")
	if err != nil {
		return nil, err
	}
	if ok {
		tok.RefreshExpiry = now.Add(refreshIn)
	}

	if m.Subject != "" {
		sub, err := subjectAt(obj, m.Subject)
		if err != nil {
			return nil, err
		}
		tok.subject = sub
		// The object holding the subject ("user" for "user.id") is the
		// user's profile: configured claims are taken from it.
		if i := strings.LastIndexByte(m.Subject, '.'); i > 0 {
			if prof, ok := lookup(obj, m.Subject[:i]); ok {
				tok.profile, _ = prof.(map[string]any)
			}
		}
	}
	return tok, nil
}

// accessExpiry is when an access token received for a request sent at
// start stops being used: the earliest of start + expires-in (when the
// answer has it) and the token's JWT exp (read unverified: it only
// schedules the next refresh), else start + AccessTokenLifetime; less a
// skew of a second (a quarter of the lifetime at most). The time the answer
// took to arrive is already part of the token's life, and a JWT's exp is in
// whole seconds, so either alone can be later than the real end.
func (p *Provider) accessExpiry(access string, start time.Time, expiresIn time.Duration, hasExpiresIn bool) time.Time {
	var end time.Time
	if hasExpiresIn {
		end = start.Add(expiresIn)
	}
	if exp, ok := jwtExpiry(access); ok && (end.IsZero() || exp.Before(end)) {
		end = exp
		if limit := start.Add(maxSeconds * time.Second); end.After(limit) {
			end = limit
		}
	}
	if end.IsZero() {
		end = start.Add(p.opts.AccessTokenLifetime)
	}
	return end.Add(-expirySkew(end.Sub(start)))
}

// expirySkew is what accessExpiry takes off a lifetime.
func expirySkew(lifetime time.Duration) time.Duration {
	if lifetime <= 0 {
		return 0
	}
	return min(maxExpirySkew, lifetime/4)
}

// lookup follows a dotted path through nested JSON objects. A JSON null
// counts as absent.
func lookup(obj map[string]any, path string) (any, bool) {
	var cur any = obj
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

// stringAt returns the string at path, "" when absent, and a *FieldError
// when the value is not a string.
func stringAt(obj map[string]any, path string) (string, error) {
	v, ok := lookup(obj, path)
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", &FieldError{Field: path, Problem: "want a string, got " + jsonKind(v)}
	}
	return s, nil
}

// subjectAt returns a user id: a string, or a JSON number in its decimal
// form (many backends number their users).
func subjectAt(obj map[string]any, path string) (string, error) {
	v, ok := lookup(obj, path)
	if !ok {
		return "", nil
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	}
	return "", &FieldError{Field: path, Problem: "want a string or number, got " + jsonKind(v)}
}

// secondsAt reads a lifetime in seconds given as a JSON number or a numeric
// string. ok is false when the field is absent or not positive (providers
// use 0 for "unknown"); values over ten years are clamped.
func secondsAt(obj map[string]any, path string) (d time.Duration, ok bool, err error) {
	v, present := lookup(obj, path)
	if !present {
		return 0, false, nil
	}
	var f float64
	switch v := v.(type) {
	case json.Number:
		f, err = strconv.ParseFloat(v.String(), 64)
	case string:
		f, err = strconv.ParseFloat(strings.TrimSpace(v), 64)
	default:
		return 0, false, &FieldError{Field: path, Problem: "want a number of seconds, got " + jsonKind(v)}
	}
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false, &FieldError{Field: path, Problem: "not a number of seconds"}
	}
	if f <= 0 {
		return 0, false, nil
	}
	f = min(f, maxSeconds)
	return time.Duration(f * float64(time.Second)), true, nil
}

// jwtExpiry reads the exp claim of a JWT without verifying it.
func jwtExpiry(raw string) (time.Time, bool) {
	exp, err := jwtClaims(raw).GetExpirationTime()
	if err != nil || exp == nil || exp.Unix() <= 0 {
		return time.Time{}, false
	}
	return exp.Time, true
}

// jwtClaims reads a JWT's claims without verifying them, nil when raw is
// not a JWT.
func jwtClaims(raw string) jwt.MapClaims {
	if strings.Count(raw, ".") != 2 {
		return nil
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, claims); err != nil {
		return nil
	}
	return claims
}

// parseRetryAfter reads Retry-After as delay-seconds or an HTTP date
// (RFC 9110 §10.2.3); 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, maxSeconds)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, maxSeconds*time.Second)
		}
	}
	return 0
}

// jsonKind names the JSON type of a decoded value for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
