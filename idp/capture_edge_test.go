package idp

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestCaptureTypedErrors: every answer Capture cannot use yields an error a
// caller can classify with errors.Is/As (never only a message), and no
// tokens; odd but usable answers fall back as documented.
func TestCaptureTypedErrors(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 20000) + `1` + strings.Repeat(`}`, 20000)
	tests := []struct {
		name    string
		mapping *ResponseMapping // nil: the Xano mapping of customProvider
		body    string

		wantNotJSON  bool
		wantTooLarge bool
		wantField    string // a *FieldError on this field
	}{
		{name: "JSON string", body: `"accessToken"`, wantNotJSON: true},
		{name: "truncated", body: `{"accessToken":"at","user":{"id":`, wantNotJSON: true},
		{name: "two objects", body: `{"accessToken":"a"}{"accessToken":"b"}`, wantNotJSON: true},
		{name: "array holding a login", body: `[{"accessToken":"a"}]`, wantNotJSON: true},
		{name: "anti-XSSI prefix", body: ")]}',\n{\"accessToken\":\"a\"}", wantNotJSON: true},
		{name: "byte order mark", body: "\xef\xbb\xbf{\"accessToken\":\"a\"}", wantNotJSON: true},
		{name: "deeply nested token", body: `{"accessToken":"a","x":` + deep + `}`, wantNotJSON: true},
		{name: "HTML echoing a refresh token", body: `<p>"refreshToken": "r"</p>`, wantNotJSON: true},
		{name: "refresh token without access token", body: `{"refreshToken":"r","user":{"id":1}}`, wantField: "accessToken"},
		{name: "refresh token without access token, wrong type", body: `{"refreshToken":1}`, wantField: "refreshToken"},
		{name: "ID token without access token", body: `{"accessToken":"","id_token":"i"}`, wantField: "accessToken"},
		{name: "huge", body: `{"accessToken":"at","pad":"` + strings.Repeat("x", 8<<20) + `"}`, wantTooLarge: true},
		{name: "access token bool", body: `{"accessToken":true}`, wantField: "accessToken"},
		{name: "access token array", body: `{"accessToken":["at"]}`, wantField: "accessToken"},
		{name: "refresh token number", body: `{"accessToken":"at","refreshToken":7}`, wantField: "refreshToken"},
		{name: "expires-in object", body: `{"accessToken":"at","expiresIn":{"s":60}}`, wantField: "expiresIn"},
		{name: "expires-in not a number", body: `{"accessToken":"at","expiresIn":"soon"}`, wantField: "expiresIn"},
		{name: "expires-in infinite", body: `{"accessToken":"at","expiresIn":"+Inf"}`, wantField: "expiresIn"},
		{name: "subject bool", body: `{"accessToken":"at","user":{"id":true}}`, wantField: "user.id"},
		{name: "subject array", body: `{"accessToken":"at","user":{"id":[1]}}`, wantField: "user.id"},
		{name: "subject object", body: `{"accessToken":"at","user":{"id":{}}}`, wantField: "user.id"},
		{
			name:    "nested access token wrong type",
			mapping: &ResponseMapping{AccessToken: "data.auth.token"},
			body:    `{"data":{"auth":{"token":1.5}}}`, wantField: "data.auth.token",
		},
		{
			name:    "nested refresh token wrong type",
			mapping: &ResponseMapping{AccessToken: "data.token", RefreshToken: "data.refresh.value"},
			body:    `{"data":{"token":"at","refresh":{"value":false}}}`, wantField: "data.refresh.value",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := customProvider(t, func(o *Options) {
				o.MaxResponseBytes = 1 << 20
				if tt.mapping != nil {
					o.Custom.Mapping = *tt.mapping
				}
			})
			c, err := p.Capture([]byte(tt.body))
			tok, id, stripped, ok := unpackCapture(c)
			if err == nil || ok || tok != nil || id != nil || stripped != nil {
				t.Fatalf("Capture() = %v, %v, %d bytes, ok=%v, err=%v; want only an error", tok, id, len(stripped), ok, err)
			}
			if got := errors.Is(err, errNotJSON); got != tt.wantNotJSON {
				t.Errorf("errors.Is(err, errNotJSON) = %v, want %v (err %v)", got, tt.wantNotJSON, err)
			}
			if got := errors.Is(err, errTooLarge); got != tt.wantTooLarge {
				t.Errorf("errors.Is(err, errTooLarge) = %v, want %v (err %v)", got, tt.wantTooLarge, err)
			}
			var fe *FieldError
			if got := errors.As(err, &fe); got != (tt.wantField != "") || (got && fe.Field != tt.wantField) {
				t.Errorf("FieldError = %v, want field %q (err %v)", fe, tt.wantField, err)
			}
			if strings.Contains(err.Error(), `"at"`) {
				t.Errorf("error %q quotes a token value", err)
			}
		})
	}
}

