package idp

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

func TestClientAuthentication(t *testing.T) {
	const id, sec = "my client", "p@ss:w/rd+"
	// RFC 6749 §2.3.1: each part form-url-encoded, then Basic.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("my+client:p%40ss%3Aw%2Frd%2B"))
	tests := []struct {
		method     string
		secret     secret.String
		wantHeader string // Authorization, "" for none
		wantBody   url.Values
	}{
		{method: AuthMethodBasic, secret: sec, wantHeader: basic, wantBody: url.Values{}},
		{method: AuthMethodPost, secret: sec, wantBody: url.Values{"client_id": {id}, "client_secret": {sec}}},
		{method: AuthMethodNone, wantBody: url.Values{"client_id": {id}}},
	}
	calls := []struct {
		name string
		do   func(p *Provider) error
		path string
		want url.Values
	}{
		{
			name: "exchange",
			do: func(p *Provider) error {
				_, err := p.Exchange(context.Background(), "code-1", "verifier-1")
				return err
			},
			want: url.Values{
				"grant_type": {"authorization_code"}, "code": {"code-1"}, "code_verifier": {"verifier-1"},
				"redirect_uri": {"https://app.example/.auth/callback"}, "audience": {"api"},
			},
		},
		{
			name: "refresh",
			do: func(p *Provider) error {
				_, err := p.Refresh(context.Background(), "rt-1")
				return err
			},
			want: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt-1"}, "audience": {"api"}},
		},
		{
			name: "revoke",
			do:   func(p *Provider) error { return p.Revoke(context.Background(), "rt-1") },
			want: url.Values{"token": {"rt-1"}, "token_type_hint": {"refresh_token"}},
		},
	}
	for _, tt := range tests {
		for _, call := range calls {
			t.Run(tt.method+"/"+call.name, func(t *testing.T) {
				op := newTestOP(t)
				var mu sync.Mutex
				var got []recorded
				h := recordingHandler(&mu, &got, http.StatusOK, map[string]string{"Content-Type": "application/json"}, `{"access_token":"at","token_type":"Bearer","expires_in":60}`)
				op.set(func(op *testOP) { op.token, op.revoke = h, h })
				p := op.provider(func(o *Options) {
					o.ClientID, o.ClientSecret, o.AuthMethod = id, tt.secret, tt.method
					// grant_type cannot be replaced by TokenParams.
					o.TokenParams = map[string]string{"audience": "api", "grant_type": "password"}
				})
				if err := call.do(p); err != nil {
					t.Fatalf("%s: %v", call.name, err)
				}
				if len(got) != 1 {
					t.Fatalf("requests = %d, want 1", len(got))
				}
				r := got[0]
				if r.method != http.MethodPost {
					t.Errorf("method = %s, want POST", r.method)
				}
				if ct := r.header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
					t.Errorf("Content-Type = %q, want application/x-www-form-urlencoded", ct)
				}
				if h := r.header.Values("Authorization"); strings.Join(h, "|") != tt.wantHeader {
					t.Errorf("Authorization = %q, want %q", h, tt.wantHeader)
				}
				want := url.Values{}
				for k, v := range call.want {
					want[k] = v
				}
				if call.name == "revoke" {
					delete(want, "audience")
				}
				for k, v := range tt.wantBody {
					want[k] = v
				}
				body, err := url.ParseQuery(r.body)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(body, want) {
					t.Errorf("body = %v, want %v", body, want)
				}
			})
		}
	}
}

func TestRefreshCustomTemplate(t *testing.T) {
	tests := []struct {
		name        string
		tmpl        RequestTemplate
		wantMethod  string
		wantType    string
		wantBody    string // exact for JSON; parsed for form
		wantQuery   url.Values
		wantHeaders map[string]string
	}{
		{
			name: "json",
			tmpl: RequestTemplate{
				Body:          map[string]string{"refreshToken": "{{refresh_token}}", "app": "web"},
				SecretHeaders: map[string]secret.String{"X-Api-Key": "k-1"},
			},
			wantMethod:  http.MethodPost,
			wantType:    "application/json",
			wantBody:    `{"app":"web","refreshToken":"rt-1"}`,
			wantHeaders: map[string]string{"X-Api-Key": "k-1", "Authorization": ""},
		},
		{
			name: "form with header template",
			tmpl: RequestTemplate{
				Method:  "put",
				Format:  FormatForm,
				Body:    map[string]string{"token": "{{refresh_token}}", "kind": "refresh"},
				Headers: map[string]string{"Authorization": "Refresh {{refresh_token}}"},
			},
			wantMethod:  http.MethodPut,
			wantType:    "application/x-www-form-urlencoded",
			wantBody:    "kind=refresh&token=rt-1",
			wantHeaders: map[string]string{"Authorization": "Refresh rt-1"},
		},
		{
			name:        "get puts the fields in the query",
			tmpl:        RequestTemplate{Method: http.MethodGet, Body: map[string]string{"rt": "{{refresh_token}}"}},
			wantMethod:  http.MethodGet,
			wantQuery:   url.Values{"rt": {"rt-1"}},
			wantHeaders: map[string]string{"Content-Type": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := newTestOP(t)
			var mu sync.Mutex
			var got []recorded
			op.set(func(op *testOP) {
				op.token = recordingHandler(&mu, &got, http.StatusOK, nil, `{"accessToken":"at-2"}`)
			})
			p := op.provider(func(o *Options) {
				*o = Options{
					Type:          TypeCustom,
					TokenEndpoint: op.url + "/token",
					ClientSecret:  "unused", // custom requests carry no client auth
					HTTPClient:    op.client,
					Now:           fixedNow,
					Custom:        CustomOptions{RefreshRequest: tt.tmpl, Mapping: ResponseMapping{AccessToken: "accessToken"}},
				}
			})
			tok, err := p.Refresh(context.Background(), "rt-1")
			if err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if tok.AccessToken != "at-2" || tok.RefreshToken != "" {
				t.Errorf("Refresh tokens = %q, %q; want at-2 and none", tok.AccessToken.Reveal(), tok.RefreshToken.Reveal())
			}
			if len(got) != 1 {
				t.Fatalf("requests = %d, want 1", len(got))
			}
			r := got[0]
			if r.method != tt.wantMethod {
				t.Errorf("method = %s, want %s", r.method, tt.wantMethod)
			}
			if ct := r.header.Get("Content-Type"); ct != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", ct, tt.wantType)
			}
			if r.body != tt.wantBody {
				t.Errorf("body = %q, want %q", r.body, tt.wantBody)
			}
			if tt.wantQuery != nil && !reflect.DeepEqual(r.query, tt.wantQuery) {
				t.Errorf("query = %v, want %v", r.query, tt.wantQuery)
			}
			for k, v := range tt.wantHeaders {
				if g := r.header.Get(k); g != v {
					t.Errorf("header %s = %q, want %q", k, g, v)
				}
			}
		})
	}
}

