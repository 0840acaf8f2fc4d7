package identity

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// The upstream verifier shown in docs/policy.md, verbatim between the
// markers; TestVerifierExample checks the two stay the same and that it
// works.

// docs:begin verifier
// requireUser lets a request through only with a valid assertion from
// tokenrelay, and passes the user's subject on in the request's context.
func requireUser(ctx context.Context, jwksURL string, next http.Handler) (http.Handler, error) {
	jwks, err := keyfunc.NewDefaultCtx(ctx, []string{jwksURL}) // refreshes in the background
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, err := jwt.Parse(r.Header.Get("X-Tokenrelay-Assertion"), jwks.Keyfunc,
			jwt.WithValidMethods([]string{"ES256", "EdDSA"}), jwt.WithExpirationRequired(),
			jwt.WithIssuer("https://app.example.com"), jwt.WithAudience("http://127.0.0.1:3000"))
		if err != nil {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		sub, _ := tok.Claims.GetSubject()
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, sub)))
	}), nil
}

type userKey struct{}

// docs:end verifier

// TestVerifierExample runs the documented upstream verifier against a key
// ring's JWKS over HTTP: a request with tokenrelay's assertion passes with
// its subject, one without, tampered or for another audience is refused.
// It also checks the documentation shows this very code.
func TestVerifierExample(t *testing.T) {
	checkDocsShowVerifier(t)

	c := newClock()
	c.Set(timeNow()) // keyfunc and jwt.Parse use the real clock here
	o := AssertionOptions{}
	ring := newRing(t, &MemoryKeyStore{}, c, o)
	jwksSrv := httptest.NewServer(ring)
	defer jwksSrv.Close()

	var gotSub string
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { gotSub, _ = r.Context().Value(userKey{}).(string) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := requireUser(ctx, jwksSrv.URL, app)
	if err != nil {
		t.Fatal(err)
	}
	good := sign(t, ring, c, o)
	other, _ := NewRoute(Options{Assertion: true}, "http://other:8080", NewSigner(ring, testIssuer, o))
	otherHdr := http.Header{}
	_ = other.Apply(ctx, otherHdr, User{Subject: "u-alice"}, "", "")
	tests := []struct {
		name, assertion string
		want            int
		sub             string
	}{
		{"valid", good, http.StatusOK, "u-alice"},
		{"missing", "", http.StatusForbidden, ""},
		{"tampered", tamper(t, good), http.StatusForbidden, ""},
		{"other audience", otherHdr.Get(DefaultAssertionHeader), http.StatusForbidden, ""},
	}
	for _, tt := range tests {
		gotSub = ""
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if tt.assertion != "" {
			req.Header.Set("X-Tokenrelay-Assertion", tt.assertion)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want || gotSub != tt.sub {
			t.Errorf("%s: status %d, subject %q; want %d, %q", tt.name, rec.Code, gotSub, tt.want, tt.sub)
		}
	}
}

// checkDocsShowVerifier compares the code between the markers above with
// the Go block that follows <!-- verifier --> in docs/policy.md and the
// README.
func checkDocsShowVerifier(t *testing.T) {
	t.Helper()
	src, err := os.ReadFile("verifier_example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, code, _ := strings.Cut(string(src), "// docs:begin verifier\n")
	code, _, _ = strings.Cut(code, "\n// docs:end verifier")
	for _, page := range []string{"../docs/policy.md", "../README.md"} {
		doc, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		_, block, ok := strings.Cut(string(doc), "<!-- verifier -->\n```go\n")
		block, _, _ = strings.Cut(block, "```")
		if !ok || !strings.Contains(block, strings.TrimSpace(code)) {
			t.Errorf("%s does not show the verifier of verifier_example_test.go verbatim after <!-- verifier -->", page)
		}
	}
}
