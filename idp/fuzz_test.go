package idp

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzParseTokenResponse feeds arbitrary answers to the token-response
// parser (RFC names and a nested custom mapping) and to Capture. Neither may
// panic; a success must carry an access token and an expiry; a failure must
// be a *TokenError with the answer's status; a captured body, once
// stripped, must no longer hold an access token.
func FuzzParseTokenResponse(f *testing.F) {
	seeds := []struct {
		status int
		retry  string
		body   string
	}{
		{200, "", `{"access_token":"at","refresh_token":"rt","expires_in":3600,"token_type":"Bearer"}`},
		{200, "", `{"access_token":"at","expires_in":"60","refresh_expires_in":1800}`},
		{200, "", `{"data":{"auth":{"accessToken":"at","ttl":"1e3"}},"user":{"id":12}}`},
		{200, "", `{"accessToken":"a.b.c","refreshToken":null}`},
		{200, "", `{"access_token":"eyJhbGciOiJub25lIn0.eyJleHAiOjE5OTk5OTk5OTl9.","expires_in":-1}`},
		{400, "", `{"error":"invalid_grant","error_description":"reused"}`},
		{401, "", `{"code":"ERROR_CODE_ACCESS_DENIED"}`},
		{429, "120", `{}`},
		{503, "Wed, 21 Oct 2015 07:28:00 GMT", `<html>`},
		{200, "", `{"access_token":{"nested":[1,2,{"x":null}]}}`},
		{200, "", `[1,2,3]`},
		{200, "", `{"access_token":"at","expires_in":1e400}`},
		{200, "", "{\"access_token\":\"at\"} trailing"},
		{200, "", ""},
	}
	for _, s := range seeds {
		f.Add(s.status, s.retry, []byte(s.body))
	}
	rfc := fuzzProvider(f, ResponseMapping{})
	custom := fuzzProvider(f, ResponseMapping{AccessToken: "data.auth.accessToken", RefreshToken: "data.auth.refreshToken", ExpiresIn: "data.auth.ttl", Subject: "user.id"})
	f.Fuzz(func(t *testing.T, status int, retry string, body []byte) {
		status = 100 + abs(status)%500
		for _, p := range []*Provider{rfc, custom} {
			tok, err := p.parseTokenResponse(p.opts.Now(), status, http.Header{"Retry-After": {retry}}, strings.NewReader(string(body)))
			if err == nil {
				if status < 200 || status > 299 {
					t.Fatalf("status %d parsed as a token", status)
				}
				if tok.AccessToken.IsZero() || tok.Expiry.IsZero() {
					t.Fatalf("token without access token or expiry: %+v", tok)
				}
			} else {
				var te *TokenError
				if !errors.As(err, &te) || te.Status != status || te.RetryAfter < 0 {
					t.Fatalf("error %#v, want a *TokenError with status %d", err, status)
				}
			}

			c, err := p.Capture(body)
			tok, _, stripped, ok := unpackCapture(c)
			if !ok {
				continue
			}
			if err != nil || tok.AccessToken.IsZero() {
				t.Fatalf("Capture ok with err %v, token %+v", err, tok)
			}
			obj, err := decodeObject(stripped)
			if err != nil {
				t.Fatalf("stripped body %q is not a JSON object: %v", stripped, err)
			}
			if v, found := lookup(obj, p.opts.Custom.Mapping.AccessToken); found {
				t.Fatalf("stripped body %q still holds the access token %v", stripped, v)
			}
		}
	})
}

// FuzzVerifyLogoutToken feeds arbitrary strings to VerifyLogoutToken. It
// must not panic, and whatever it accepts must be a complete logout token.
// Only the seeded valid token can pass (once); the fuzzer cannot forge
// signatures.
func FuzzVerifyLogoutToken(f *testing.F) {
	op := newTestOPInMemory(f)
	p, err := New(context.Background(), op.options())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(p.Close)
	noTyp := map[string]any{"typ": nil}
	valid := op.logoutClaims("fuzz-1")
	f.Add(sign(f, "rsa1", valid, noTyp))
	f.Add(sign(f, "ec1", op.logoutClaims("fuzz-2"), map[string]any{"typ": "logout+jwt"}))
	for _, change := range []func(c jwt.MapClaims){
		func(c jwt.MapClaims) { delete(c, "events") },
		func(c jwt.MapClaims) { c["events"] = "x" },
		func(c jwt.MapClaims) { c["nonce"] = 1 },
		func(c jwt.MapClaims) { c["iat"] = "yesterday" },
		func(c jwt.MapClaims) { c["aud"] = []any{1, nil} },
		func(c jwt.MapClaims) { delete(c, "sid"); c["sub"] = map[string]any{} },
	} {
		c := op.logoutClaims("fuzz-x")
		change(c)
		f.Add(sign(f, "rsa1", c, noTyp))
	}
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		lt, err := p.VerifyLogoutToken(ctx, raw)
		if err != nil {
			return
		}
		if lt.JTI == "" || (lt.SID == "" && lt.Subject == "") || lt.Issuer != op.url || lt.IssuedAt.IsZero() {
			t.Fatalf("accepted an incomplete logout token: %+v", lt)
		}
	})
}

func fuzzProvider(f *testing.F, m ResponseMapping) *Provider {
	m.AccessToken = cmp.Or(m.AccessToken, "access_token") // the RFC 6749 name unless mapped
	p, err := New(context.Background(), Options{
		Type:             TypeCustom,
		TokenEndpoint:    "http://127.0.0.1:1/token",
		Now:              fixedNow,
		MaxResponseBytes: 64 << 10,
		Custom: CustomOptions{
			RefreshRequest:  RequestTemplate{Body: map[string]string{"refreshToken": RefreshTokenPlaceholder}},
			Mapping:         m,
			DeadErrorField:  "code",
			DeadErrorValues: []string{"ERROR_CODE_ACCESS_DENIED"},
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(p.Close)
	return p
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
