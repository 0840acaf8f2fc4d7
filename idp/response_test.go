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

func TestRefreshErrors(t *testing.T) {
	jsonCT := map[string]string{"Content-Type": "application/json"}
	tests := []struct {
		name   string
		custom bool
		status int
		header map[string]string
		body   string

		wantCode      string
		wantDead      bool
		wantTemporary bool
		wantRejected  bool // errors.Is ErrClientRejected: the client, not the token
		wantUnknown   bool // OutcomeUnknown: the provider said yes to something unreadable
		wantRetry     time.Duration
		wantField     string // a *FieldError for this field inside
		deadStatuses  []int  // provider.custom.dead_statuses, when set
	}{
		{name: "invalid_grant", status: 400, header: jsonCT, body: `{"error":"invalid_grant","error_description":"token reused"}`, wantCode: "invalid_grant", wantDead: true},
		{name: "invalid_client", status: 401, header: jsonCT, body: `{"error":"invalid_client"}`, wantCode: "invalid_client", wantRejected: true},
		{name: "unauthorized_client", status: 400, header: jsonCT, body: `{"error":"unauthorized_client"}`, wantCode: "unauthorized_client", wantRejected: true},
		{name: "oidc ignores dead_statuses", status: 401, header: jsonCT, body: `{"error":"invalid_client"}`, deadStatuses: []int{400, 401, 403}, wantCode: "invalid_client", wantRejected: true},
		{name: "503", status: 503, body: `<html>down</html>`, wantTemporary: true},
		{name: "temporarily_unavailable", status: 400, header: jsonCT, body: `{"error":"temporarily_unavailable"}`, wantCode: "temporarily_unavailable", wantTemporary: true},
		{name: "429 with Retry-After seconds", status: 429, header: map[string]string{"Retry-After": "30"}, body: `{}`, wantTemporary: true, wantRetry: 30 * time.Second},
		{
			name: "503 with Retry-After date", status: 503,
			header:        map[string]string{"Retry-After": testNow.Add(90 * time.Second).Format(http.TimeFormat)},
			wantTemporary: true, wantRetry: 90 * time.Second,
		},
		{name: "200 HTML", status: 200, header: map[string]string{"Content-Type": "text/html"}, body: `<!doctype html><p>login</p>`, wantTemporary: true, wantUnknown: true},
		{name: "200 not an object", status: 200, body: `["access_token"]`, wantTemporary: true, wantUnknown: true},
		{name: "200 trailing garbage", status: 200, body: `{"access_token":"a"} x`, wantTemporary: true, wantUnknown: true},
		{name: "200 oversized", status: 200, body: `{"access_token":"` + strings.Repeat("a", 2000) + `"}`, wantTemporary: true, wantUnknown: true},
		{name: "200 error object", status: 200, body: `{"error":"invalid_grant"}`, wantCode: "invalid_grant", wantDead: true},
		{name: "200 without access token", status: 200, body: `{"token_type":"Bearer"}`, wantTemporary: true, wantUnknown: true, wantField: "access_token"},
		{name: "200 access token a number", status: 200, body: `{"access_token":12}`, wantTemporary: true, wantUnknown: true, wantField: "access_token"},
		{name: "400 not JSON", status: 400, body: `bad request`, wantRejected: true},
		{name: "oidc 401 without code is not dead", status: 401, body: `{}`, wantRejected: true},
		{name: "custom 401 dead", custom: true, status: 401, body: `{"message":"Unauthorized"}`, wantDead: true},
		{name: "custom 403 HTML dead", custom: true, status: 403, body: `<html>no</html>`, wantDead: true},
		{name: "custom 500 temporary", custom: true, status: 500, body: `{"message":"oops"}`, wantTemporary: true},
		{name: "custom error field dead", custom: true, status: 422, body: `{"code":"ERROR_CODE_ACCESS_DENIED","message":"expired"}`, wantDead: true},
		{name: "custom error field in a 200", custom: true, status: 200, body: `{"payload":{"reason":"revoked"}}`, wantDead: true},
		{name: "custom other error field value", custom: true, status: 422, body: `{"code":"ERROR_FATAL"}`, wantRejected: true},
		{name: "custom 404: a wrong endpoint", custom: true, status: 404, body: `not found`, wantRejected: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op := newTestOP(t)
			op.set(func(op *testOP) { op.token = answer(tt.status, tt.header, tt.body) })
			var p *Provider
			if tt.custom {
				p = customProvider(t, func(o *Options) {
					o.TokenEndpoint = op.url + "/token"
					o.HTTPClient = op.client
					o.Custom.DeadErrorField = "code"
					o.Custom.DeadErrorValues = []string{"ERROR_CODE_ACCESS_DENIED"}
				})
				if tt.name == "custom error field in a 200" {
					p.opts.Custom.DeadErrorField = "payload.reason"
					p.opts.Custom.DeadErrorValues = []string{"revoked"}
				}
			} else {
				p = op.provider(func(o *Options) { o.MaxResponseBytes = 1000 })
				// Validate refuses dead statuses for oidc; set anyway, the
				// refresh path must still ignore them.
				p.opts.Custom.DeadStatuses = tt.deadStatuses
			}
			tok, err := p.Refresh(context.Background(), "rt")
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("Refresh() = %v, %v; want a *TokenError", tok, err)
			}
			if te.Status != tt.status {
				t.Errorf("Status = %d, want %d", te.Status, tt.status)
			}
			if te.Code != tt.wantCode {
				t.Errorf("Code = %q, want %q", te.Code, tt.wantCode)
			}
			if te.Dead != tt.wantDead || errors.Is(err, ErrInvalidGrant) != tt.wantDead {
				t.Errorf("Dead = %v, errors.Is(ErrInvalidGrant) = %v; want %v", te.Dead, errors.Is(err, ErrInvalidGrant), tt.wantDead)
			}
			if got := te.Temporary(); got != tt.wantTemporary {
				t.Errorf("Temporary() = %v, want %v (err %v)", got, tt.wantTemporary, err)
			}
			if got := errors.Is(err, ErrClientRejected); got != tt.wantRejected || te.ClientRejected() != tt.wantRejected {
				t.Errorf("errors.Is(ErrClientRejected) = %v, want %v", got, tt.wantRejected)
			}
			if !te.Sent {
				t.Errorf("Sent = false for an answered request")
			}
			if got := te.OutcomeUnknown(); got != tt.wantUnknown {
				t.Errorf("OutcomeUnknown() = %v, want %v", got, tt.wantUnknown)
			}
			if te.RetryAfter != tt.wantRetry {
				t.Errorf("RetryAfter = %v, want %v", te.RetryAfter, tt.wantRetry)
			}
			var fe *FieldError
			if gotField := errors.As(err, &fe); gotField != (tt.wantField != "") || (gotField && fe.Field != tt.wantField) {
				t.Errorf("FieldError = %v, want field %q", fe, tt.wantField)
			}
		})
	}
}