func TestRefreshWithoutToken(t *testing.T) {
	op := newTestOP(t)
	p := op.provider(nil)
	_, err := p.Refresh(context.Background(), "")
	if !errors.Is(err, ErrInvalidGrant) {
		t.Errorf("Refresh(\"\") error = %v, want ErrInvalidGrant", err)
	}
}

func TestRefreshTransportErrorHidesURL(t *testing.T) {
	p := customProvider(t, func(o *Options) {
		o.TokenEndpoint = "http://127.0.0.1:1/token" // nothing listens on port 1
		o.Custom.RefreshRequest = RequestTemplate{Method: http.MethodGet, Body: map[string]string{"rt": "{{refresh_token}}"}}
	})
	_, err := p.Refresh(context.Background(), "rt-secret-value")
	var te *TokenError
	if !errors.As(err, &te) || !te.Temporary() || te.Status != 0 {
		t.Fatalf("Refresh error = %#v, want a temporary *TokenError without status", err)
	}
	if strings.Contains(err.Error(), "rt-secret-value") {
		t.Errorf("error %q contains the refresh token", err)
	}
}

func TestRevoke(t *testing.T) {
	t.Run("not supported", func(t *testing.T) {
		op := newTestOP(t)
		op.set(func(op *testOP) { op.doc = map[string]any{"revocation_endpoint": nil} })
		p := op.provider(nil)
		if err := p.Revoke(context.Background(), "rt"); !errors.Is(err, ErrNotSupported) {
			t.Errorf("Revoke() = %v, want ErrNotSupported", err)
		}
	})
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		wantErr    bool
		wantCode   string
		wantRetry  time.Duration
		wantStatus int
	}{
		{name: "200", status: http.StatusOK},
		{name: "400 unsupported", status: http.StatusBadRequest, body: `{"error":"unsupported_token_type"}`, wantErr: true, wantCode: "unsupported_token_type", wantStatus: 400},
		{name: "503 retry", status: http.StatusServiceUnavailable, header: map[string]string{"Retry-After": "7"}, body: "down", wantErr: true, wantRetry: 7 * time.Second, wantStatus: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := newTestOP(t)
			op.set(func(op *testOP) { op.revoke = answer(tt.status, tt.header, tt.body) })
			p := op.provider(nil)
			err := p.Revoke(context.Background(), "rt")
			if !tt.wantErr {
				if err != nil {
					t.Errorf("Revoke() = %v, want nil", err)
				}
				return
			}
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("Revoke() = %v, want a *TokenError", err)
			}
			if te.Code != tt.wantCode || te.Status != tt.wantStatus || te.RetryAfter != tt.wantRetry {
				t.Errorf("Revoke() = code %q status %d retry %v, want %q %d %v", te.Code, te.Status, te.RetryAfter, tt.wantCode, tt.wantStatus, tt.wantRetry)
			}
		})
	}
}

// customProvider is a custom-type Provider whose token endpoint nobody
// calls unless the test points it somewhere.
func customProvider(t *testing.T, mutate func(*Options)) *Provider {
	t.Helper()
	o := Options{
		Type:          TypeCustom,
		TokenEndpoint: "http://127.0.0.1:1/token",
		Now:           fixedNow,
		Custom: CustomOptions{
			RefreshRequest: RequestTemplate{Body: map[string]string{"refreshToken": RefreshTokenPlaceholder}},
			Mapping: ResponseMapping{
				AccessToken: "accessToken", RefreshToken: "refreshToken", ExpiresIn: "expiresIn", Subject: "user.id",
			},
		},
	}
	if mutate != nil {
		mutate(&o)
	}
	p, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}
