package idp

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestIdentifyIDToken(t *testing.T) {
	op := newTestOP(t)
	p := op.provider(nil)

	// Algorithm confusion: HS256 keyed with the RSA public key's bytes,
	// as a naive verifier that takes "the key" for the kid would accept.
	pubDER, err := x509.MarshalPKIXPublicKey(testKeys()["rsa1"].(*rsa.PrivateKey).Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs := func(key []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, op.idClaims())
		tok.Header["kid"] = "rsa1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	none := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, op.idClaims())
		tok.Header["kid"] = "rsa1"
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	with := func(kid string, change func(c jwt.MapClaims)) string {
		c := op.idClaims()
		change(c)
		return sign(t, kid, c, nil)
	}
	// A valid token signed by rsa2 but naming rsa1: a bad signature.
	forged := func() string {
		good := sign(t, "rsa1", op.idClaims(), nil)
		other := sign(t, "rsa2", op.idClaims(), map[string]any{"kid": "rsa1"})
		return good[:strings.LastIndexByte(good, '.')] + other[strings.LastIndexByte(other, '.'):]
	}

	tests := []struct {
		name    string
		raw     string
		nonce   string
		wantErr string
	}{
		{name: "RS256", raw: sign(t, "rsa1", op.idClaims(), nil)},
		{name: "ES256", raw: sign(t, "ec1", op.idClaims(), nil)},
		{name: "EdDSA", raw: sign(t, "ed1", op.idClaims(), nil)},
		{name: "two audiences with azp", raw: with("rsa1", func(c jwt.MapClaims) { c["aud"] = []string{"client-1", "api"}; c["azp"] = "client-1" })},
		{name: "expired within skew", raw: with("rsa1", func(c jwt.MapClaims) { c["exp"] = testNow.Add(-30 * time.Second).Unix() })},
		{name: "iat ahead within skew", raw: with("rsa1", func(c jwt.MapClaims) { c["iat"] = testNow.Add(30 * time.Second).Unix() })},

		{name: "bad signature", raw: forged(), wantErr: "signature is invalid"},
		{name: "alg none", raw: none(), wantErr: "signing method none is invalid"},
		{name: "HS256 with the public key PEM", raw: hs(pubPEM), wantErr: "signing method HS256 is invalid"},
		{name: "HS256 with the public key DER", raw: hs(pubDER), wantErr: "signing method HS256 is invalid"},
		{name: "wrong iss", raw: with("rsa1", func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), wantErr: "invalid issuer"},
		{name: "wrong aud", raw: with("rsa1", func(c jwt.MapClaims) { c["aud"] = "other-client" }), wantErr: "invalid audience"},
		{name: "two audiences without azp", raw: with("rsa1", func(c jwt.MapClaims) { c["aud"] = []string{"client-1", "api"} }), wantErr: "no azp"},
		{name: "azp mismatch", raw: with("rsa1", func(c jwt.MapClaims) { c["azp"] = "other-client" }), wantErr: "azp"},
		{name: "expired", raw: with("rsa1", func(c jwt.MapClaims) { c["exp"] = testNow.Add(-2 * time.Minute).Unix() }), wantErr: "token is expired"},
		{name: "no exp", raw: with("rsa1", func(c jwt.MapClaims) { delete(c, "exp") }), wantErr: "exp claim is required"},
		{name: "exp a string", raw: with("rsa1", func(c jwt.MapClaims) { c["exp"] = "tomorrow" }), wantErr: "invalid type for claim"},
		{name: "iat in the future", raw: with("rsa1", func(c jwt.MapClaims) { c["iat"] = testNow.Add(2 * time.Minute).Unix() }), wantErr: "token used before issued"},
		{name: "no iat", raw: with("rsa1", func(c jwt.MapClaims) { delete(c, "iat") }), wantErr: "no iat"},
		{name: "nbf in the future", raw: with("rsa1", func(c jwt.MapClaims) { c["nbf"] = testNow.Add(2 * time.Minute).Unix() }), wantErr: "token is not valid yet"},
		{name: "wrong nonce", raw: sign(t, "rsa1", op.idClaims(), nil), nonce: "other", wantErr: "nonce"},
		{name: "no nonce claim", raw: with("rsa1", func(c jwt.MapClaims) { delete(c, "nonce") }), wantErr: "nonce"},
		{name: "no sub", raw: with("rsa1", func(c jwt.MapClaims) { delete(c, "sub") }), wantErr: "no sub"},
		{name: "sub a number", raw: with("rsa1", func(c jwt.MapClaims) { c["sub"] = 42 }), wantErr: "no sub"},
		{name: "unknown kid", raw: sign(t, "rsa3", op.idClaims(), nil), wantErr: "not found"},
		{name: "no ID token", raw: "", wantErr: "no id_token"},
		{name: "garbage", raw: "not-a-jwt", wantErr: "token is malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nonce := tt.nonce
			if nonce == "" {
				nonce = "n-0S6"
			}
			id, err := p.Identify(context.Background(), &Token{AccessToken: "at", IDToken: secretString(tt.raw)}, nonce)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Identify() = %+v, %v; want an error containing %q", id, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Identify() error = %v", err)
			}
			want := &Identity{
				Issuer:  op.url,
				Subject: "user-42",
				SID:     "sid-7",
				Claims:  map[string]any{"sub": "user-42", "email": "u@example.com"},
				Expiry:  time.Unix(op.idClaims()["exp"].(int64), 0),
			}
			if tt.name == "expired within skew" {
				want.Expiry = testNow.Add(-30 * time.Second).Truncate(time.Second)
			}
			if !id.Expiry.Equal(want.Expiry) {
				t.Errorf("Identify().Expiry = %v, want %v", id.Expiry, want.Expiry)
			}
			id.Expiry, want.Expiry = time.Time{}, time.Time{}
			if !reflect.DeepEqual(id, want) {
				t.Errorf("Identify() = %+v, want %+v", id, want)
			}
		})
	}
}

