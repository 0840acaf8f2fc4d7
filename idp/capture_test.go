package idp

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestCapture(t *testing.T) {
	jwtAccess := unsignedJWT(t, jwt.MapClaims{"sub": "jwt-sub", "exp": testNow.Add(15 * time.Minute).Unix()})
	tests := []struct {
		name    string
		mapping *ResponseMapping // nil: the Xano mapping of customProvider
		body    string

		wantOK       bool
		wantErr      string
		wantStripped string
		wantAccess   string
		wantRefresh  string
		wantExpiry   time.Duration
		wantID       *Identity
	}{
		{
			name:         "Xano login",
			body:         `{"accessToken":"at-1","refreshToken":"rt-1","user":{"id":5,"name":"Ann","email":"a@example.com"}}`,
			wantOK:       true,
			wantStripped: `{"user":{"id":5,"name":"Ann","email":"a@example.com"}}`,
			wantAccess:   "at-1", wantRefresh: "rt-1", wantExpiry: 5 * time.Minute,
			wantID: &Identity{Subject: "5", Claims: map[string]any{"sub": "5", "name": "Ann", "email": "a@example.com"}},
		},
		{
			name:         "order, spelling and expires-in kept",
			body:         "{\n  \"z\": 1,\n  \"accessToken\": \"at-1\",\n  \"a\": \"k <b>&\\u00e9\",\n  \"n\": 12345678901234567890,\n  \"expiresIn\": 60\n}",
			wantOK:       true,
			wantStripped: `{"z":1,"a":"k <b>&\u00e9","n":12345678901234567890,"expiresIn":60}`,
			wantAccess:   "at-1", wantExpiry: time.Minute,
			wantID: &Identity{Claims: map[string]any{}},
		},
		{
			name:         "JWT access token gives sub and lifetime",
			body:         `{"accessToken":"` + jwtAccess + `","refreshToken":"rt"}`,
			wantOK:       true,
			wantStripped: `{}`,
			wantAccess:   jwtAccess, wantRefresh: "rt", wantExpiry: 15 * time.Minute,
			wantID: &Identity{Subject: "jwt-sub", Claims: map[string]any{"sub": "jwt-sub"}},
		},
		{
			name:         "nested paths",
			mapping:      &ResponseMapping{AccessToken: "data.auth.accessToken", RefreshToken: "data.auth.refreshToken", IDToken: "data.idToken", Subject: "data.user.id"},
			body:         `{"data":{"auth":{"accessToken":"at","refreshToken":"rt","scope":"x"},"idToken":"it","user":{"id":"u-1"}},"ok":true,"list":[{"accessToken":"stays"}]}`,
			wantOK:       true,
			wantStripped: `{"data":{"auth":{"scope":"x"},"user":{"id":"u-1"}},"ok":true,"list":[{"accessToken":"stays"}]}`,
			wantAccess:   "at", wantRefresh: "rt", wantExpiry: 5 * time.Minute,
			wantID: &Identity{Subject: "u-1", Claims: map[string]any{"sub": "u-1"}},
		},
		{
			name:         "duplicate keys all removed",
			body:         `{"accessToken":"x","accessToken":"at","keep":1}`,
			wantOK:       true,
			wantStripped: `{"keep":1}`,
			wantAccess:   "at", wantExpiry: 5 * time.Minute,
			wantID: &Identity{Claims: map[string]any{}},
		},
		{name: "no access token", body: `{"error":"wrong password"}`},
		{name: "null access token", body: `{"accessToken":null,"user":{}}`},
		{name: "empty access token", body: `{"accessToken":""}`},
		{name: "access token a number", body: `{"accessToken":5}`, wantErr: "want a string"},
		{name: "refresh token an object", body: `{"accessToken":"a","refreshToken":{}}`, wantErr: "want a string"},
		{name: "not JSON", body: `<html>`},
		{name: "array", body: `[{"accessToken":"a"}]`, wantErr: "not a JSON object"},
		{name: "empty", body: ``},
		{name: "refresh token alone", body: `{"refreshToken":"r"}`, wantErr: "accessToken"},
		{name: "oversized", body: `{"accessToken":"a","pad":"` + strings.Repeat("x", 4096) + `"}`, wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := customProvider(t, func(o *Options) {
				o.MaxResponseBytes = 4096
				o.Claims = []string{"sub", "name", "email"}
				if tt.mapping != nil {
					o.Custom.Mapping = *tt.mapping
				}
			})
			c, err := p.Capture([]byte(tt.body))
			tok, id, stripped, ok := unpackCapture(c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || ok {
					t.Fatalf("Capture() ok=%v err=%v, want ok=false and an error containing %q", ok, err, tt.wantErr)
				}
				return
			}
			if err != nil || ok != tt.wantOK {
				t.Fatalf("Capture() ok=%v err=%v, want ok=%v and no error", ok, err, tt.wantOK)
			}
			if !ok {
				if tok != nil || id != nil || stripped != nil {
					t.Errorf("Capture() = %v, %v, %q with ok=false, want nils", tok, id, stripped)
				}
				return
			}
			if string(stripped) != tt.wantStripped {
				t.Errorf("stripped = %s, want %s", stripped, tt.wantStripped)
			}
			if tok.AccessToken.Reveal() != tt.wantAccess || tok.RefreshToken.Reveal() != tt.wantRefresh {
				t.Errorf("tokens = %q, %q; want %q, %q", tok.AccessToken.Reveal(), tok.RefreshToken.Reveal(), tt.wantAccess, tt.wantRefresh)
			}
			if want := lifetimeEnd(testNow, tt.wantExpiry); !tok.Expiry.Equal(want) {
				t.Errorf("Expiry = %v, want %v", tok.Expiry, want)
			}
			if !reflect.DeepEqual(id, tt.wantID) {
				t.Errorf("identity = %+v, want %+v", id, tt.wantID)
			}
		})
	}
}

// unpackCapture returns the parts of c; ok is false when c is nil (the
// answer holds no token).
func unpackCapture(c *Captured) (tok *Token, id *Identity, body []byte, ok bool) {
	if c == nil {
		return nil, nil, nil, false
	}
	return c.Token, c.Identity, c.Body, true
}
