package idp

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestNewDiscovery(t *testing.T) {
	tests := []struct {
		name    string
		doc     map[string]any // overrides of the discovery document
		status  int
		mutate  func(o *Options, url string)
		wantErr string
		check   func(t *testing.T, p *Provider, url string)
	}{
		{
			name: "discovered endpoints",
			check: func(t *testing.T, p *Provider, url string) {
				got := []string{p.authURL, p.tokenURL, p.revocationURL, p.endSessionURL, p.userinfoURL, p.jwksURL}
				want := []string{url + "/authorize", url + "/token", url + "/revoke", url + "/logout", url + "/userinfo", url + "/jwks"}
				if !slices.Equal(got, want) {
					t.Errorf("endpoints = %q, want %q", got, want)
				}
				// HS256 and none are announced but never accepted.
				if want := []string{"RS256", "ES256", "EdDSA"}; !slices.Equal(p.algs, want) {
					t.Errorf("algs = %q, want %q", p.algs, want)
				}
			},
		},
		{
			name: "explicit endpoints override discovery",
			mutate: func(o *Options, url string) {
				o.TokenEndpoint = "https://other.example/token"
				o.EndSessionEndpoint = "https://other.example/bye"
			},
			check: func(t *testing.T, p *Provider, url string) {
				if p.tokenURL != "https://other.example/token" || p.endSessionURL != "https://other.example/bye" {
					t.Errorf("token, end session = %q, %q; want the overrides", p.tokenURL, p.endSessionURL)
				}
				if p.authURL != url+"/authorize" {
					t.Errorf("authURL = %q, want the discovered one", p.authURL)
				}
			},
		},
		{
			name: "no alg list means RS256",
			doc:  map[string]any{"id_token_signing_alg_values_supported": nil},
			check: func(t *testing.T, p *Provider, url string) {
				if want := []string{"RS256"}; !slices.Equal(p.algs, want) {
					t.Errorf("algs = %q, want %q", p.algs, want)
				}
			},
		},
		{name: "issuer mismatch", doc: map[string]any{"issuer": "https://evil.example"}, wantErr: "does not match"},
		{
			name:    "issuer differs by a trailing slash",
			mutate:  func(o *Options, url string) { o.Issuer = url + "/" },
			wantErr: "does not match",
		},
		{name: "only symmetric algs", doc: map[string]any{"id_token_signing_alg_values_supported": []string{"HS256", "none"}}, wantErr: "no asymmetric"},
		{name: "no jwks_uri", doc: map[string]any{"jwks_uri": nil}, wantErr: "no jwks_uri"},
		{name: "discovery 500", status: http.StatusInternalServerError, wantErr: "status 500"},
		{name: "bad endpoint", doc: map[string]any{"token_endpoint": "/relative"}, wantErr: "token endpoint"},
		{
			name:    "basic without secret",
			mutate:  func(o *Options, url string) { o.ClientSecret = "" },
			wantErr: "client_secret: required with provider.auth_method client_secret_basic",
		},
		{
			name:    "unknown auth method",
			mutate:  func(o *Options, url string) { o.AuthMethod = "client_secret_jwt" },
			wantErr: `auth_method: must be one of client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth, none (got "client_secret_jwt")`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := newTestOP(t)
			op.set(func(op *testOP) {
				op.doc = tt.doc
				if tt.status != 0 {
					op.docStatus = tt.status
				}
			})
			o := op.options()
			if tt.mutate != nil {
				tt.mutate(&o, op.url)
			}
			p, err := New(context.Background(), o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New() error = %v", err)
			}
			defer p.Close()
			if got := op.discoveryFetches.Load(); got != 1 {
				t.Errorf("discovery fetches = %d, want 1", got)
			}
			if got := op.jwksFetches.Load(); got != 1 {
				t.Errorf("JWKS fetches = %d, want 1", got)
			}
			if err := p.Ready(context.Background()); err != nil {
				t.Errorf("Ready() = %v, want nil", err)
			}
			tt.check(t, p, op.url)
		})
	}
}

func TestNewOAuth2NeedsNoDiscovery(t *testing.T) {
	op := newTestOP(t)
	p := op.provider(func(o *Options) {
		o.Type = TypeOAuth2
		o.Issuer = ""
		o.AuthorizationEndpoint = op.url + "/authorize"
		o.TokenEndpoint = op.url + "/token"
	})
	if got := op.discoveryFetches.Load() + op.jwksFetches.Load(); got != 0 {
		t.Errorf("discovery+JWKS fetches = %d, want 0", got)
	}
	if err := p.Ready(context.Background()); err != nil {
		t.Errorf("Ready() = %v, want nil", err)
	}
	if _, err := p.VerifyLogoutToken(context.Background(), "x.y.z"); err == nil {
		t.Errorf("VerifyLogoutToken without JWKS: error = nil, want one")
	}

	_, err := New(context.Background(), Options{Type: TypeOAuth2, ClientID: "c", TokenEndpoint: op.url + "/token"})
	if err == nil || !strings.Contains(err.Error(), "authorization_endpoint: required with provider.type oauth2") {
		t.Errorf("New(oauth2 without authorization endpoint) error = %v, want authorization_endpoint required", err)
	}
}

func TestNewJWKSFailure(t *testing.T) {
	op := newTestOP(t)
	op.set(func(op *testOP) { op.doc = map[string]any{"jwks_uri": op.url + "/missing"} })
	_, err := New(context.Background(), op.options())
	if err == nil || !strings.Contains(err.Error(), "jwks") {
		t.Fatalf("New() error = %v, want a jwks error", err)
	}
}

func TestNewJWKSTooLarge(t *testing.T) {
	op := newTestOP(t)
	o := op.options()
	o.MaxResponseBytes = 100 // the JWKS of three keys is larger
	_, err := New(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("New() error = %v, want a too large error", err)
	}
}

func TestCloseMakesNotReady(t *testing.T) {
	op := newTestOP(t)
	p := op.provider(nil)
	p.Close()
	p.Close() // idempotent
	if err := p.Ready(context.Background()); err == nil {
		t.Errorf("Ready() after Close = nil, want an error")
	}
}

func TestNewCancelled(t *testing.T) {
	op := newTestOP(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New(ctx, op.options()); err == nil {
		t.Fatalf("New(cancelled ctx) error = nil, want one")
	}
	if got := op.discoveryFetches.Load() + op.jwksFetches.Load(); got != 0 {
		t.Errorf("fetches = %d, want 0", got)
	}
}