// TestCaptureNoTokens: an answer that provably holds no token is reported
// as such (ok false, no error), so a capture route can relay it: what is
// not a JSON object and names no token field, and a JSON object with no
// token at a mapped path.
func TestCaptureNoTokens(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 20000) + `1` + strings.Repeat(`}`, 20000)
	for name, body := range map[string]string{
		"HTML login page":          `<!doctype html><title>Login</title>`,
		"empty":                    ``,
		"JSON null":                `null`,
		"JSON array of users":      `[{"id":1}]`,
		"deeply nested":            deep,
		"invalid UTF-8 around":     "\xff\xfe{}",
		"error object":             `{"message":"Invalid Credentials."}`,
		"null tokens":              `{"accessToken":null,"refreshToken":null,"id_token":null}`,
		"empty tokens":             `{"accessToken":"","refreshToken":""}`,
		"token name as a value":    `{"hint":"send accessToken"}`,
		"token name in plain text": `use your accessToken`,
	} {
		t.Run(name, func(t *testing.T) {
			p := customProvider(t, func(o *Options) { o.MaxResponseBytes = 1 << 20 })
			c, err := p.Capture([]byte(body))
			tok, id, stripped, ok := unpackCapture(c)
			if err != nil || ok || tok != nil || id != nil || stripped != nil {
				t.Errorf("Capture() = %v, %v, %d bytes, ok=%v, err=%v; want nothing", tok, id, len(stripped), ok, err)
			}
		})
	}
}

// TestCaptureFallbacks: answers whose optional fields are missing, of a
// shape the path cannot cross, or unusable as a lifetime still capture,
// with the documented fallbacks.
func TestCaptureFallbacks(t *testing.T) {
	badExp := unsignedJWT(t, jwt.MapClaims{"sub": "s", "exp": "tomorrow"})
	pastExp := unsignedJWT(t, jwt.MapClaims{"exp": testNow.Add(-time.Minute).Unix()})
	tests := []struct {
		name    string
		mapping *ResponseMapping
		body    string

		wantStripped string
		wantRefresh  string
		wantExpiry   time.Duration // from testNow
		wantSubject  string
	}{
		{
			name:         "no refresh token, no user",
			body:         `{"accessToken":"at"}`,
			wantStripped: `{}`, wantExpiry: 5 * time.Minute,
		},
		{
			name:         "user not an object: no subject",
			body:         `{"accessToken":"at","user":"ann"}`,
			wantStripped: `{"user":"ann"}`, wantExpiry: 5 * time.Minute,
		},
		{
			name:         "user an array: no subject",
			body:         `{"accessToken":"at","user":[{"id":1}]}`,
			wantStripped: `{"user":[{"id":1}]}`, wantExpiry: 5 * time.Minute,
		},
		{
			name:         "negative expires-in falls through to the lifetime",
			body:         `{"accessToken":"at","expiresIn":-5}`,
			wantStripped: `{"expiresIn":-5}`, wantExpiry: 5 * time.Minute,
		},
		{
			name:         "expires-in as a string of seconds",
			body:         `{"accessToken":"at","expiresIn":" 42 "}`,
			wantStripped: `{"expiresIn":" 42 "}`, wantExpiry: 42 * time.Second,
		},
		{
			name:         "JWT with an unreadable exp: configured lifetime, its sub kept",
			body:         `{"accessToken":"` + badExp + `","refreshToken":"rt"}`,
			wantStripped: `{}`, wantRefresh: "rt", wantExpiry: 5 * time.Minute, wantSubject: "s",
		},
		{
			name:         "JWT already expired: its exp is kept",
			body:         `{"accessToken":"` + pastExp + `"}`,
			wantStripped: `{}`, wantExpiry: -time.Minute,
		},
		{
			name:         "subject as a large number keeps its digits",
			body:         `{"accessToken":"at","user":{"id":12345678901234567890}}`,
			wantStripped: `{"user":{"id":12345678901234567890}}`, wantExpiry: 5 * time.Minute, wantSubject: "12345678901234567890",
		},
		{
			name:         "nested token path through a missing object",
			mapping:      &ResponseMapping{AccessToken: "token", RefreshToken: "auth.refresh.value", Subject: "profile.id"},
			body:         `{"token":"at","auth":null}`,
			wantStripped: `{"auth":null}`, wantExpiry: 5 * time.Minute,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := customProvider(t, func(o *Options) {
				if tt.mapping != nil {
					o.Custom.Mapping = *tt.mapping
				}
			})
			c, err := p.Capture([]byte(tt.body))
			tok, id, stripped, ok := unpackCapture(c)
			if err != nil || !ok {
				t.Fatalf("Capture() ok=%v err=%v, want a capture", ok, err)
			}
			if string(stripped) != tt.wantStripped {
				t.Errorf("stripped = %s, want %s", stripped, tt.wantStripped)
			}
			if got := tok.RefreshToken.Reveal(); got != tt.wantRefresh {
				t.Errorf("refresh token = %q, want %q", got, tt.wantRefresh)
			}
			if want := lifetimeEnd(testNow, tt.wantExpiry); !tok.Expiry.Equal(want) {
				t.Errorf("Expiry = %v, want %v", tok.Expiry, want)
			}
			if id.Subject != tt.wantSubject {
				t.Errorf("Subject = %q, want %q", id.Subject, tt.wantSubject)
			}
		})
	}
}

// TestRefreshAnswerHugeNonJSON: a refresh endpoint that answers 200 with
// megabytes of HTML yields a temporary *TokenError, not a dead session and
// not a panic.
func TestRefreshAnswerHugeNonJSON(t *testing.T) {
	p := customProvider(t, func(o *Options) { o.MaxResponseBytes = 1 << 20 })
	body := "<html>" + strings.Repeat("<p>maintenance</p>", 1<<18) // ~4.5 MiB
	_, err := p.parseTokenResponse(p.opts.Now(), http.StatusOK, http.Header{"Content-Type": {"text/html"}}, strings.NewReader(body))
	var te *TokenError
	if !errors.As(err, &te) || !errors.Is(err, errTooLarge) || te.Dead || !te.Temporary() {
		t.Fatalf("parse error = %v, want a temporary, not dead *TokenError wrapping errTooLarge", err)
	}
}