func TestJWKSRotationAndCooldown(t *testing.T) {
	op := newTestOP(t)
	p := op.provider(nil)
	identify := func(kid string) error {
		_, err := p.Identify(context.Background(), &Token{IDToken: secretString(sign(t, kid, op.idClaims(), nil))}, "n-0S6")
		return err
	}
	steps := []struct {
		name        string
		publish     []string // the JWKS from this step on; nil = unchanged
		kid         string
		wantOK      bool
		wantFetches int64
	}{
		{name: "known kid", kid: "rsa1", wantOK: true, wantFetches: 1},
		{name: "rotated: unknown kid refetches", publish: []string{"rsa2"}, kid: "rsa2", wantOK: true, wantFetches: 2},
		{name: "new key again, cached", kid: "rsa2", wantOK: true, wantFetches: 2},
		{name: "retired key refused without a fetch", kid: "rsa1", wantFetches: 2},
		{name: "forged kid inside the cool-down: no fetch", publish: []string{"rsa2", "rsa3"}, kid: "rsa3", wantFetches: 2},
	}
	for _, s := range steps {
		if s.publish != nil {
			op.set(func(op *testOP) { op.jwksKIDs = s.publish })
		}
		err := identify(s.kid)
		if (err == nil) != s.wantOK {
			t.Errorf("%s: Identify(kid %s) error = %v, want ok=%v", s.name, s.kid, err, s.wantOK)
		}
		if got := op.jwksFetches.Load(); got != s.wantFetches {
			t.Errorf("%s: JWKS fetches = %d, want %d", s.name, got, s.wantFetches)
		}
	}
}

// The cool-down and the periodic refresh, on a fake clock.
func TestJWKSCooldownEndsAndPeriodicRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		op := newTestOPInMemory(t)
		p := op.provider(func(o *Options) {
			o.JWKSRefreshCooldown = time.Minute
			o.JWKSRefreshInterval = time.Hour
		})
		identify := func(kid string) error {
			_, err := p.Identify(context.Background(), &Token{IDToken: secretString(sign(t, kid, op.idClaims(), nil))}, "n-0S6")
			return err
		}
		check := func(step string, wantFetches int64) {
			t.Helper()
			synctest.Wait()
			if got := op.jwksFetches.Load(); got != wantFetches {
				t.Errorf("%s: JWKS fetches = %d, want %d", step, got, wantFetches)
			}
		}
		check("start", 1)
		for range 5 {
			if err := identify("rsa3"); err == nil {
				t.Fatalf("Identify(unknown kid) = nil error")
			}
		}
		check("five unknown kids", 2)
		time.Sleep(time.Minute)
		op.set(func(op *testOP) { op.jwksKIDs = []string{"rsa1", "rsa3"} })
		if err := identify("rsa3"); err != nil {
			t.Errorf("Identify(rotated kid after the cool-down) = %v", err)
		}
		check("after the cool-down", 3)
		time.Sleep(time.Hour - time.Minute + time.Second)
		check("periodic refresh", 4)
		if err := p.Ready(context.Background()); err != nil {
			t.Errorf("Ready() = %v, want nil", err)
		}
		op.set(func(op *testOP) { op.jwksKIDs = nil })
		time.Sleep(time.Hour)
		check("periodic refresh to an empty set", 5)
		if err := p.Ready(context.Background()); err == nil {
			t.Errorf("Ready() with no keys = nil, want an error")
		}
		p.Close()
	})
}

