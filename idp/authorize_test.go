package idp

import (
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// RFC 7636 Appendix B.
func TestChallengeS256(t *testing.T) {
	const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	const want = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	if got := challengeS256(verifier); got != want {
		t.Errorf("challengeS256(%q) = %q, want %q", verifier, got, want)
	}
}

func TestRandomValues(t *testing.T) {
	unreserved := regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	for name, f := range map[string]func() string{"NewState": NewState, "NewNonce": NewNonce, "NewVerifier": NewVerifier} {
		a, b := f(), f()
		if a == b {
			t.Errorf("%s() twice = %q both times", name, a)
		}
		if len(a) != 43 || !unreserved.MatchString(a) {
			t.Errorf("%s() = %q, want 43 base64url characters", name, a)
		}
	}
}

func TestAuthCodeURL(t *testing.T) {
	op := newTestOP(t)
	tests := []struct {
		name   string
		mutate func(*Options)
		req    LoginRequest
		want   url.Values
		base   string
	}{
		{
			name: "oidc",
			mutate: func(o *Options) {
				o.AuthParams = map[string]string{"prompt": "consent", "state": "evil", "code_challenge_method": "plain"}
			},
			base: op.url + "/authorize",
			want: url.Values{
				"response_type":         {"code"},
				"client_id":             {"client-1"},
				"redirect_uri":          {"https://app.example/.auth/callback"},
				"scope":                 {"openid offline_access"},
				"state":                 {"st"},
				"nonce":                 {"nc"},
				"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
				"code_challenge_method": {"S256"},
				"prompt":                {"consent"},
			},
		},
		{
			name: "a step-up login adds acr_values and max_age, and its prompt to the configured one",
			mutate: func(o *Options) {
				o.AuthParams = map[string]string{"prompt": "consent", "acr_values": "configured", "max_age": "9"}
			},
			req:  LoginRequest{ACRValues: []string{"urn:mfa", "urn:hwk"}, MaxAge: 10 * time.Minute, Prompt: []string{"login", "consent"}},
			base: op.url + "/authorize",
			want: url.Values{
				"response_type":         {"code"},
				"client_id":             {"client-1"},
				"redirect_uri":          {"https://app.example/.auth/callback"},
				"scope":                 {"openid offline_access"},
				"state":                 {"st"},
				"nonce":                 {"nc"},
				"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
				"code_challenge_method": {"S256"},
				"prompt":                {"consent login"},
				"acr_values":            {"urn:mfa urn:hwk"},
				"max_age":               {"600"},
			},
		},
		{
			name: "a silent login's prompt=none replaces the configured prompt",
			mutate: func(o *Options) {
				o.AuthParams = map[string]string{"prompt": "consent"}
			},
			req:  LoginRequest{Prompt: []string{"none"}},
			base: op.url + "/authorize",
			want: url.Values{
				"response_type":         {"code"},
				"client_id":             {"client-1"},
				"redirect_uri":          {"https://app.example/.auth/callback"},
				"scope":                 {"openid offline_access"},
				"state":                 {"st"},
				"nonce":                 {"nc"},
				"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
				"code_challenge_method": {"S256"},
				"prompt":                {"none"},
			},
		},
		{
			name: "oauth2 sends no nonce and keeps the endpoint's query",
			mutate: func(o *Options) {
				o.Type = TypeOAuth2
				o.AuthorizationEndpoint = "https://gh.example/login/oauth/authorize?allow_signup=false"
				o.TokenEndpoint = "https://gh.example/login/oauth/access_token"
				o.Scopes = []string{"read:user", "user:email"}
			},
			base: "https://gh.example/login/oauth/authorize",
			want: url.Values{
				"allow_signup":          {"false"},
				"response_type":         {"code"},
				"client_id":             {"client-1"},
				"redirect_uri":          {"https://app.example/.auth/callback"},
				"scope":                 {"read:user user:email"},
				"state":                 {"st"},
				"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
				"code_challenge_method": {"S256"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := op.provider(tt.mutate)
			raw := p.AuthCodeURL("st", "nc", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", tt.req)
			base, query, _ := strings.Cut(raw, "?")
			if base != tt.base {
				t.Errorf("AuthCodeURL base = %q, want %q", base, tt.base)
			}
			got, err := url.ParseQuery(query)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("AuthCodeURL query = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestEndSessionURL pins the RP-initiated logout URL: the client is named by
// client_id, the ID token never appears in it (no id_token_hint, whole or
// in part), and a login_hint claim of the ID token becomes logout_hint.
func TestEndSessionURL(t *testing.T) {
	op := newTestOP(t)
	p := op.provider(nil)
	sign := func(claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("test-key-of-32-bytes-for-hs256!!"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	plain := sign(jwt.MapClaims{"iss": op.url, "sub": "user-1", "sid": "sid-1", "email": "ada@example.com"})
	hinted := sign(jwt.MapClaims{"iss": op.url, "sub": "user-1", "login_hint": "O.aBcD-opaque-hint"})
	tooLong := sign(jwt.MapClaims{"sub": "user-1", "login_hint": strings.Repeat("h", maxLogoutHint+1)})
	tests := []struct {
		name     string
		idToken  string
		redirect string
		state    string
		want     url.Values
	}{
		{
			name: "ID token without login_hint", idToken: plain, redirect: "https://app.example/", state: "s1",
			want: url.Values{"post_logout_redirect_uri": {"https://app.example/"}, "state": {"s1"}, "client_id": {"client-1"}},
		},
		{
			name: "login_hint becomes logout_hint", idToken: hinted, redirect: "https://app.example/", state: "s1",
			want: url.Values{"logout_hint": {"O.aBcD-opaque-hint"}, "post_logout_redirect_uri": {"https://app.example/"}, "state": {"s1"}, "client_id": {"client-1"}},
		},
		{
			name: "oversized login_hint dropped", idToken: tooLong, redirect: "https://app.example/",
			want: url.Values{"post_logout_redirect_uri": {"https://app.example/"}, "client_id": {"client-1"}},
		},
		{
			name: "not a JWT", idToken: "opaque-id-token", redirect: "https://app.example/",
			want: url.Values{"post_logout_redirect_uri": {"https://app.example/"}, "client_id": {"client-1"}},
		},
		{
			name: "no ID token, no state", redirect: "https://app.example/",
			want: url.Values{"post_logout_redirect_uri": {"https://app.example/"}, "client_id": {"client-1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := p.EndSessionURL(secretString(tt.idToken), tt.redirect, tt.state)
			base, query, _ := strings.Cut(raw, "?")
			if want := op.url + "/logout"; base != want {
				t.Errorf("EndSessionURL base = %q, want %q", base, want)
			}
			got, _ := url.ParseQuery(query)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("EndSessionURL query = %v, want %v", got, tt.want)
			}
			for i, part := range strings.Split(tt.idToken, ".") {
				if len(part) > 8 && strings.Contains(raw, part) {
					t.Errorf("EndSessionURL %q holds part %d of the ID token", raw, i)
				}
			}
		})
	}

	none := op.provider(func(o *Options) { o.EndSessionEndpoint = "" })
	none.endSessionURL = "" // as if discovery had none
	if got := none.EndSessionURL("x", "https://app.example/", "s"); got != "" {
		t.Errorf("EndSessionURL without endpoint = %q, want \"\"", got)
	}
}
