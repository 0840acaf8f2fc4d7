package idp

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

func BenchmarkParseTokenResponse(b *testing.B) {
	p := benchProvider(b)
	body := `{"access_token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln","refresh_token":"rt-0123456789","id_token":"x.y.z","token_type":"Bearer","expires_in":300}`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.parseTokenResponse(p.opts.Now(), http.StatusOK, http.Header{}, strings.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyIDToken(b *testing.B) {
	for _, kid := range []string{"rsa1", "ec1", "ed1"} {
		b.Run(kid, func(b *testing.B) {
			op := newTestOPInMemory(b)
			p, err := New(context.Background(), op.options())
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			raw := secretString(sign(b, kid, op.idClaims(), nil))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.verifyIDToken(context.Background(), raw, "n-0S6"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchProvider(b *testing.B) *Provider {
	p, err := New(context.Background(), Options{
		Type: TypeCustom, TokenEndpoint: "http://127.0.0.1:1/token", Now: fixedNow,
		Custom: CustomOptions{
			RefreshRequest: RequestTemplate{Body: map[string]string{"refreshToken": RefreshTokenPlaceholder}},
			Mapping:        ResponseMapping{AccessToken: "access_token"},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p
}