func TestIdentifyOAuth2AndCustom(t *testing.T) {
	jwtAccess := unsignedJWT(t, jwt.MapClaims{"sub": "jwt-user", "email": "j@example.com", "exp": testNow.Add(time.Hour).Unix()})
	tests := []struct {
		name     string
		typ      string
		userinfo http.HandlerFunc
		tok      *Token
		want     *Identity
		wantErr  string
	}{
		{
			name:     "oauth2 userinfo sub",
			typ:      TypeOAuth2,
			userinfo: answer(200, nil, `{"sub":"ui-1","email":"ui@example.com","name":null}`),
			tok:      &Token{AccessToken: "opaque"},
			want:     &Identity{Subject: "ui-1", Claims: map[string]any{"email": "ui@example.com", "sub": "ui-1"}},
		},
		{
			name:     "oauth2 userinfo numeric id",
			typ:      TypeOAuth2,
			userinfo: answer(200, nil, `{"id":583231,"login":"octocat"}`),
			tok:      &Token{AccessToken: "opaque"},
			want:     &Identity{Subject: "583231", Claims: map[string]any{}},
		},
		{name: "oauth2 userinfo 401", typ: TypeOAuth2, userinfo: answer(401, nil, ``), tok: &Token{AccessToken: "opaque"}, wantErr: "status 401"},
		{name: "oauth2 userinfo HTML", typ: TypeOAuth2, userinfo: answer(200, nil, `<html>`), tok: &Token{AccessToken: "opaque"}, wantErr: "not a JSON object"},
		{
			name: "oauth2 JWT access token",
			typ:  TypeOAuth2,
			tok:  &Token{AccessToken: secretString(jwtAccess)},
			want: &Identity{Subject: "jwt-user", Claims: map[string]any{"email": "j@example.com", "sub": "jwt-user"}},
		},
		{name: "oauth2 opaque", typ: TypeOAuth2, tok: &Token{AccessToken: "opaque"}, want: &Identity{Claims: map[string]any{}}},
		{
			name: "custom subject mapping wins over JWT",
			typ:  TypeCustom,
			tok:  &Token{AccessToken: secretString(jwtAccess), subject: "7", profile: map[string]any{"name": "Ann", "id": "7"}},
			want: &Identity{Subject: "7", Claims: map[string]any{"sub": "7", "name": "Ann", "email": "j@example.com"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := newTestOP(t)
			var ui string
			if tt.userinfo != nil {
				op.set(func(op *testOP) { op.userinfo = tt.userinfo })
				ui = op.url + "/userinfo"
			}
			p := op.provider(func(o *Options) {
				o.Type = tt.typ
				o.Issuer = ""
				o.AuthorizationEndpoint = op.url + "/authorize"
				o.TokenEndpoint = op.url + "/token"
				o.UserinfoEndpoint = ui
				if tt.typ == TypeCustom {
					o.Custom.RefreshRequest.Body = map[string]string{"refreshToken": RefreshTokenPlaceholder}
					o.Custom.Mapping.AccessToken = "access_token"
				}
			})
			id, err := p.Identify(context.Background(), tt.tok, "")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Identify() = %+v, %v; want an error containing %q", id, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Identify() error = %v", err)
			}
			if !reflect.DeepEqual(id, tt.want) {
				t.Errorf("Identify() = %+v, want %+v", id, tt.want)
			}
		})
	}
}

func TestUserinfoSendsBearer(t *testing.T) {
	op := newTestOP(t)
	var mu sync.Mutex
	var got []recorded
	op.set(func(op *testOP) { op.userinfo = recordingHandler(&mu, &got, 200, nil, `{"sub":"s"}`) })
	p := op.provider(func(o *Options) {
		o.Type = TypeOAuth2
		o.AuthorizationEndpoint = op.url + "/authorize"
		o.TokenEndpoint = op.url + "/token"
		o.UserinfoEndpoint = op.url + "/userinfo"
	})
	if _, err := p.Identify(context.Background(), &Token{AccessToken: "at-9"}, ""); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].header.Get("Authorization") != "Bearer at-9" || got[0].method != http.MethodGet {
		t.Errorf("userinfo requests = %+v, want one GET with Authorization: Bearer at-9", got)
	}
}
