package config

import (
	"reflect"
	"testing"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/proxy"
)

// TestRouteTokenConflicts pins what check-config says when a route's
// token cannot come from the provider as configured.
func TestRouteTokenConflicts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string
	}{
		{"client route on a public client", func(c *Config) {
			c.Routes = append(c.Routes, proxy.Route{Path: "/svc/", Upstream: "http://127.0.0.1:4000", Token: proxy.TokenClient})
		}, []string{"routes[2].token: client needs tokenrelay's own client credentials, which a oidc client cannot use (provider.auth_method none)"}},
		{"user_or_client on a public client", func(c *Config) {
			c.Routes = append(c.Routes, proxy.Route{Path: "/mix/", Upstream: "http://127.0.0.1:4000", Token: proxy.TokenUserOrClient})
		}, []string{"routes[2].token: user_or_client needs tokenrelay's own client credentials, which a oidc client cannot use (provider.auth_method none)"}},
		{"client route on a confidential client", func(c *Config) {
			c.Provider.ClientSecret, c.Provider.AuthMethod = "s", idp.AuthMethodBasic
			c.Routes = append(c.Routes, proxy.Route{Path: "/svc/", Upstream: "http://127.0.0.1:4000", Token: proxy.TokenClient})
		}, nil},
		{"scopes the login does not ask for", func(c *Config) {
			c.Routes[0].Resource, c.Routes[0].Scopes = "https://api.example", []string{"email", "orders:write"}
		}, []string{`routes[0].scopes[1]: "orders:write" is not among provider.scopes: a refresh may narrow the login's scopes, never widen them`}},
		{"a resource on a custom provider", func(c *Config) {
			customProvider(c)
			c.Routes[0].Resource = "https://api.example"
		}, []string{"routes[0].resource: a token of its own resource or scopes needs an RFC 6749 token endpoint, which provider.type custom has not"}},
		{"exchange on a custom provider", func(c *Config) {
			customProvider(c)
			c.Routes[0].Token, c.Routes[0].Resource = proxy.TokenExchange, "https://api.example"
		}, []string{"routes[0].token: exchange needs an RFC 8693 token endpoint, which provider.type custom has not"}},
		{"dpop on a custom provider", func(c *Config) {
			customProvider(c)
			c.Provider.DPoP = true
		}, []string{"provider.dpop: needs an RFC 6749 token endpoint (provider.type oidc or oauth2)"}},
		{"private_key_jwt without a key", func(c *Config) { c.Provider.AuthMethod = idp.AuthMethodPrivateKeyJWT },
			[]string{"provider.private_key_file: required with provider.auth_method private_key_jwt"}},
		{"tls_client_auth without a certificate", func(c *Config) { c.Provider.AuthMethod = idp.AuthMethodTLS },
			[]string{"provider.tls_client_cert_file: tls_client_cert_file and tls_client_key_file are required with provider.auth_method tls_client_auth"}},
		{"par always without discovery", func(c *Config) {
			c.Provider.Type, c.Provider.PAR = idp.TypeOAuth2, idp.PARAlways
			c.Provider.AuthorizationEndpoint, c.Provider.TokenEndpoint = "https://id.example.com/authorize", "https://id.example.com/token"
		}, []string{"provider.par: always needs the provider's discovery document (provider.type oidc), which names the pushed authorization request endpoint"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			tt.mutate(c)
			c.SetDefaults()
			_, err := c.Validate()
			var got []string
			if err != nil {
				for _, p := range err.(Problems) {
					got = append(got, p.String())
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRouteResourcesAskedAtLogin: the login asks for the resource of every
// route whose user token is refreshed for it, once each, and not for the
// resources of client or exchange routes.
func TestRouteResourcesAskedAtLogin(t *testing.T) {
	c := validConfig(t)
	c.Provider.ClientSecret, c.Provider.AuthMethod = "s", idp.AuthMethodBasic
	c.Routes = append(c.Routes,
		proxy.Route{Path: "/a/", Upstream: "http://127.0.0.1:4000", Resource: "https://a.example"},
		proxy.Route{Path: "/a2/", Upstream: "http://127.0.0.1:4000", Resource: "https://a.example", Scopes: []string{"email"}},
		proxy.Route{Path: "/b/", Upstream: "http://127.0.0.1:4000", Token: proxy.TokenUserOrNone, Resource: "https://b.example"},
		proxy.Route{Path: "/svc/", Upstream: "http://127.0.0.1:4000", Token: proxy.TokenClient, Resource: "https://svc.example"},
		proxy.Route{Path: "/x/", Upstream: "http://127.0.0.1:4000", Token: proxy.TokenExchange, Resource: "https://x.example"},
	)
	c.SetDefaults()
	if want := []string{"https://a.example", "https://b.example"}; !reflect.DeepEqual(c.Provider.Resources, want) {
		t.Errorf("provider resources = %q, want %q", c.Provider.Resources, want)
	}
}

// TestCheckProvider pins the conflicts between the configuration and the
// provider's discovery document that check-config --discover reports.
func TestCheckProvider(t *testing.T) {
	c := validConfig(t)
	// auth_method set in the file: the provider's list does not change it.
	c.Provider.ClientSecret, c.Provider.AuthMethod, c.Provider.AuthMethodDefaulted, c.Provider.DPoP = "s", idp.AuthMethodBasic, false, true
	c.Routes = append(c.Routes,
		proxy.Route{Path: "/svc/", Upstream: "http://127.0.0.1:4000", Token: proxy.TokenClient},
		proxy.Route{Path: "/x/", Upstream: "http://127.0.0.1:4000", Token: proxy.TokenExchange, Resource: "https://x.example"},
	)
	c.SetDefaults()
	md := &idp.Metadata{
		GrantTypes:               []string{"authorization_code", "refresh_token"},
		TokenEndpointAuthMethods: []string{"client_secret_post", "private_key_jwt"},
	}
	var got []string
	for _, p := range c.CheckProvider(md) {
		got = append(got, p.String())
	}
	want := []string{
		"provider.auth_method: client_secret_basic is not among the client authentication methods the provider lists (token_endpoint_auth_methods_supported: client_secret_post, private_key_jwt)",
		"provider.dpop: the provider does not support DPoP with ES256 (dpop_signing_alg_values_supported: none)",
		"routes[2].token: client needs the client_credentials grant, which the provider does not list (grant_types_supported: authorization_code, refresh_token)",
		"routes[3].token: exchange needs the urn:ietf:params:oauth:grant-type:token-exchange grant, which the provider does not list (grant_types_supported: authorization_code, refresh_token)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CheckProvider =\n%s\nwant\n%s", got, want)
	}
}
