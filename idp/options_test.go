package idp

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestClockSkewZeroMeansNone pins provider.clock_skew's zero value: an
// explicit 0 tolerates no skew at all, while the key left out tolerates one
// minute. An ID token that expired 30 s ago and a logout token issued 30 s
// in the future pass with the default and fail with 0.
func TestClockSkewZeroMeansNone(t *testing.T) {
	op := newTestOP(t)
	expired := op.idClaims()
	expired["exp"] = testNow.Add(-30 * time.Second).Unix()
	early := op.logoutClaims("skew-1")
	early["iat"] = testNow.Add(30 * time.Second).Unix()

	tests := []struct {
		name   string
		skew   *time.Duration
		wantOK bool
	}{
		{"left out: one minute", nil, true},
		{"explicit one minute", new(time.Minute), true},
		{"explicit zero: none", new(time.Duration(0)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := op.provider(func(o *Options) { o.ClockSkew = tt.skew })
			_, idErr := p.Identify(context.Background(), &Token{AccessToken: "at", IDToken: secretString(sign(t, "rsa1", expired, nil))}, "n-0S6")
			if (idErr == nil) != tt.wantOK {
				t.Errorf("Identify(ID token expired 30s ago) = %v, want success %v", idErr, tt.wantOK)
			}
			early["jti"] = "skew-" + tt.name // a fresh jti per provider, so the replay cache stays out of it
			_, logoutErr := p.VerifyLogoutToken(context.Background(), sign(t, "rsa1", early, map[string]any{"typ": "logout+jwt"}))
			if (logoutErr == nil) != tt.wantOK {
				t.Errorf("VerifyLogoutToken(iat 30s ahead) = %v, want success %v", logoutErr, tt.wantOK)
			}
		})
	}
	if got := *(Options{}).WithDefaults().ClockSkew; got != time.Minute {
		t.Errorf("default ClockSkew = %v, want 1m", got)
	}
	if got := *(Options{ClockSkew: new(time.Duration(0))}).WithDefaults().ClockSkew; got != 0 {
		t.Errorf("ClockSkew 0 after WithDefaults = %v, want 0", got)
	}
}

// TestValidateOptions pins the problems of a provider's options, with
// paths relative to them, and that New refuses what Validate reports.
func TestValidateOptions(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want []string
	}{
		{"oidc needs issuer and client id", Options{}, []string{
			"issuer: required with provider.type oidc",
			"client_id: required with provider.type oidc",
		}},
		{"oidc without offline_access warns", Options{Issuer: "https://id.example", ClientID: "c", Scopes: []string{"openid"}}, []string{
			"scopes: offline_access is missing: most providers then issue no refresh token, and sessions end when the access token expires",
		}},
		{"negative values", Options{Type: TypeOAuth2, ClientID: "c", AuthorizationEndpoint: "https://id.example/a", TokenEndpoint: "http://id.example/t",
			AccessTokenLifetime: -1, Timeout: -1, MaxResponseBytes: -1, ClockSkew: new(-time.Second), Claims: []string{"sub", ""}}, []string{
			"token_endpoint: must be an https URL (http allowed only for loopback)",
			"access_token_lifetime: must be a positive duration",
			"timeout: must be a positive duration",
			"max_response_bytes: must be positive",
			"clock_skew: must not be negative",
			"claims[1]: must not be empty",
		}},
		{"custom", Options{Type: TypeCustom, TokenEndpoint: "https://x.example/token", Custom: CustomOptions{
			RefreshRequest: RequestTemplate{Format: "xml", Body: map[string]string{"rt": "{{refreshToken}}"}},
			Capture:        []CaptureRoute{{Path: "auth/login"}, {Method: "PO ST", Path: "/auth/signup"}},
		}}, []string{
			`custom.refresh_request.format: must be one of json, form (got "xml")`,
			`custom.refresh_request.body: must contain "{{refresh_token}}" in a value`,
			"custom.token_response.access_token: required with provider.type custom (the JSON field holding the access token)",
			`custom.capture[0].path: must be a path starting with "/"`,
			"custom.capture[1].method: must be an HTTP method",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, p := range tt.o.Validate() {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Validate() =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
	if _, err := New(context.Background(), Options{}); err == nil || !strings.Contains(err.Error(), "issuer: required") {
		t.Errorf("New(Options{}) = %v, want the problems Validate reports", err)
	}
}