func TestTokenMapping(t *testing.T) {
	jwtAccess := unsignedJWT(t, jwt.MapClaims{"sub": "jwt-user", "exp": testNow.Add(20 * time.Minute).Unix()})
	jwtMinute := unsignedJWT(t, jwt.MapClaims{"sub": "jwt-user", "exp": testNow.Add(time.Minute).Unix()})
	tests := []struct {
		name    string
		mapping ResponseMapping
		body    string

		wantAccess, wantRefresh, wantID string
		wantExpiry, wantRefreshExpiry   time.Duration // from testNow; 0 = zero time
		wantSubject                     string
		wantField                       string // a *FieldError on this field
	}{
		{
			name:       "RFC names",
			body:       `{"access_token":"at","refresh_token":"rt","id_token":"it","token_type":"Bearer","expires_in":3600,"refresh_expires_in":"1800"}`,
			wantAccess: "at", wantRefresh: "rt", wantID: "it", wantExpiry: time.Hour, wantRefreshExpiry: 30 * time.Minute,
		},
		{
			name:       "Xano flat",
			mapping:    ResponseMapping{AccessToken: "accessToken", RefreshToken: "refreshToken", Subject: "user.id"},
			body:       `{"accessToken":"at","refreshToken":"rt","user":{"id":1234,"name":"Ann"}}`,
			wantAccess: "at", wantRefresh: "rt", wantExpiry: 5 * time.Minute, wantSubject: "1234",
		},
		{
			name:       "nested paths",
			mapping:    ResponseMapping{AccessToken: "data.auth.accessToken", RefreshToken: "data.auth.refresh", ExpiresIn: "data.auth.ttl", Subject: "data.user.uuid"},
			body:       `{"data":{"auth":{"accessToken":"at","refresh":"rt","ttl":"120"},"user":{"uuid":"u-1"}}}`,
			wantAccess: "at", wantRefresh: "rt", wantExpiry: 2 * time.Minute, wantSubject: "u-1",
		},
		{
			name:       "missing refresh token is fine",
			body:       `{"access_token":"at","expires_in":60}`,
			wantAccess: "at", wantExpiry: time.Minute,
		},
		{
			name:       "null fields count as absent",
			body:       `{"access_token":"at","refresh_token":null,"expires_in":null}`,
			wantAccess: "at", wantExpiry: 5 * time.Minute,
		},
		{
			name:       "JWT exp when no expires_in",
			body:       `{"access_token":"` + jwtAccess + `"}`,
			wantAccess: jwtAccess, wantExpiry: 20 * time.Minute,
		},
		{
			name:       "expires_in earlier than the JWT exp",
			body:       `{"access_token":"` + jwtAccess + `","expires_in":90}`,
			wantAccess: jwtAccess, wantExpiry: 90 * time.Second,
		},
		{
			name:       "JWT exp earlier than expires_in",
			body:       `{"access_token":"` + jwtAccess + `","expires_in":3600}`,
			wantAccess: jwtAccess, wantExpiry: 20 * time.Minute,
		},
		{
			name:       "JWT exp in whole seconds, before start + expires_in",
			body:       `{"access_token":"` + jwtMinute + `","expires_in":60.9}`,
			wantAccess: jwtMinute, wantExpiry: time.Minute,
		},
		{
			name:       "zero expires_in falls through",
			body:       `{"access_token":"opaque","expires_in":0}`,
			wantAccess: "opaque", wantExpiry: 5 * time.Minute,
		},
		{
			name:       "fractional expires_in",
			body:       `{"access_token":"at","expires_in":1.5}`,
			wantAccess: "at", wantExpiry: 1500 * time.Millisecond,
		},
		{
			name:       "absurd expires_in is clamped",
			body:       `{"access_token":"at","expires_in":1e300}`,
			wantAccess: "at", wantExpiry: maxSeconds * time.Second,
		},
		{name: "nested path through a string", mapping: ResponseMapping{AccessToken: "data.token"}, body: `{"data":"x"}`, wantField: "data.token"},
		{name: "access token object", body: `{"access_token":{"v":"x"}}`, wantField: "access_token"},
		{name: "refresh token number", body: `{"access_token":"at","refresh_token":5}`, wantField: "refresh_token"},
		{name: "id token array", body: `{"access_token":"at","id_token":["x"]}`, wantField: "id_token"},
		{name: "expires_in boolean", body: `{"access_token":"at","expires_in":true}`, wantField: "expires_in"},
		{name: "expires_in words", body: `{"access_token":"at","expires_in":"one hour"}`, wantField: "expires_in"},
		{name: "expires_in NaN string", body: `{"access_token":"at","expires_in":"NaN"}`, wantField: "expires_in"},
		{name: "token_type number", body: `{"access_token":"at","token_type":1}`, wantField: "token_type"},
		{name: "subject object", mapping: ResponseMapping{Subject: "user"}, body: `{"access_token":"at","user":{}}`, wantField: "user"},
		{name: "empty access token", body: `{"access_token":""}`, wantField: "access_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := customProvider(t, func(o *Options) {
				// The RFC 6749 names, unless the case maps its own.
				o.Custom.Mapping = tt.mapping
				o.Custom.Mapping.AccessToken = cmp.Or(tt.mapping.AccessToken, "access_token")
			})
			tok, err := p.parseTokenResponse(p.opts.Now(), http.StatusOK, http.Header{}, strings.NewReader(tt.body))
			if tt.wantField != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tt.wantField {
					t.Fatalf("parse error = %v, want a FieldError on %q", err, tt.wantField)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse error = %v", err)
			}
			if tok.AccessToken.Reveal() != tt.wantAccess || tok.RefreshToken.Reveal() != tt.wantRefresh || tok.IDToken.Reveal() != tt.wantID {
				t.Errorf("tokens = %q %q %q, want %q %q %q", tok.AccessToken.Reveal(), tok.RefreshToken.Reveal(), tok.IDToken.Reveal(), tt.wantAccess, tt.wantRefresh, tt.wantID)
			}
			if want := lifetimeEnd(testNow, tt.wantExpiry); !tok.Expiry.Equal(want) {
				t.Errorf("Expiry = %v, want %v", tok.Expiry, want)
			}
			var wantRefreshExpiry time.Time
			if tt.wantRefreshExpiry != 0 {
				wantRefreshExpiry = testNow.Add(tt.wantRefreshExpiry)
			}
			if !tok.RefreshExpiry.Equal(wantRefreshExpiry) {
				t.Errorf("RefreshExpiry = %v, want %v", tok.RefreshExpiry, wantRefreshExpiry)
			}
			if tok.subject != tt.wantSubject {
				t.Errorf("subject = %q, want %q", tok.subject, tt.wantSubject)
			}
		})
	}
}

