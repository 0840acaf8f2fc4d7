package idp

import (
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
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
			raw := p.AuthCodeURL("st", "nc", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
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

func TestEndSessionURL(t *testing.T) {
	op := newTestOP(t)
	p := op.provider(nil)
	tests := []struct {
		name     string
		hint     string
		redirect string
		state    string
		want     url.Values
	}{
		{
			name: "all", hint: "id.tok.en", redirect: "https://app.example/", state: "s1",
			want: url.Values{"id_token_hint": {"id.tok.en"}, "post_logout_redirect_uri": {"https://app.example/"}, "state": {"s1"}, "client_id": {"client-1"}},
		},
		{
			name: "no hint, no state", redirect: "https://app.example/",
			want: url.Values{"post_logout_redirect_uri": {"https://app.example/"}, "client_id": {"client-1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := p.EndSessionURL(secretString(tt.hint), tt.redirect, tt.state)
			base, query, _ := strings.Cut(raw, "?")
			if want := op.url + "/logout"; base != want {
				t.Errorf("EndSessionURL base = %q, want %q", base, want)
			}
			got, _ := url.ParseQuery(query)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("EndSessionURL query = %v, want %v", got, tt.want)
			}
		})
	}

	none := op.provider(func(o *Options) { o.EndSessionEndpoint = "" })
	none.endSessionURL = "" // as if discovery had none
	if got := none.EndSessionURL("x", "https://app.example/", "s"); got != "" {
		t.Errorf("EndSessionURL without endpoint = %q, want \"\"", got)
	}
}