func TestParseHugeBody(t *testing.T) {
	p := customProvider(t, func(o *Options) { o.MaxResponseBytes = 64 << 10 })
	// Far larger than the cap: the reader must stop at the cap.
	r := &countingReader{left: 64 << 20}
	_, err := p.parseTokenResponse(p.opts.Now(), http.StatusOK, http.Header{}, r)
	var te *TokenError
	if !errors.As(err, &te) || !errors.Is(err, errTooLarge) || !te.Temporary() {
		t.Fatalf("parse error = %v, want a temporary *TokenError wrapping errTooLarge", err)
	}
	if max := int64(64<<10) + 1; r.read > max+32<<10 {
		t.Errorf("read %d bytes of a huge body, want about %d", r.read, max)
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{"120", 2 * time.Minute},
		{"99999999999999999", maxSeconds * time.Second},
		{testNow.Add(time.Minute).Format(http.TimeFormat), time.Minute},
		{testNow.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, testNow); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// lifetimeEnd is the expiry tokenrelay gives a token that lives d from
// start: d less the skew.
func lifetimeEnd(start time.Time, d time.Duration) time.Time {
	return start.Add(d - expirySkew(d))
}

func TestExpirySkew(t *testing.T) {
	for _, tt := range []struct{ lifetime, want time.Duration }{
		{time.Hour, time.Second},
		{4 * time.Second, time.Second},
		{2 * time.Second, 500 * time.Millisecond},
		{0, 0},
		{-time.Minute, 0},
	} {
		if got := expirySkew(tt.lifetime); got != tt.want {
			t.Errorf("expirySkew(%v) = %v, want %v", tt.lifetime, got, tt.want)
		}
	}
}

// countingReader yields left bytes of 'a' and counts what was read.
type countingReader struct {
	left, read int64
}

func (r *countingReader) Read(b []byte) (int, error) {
	if r.left == 0 {
		return 0, errors.New("EOF never reached in this test")
	}
	n := min(int64(len(b)), r.left)
	for i := range n {
		b[i] = 'a'
	}
	r.left -= n
	r.read += n
	return int(n), nil
}

// unsignedJWT is a JWT with claims and a junk signature: good enough for
// unverified reads.
func unsignedJWT(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("test key, not verified"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
