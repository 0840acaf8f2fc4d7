package identity

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/problem"
	"github.com/tokenrelay/tokenrelay/secret"
)

func decode(t testing.TB, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

// TestStripRemovesEveryMappedName pins that a client cannot send any header
// some route maps, whichever route the request takes: default names, other
// routes' names, ID-token and assertion headers, in any case the client
// spelt them.
func TestStripRemovesEveryMappedName(t *testing.T) {
	routes := []Options{
		{}, // defaults
		{Headers: map[string]string{"x-auth-tenant": "tenant"}, IDTokenHeader: "X-Id-Token"},
		{Headers: map[string]string{}},
	}
	s := NewStripper(routes, AssertionOptions{})
	wantNames := []string{"X-Auth-Tenant", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username", "X-Forwarded-User", "X-Id-Token", "X-Tokenrelay-Assertion"}
	if got := s.Names(); !slices.Equal(got, wantNames) {
		t.Errorf("Names = %q, want %q", got, wantNames)
	}

	// A real server canonicalises what the client sent.
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		s.Strip(got)
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	for _, name := range []string{"x-forwarded-email", "X-FORWARDED-USER", "X-Forwarded-Groups", "x-auth-tenant", "x-id-token", "X-Tokenrelay-Assertion", "X-Forwarded-Preferred-Username", "X-Other"} {
		req.Header[name] = []string{"admin@evil.example"}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for name := range got {
		if strings.EqualFold(name, "X-Other") || name == "User-Agent" || name == "Accept-Encoding" {
			continue
		}
		t.Errorf("header %s survived Strip", name)
	}
	if got.Get("X-Other") != "admin@evil.example" {
		t.Errorf("X-Other = %q, want it kept", got.Get("X-Other"))
	}
}

// TestApplyHeaders pins the values a route sends: the default mapping, a
// custom one, arrays joined by commas, CR/LF neutralised, a missing claim
// sending nothing, an oversized value left out and reported.
func TestApplyHeaders(t *testing.T) {
	alice := User{Subject: "u-alice", Claims: decode(t, `{"email":"alice@example.com","groups":["staff","admins"],"preferred_username":"alice\r\nX-Injected: 1","tenant":"acme","realm_access":{"roles":["r1","r2"]},"level":3,"nested":{"a":1}}`)}
	huge := User{Subject: "u-bob", Claims: map[string]any{"groups": []any{strings.Repeat("g", MaxHeaderValue), "more"}, "email": "bob@example.com"}}
	tests := []struct {
		name    string
		opts    Options
		user    User
		idToken secret.String
		want    http.Header
		err     string
	}{
		{"defaults", Options{}, alice, "", http.Header{
			"X-Forwarded-User":               {"u-alice"},
			"X-Forwarded-Email":              {"alice@example.com"},
			"X-Forwarded-Groups":             {"staff,admins"},
			"X-Forwarded-Preferred-Username": {"alice  X-Injected: 1"},
		}, ""},
		{"custom mapping and ID token", Options{Headers: map[string]string{"x-tenant": "tenant", "X-Roles": "realm_access.roles", "X-Level": "level", "X-Nested": "nested", "X-Missing": "nope"}, IDTokenHeader: "x-id-token"},
			alice, "eyJ.id.token", http.Header{
				"X-Tenant":   {"acme"},
				"X-Roles":    {"r1,r2"},
				"X-Level":    {"3"},
				"X-Id-Token": {"eyJ.id.token"},
			}, ""},
		{"no headers", Options{Headers: map[string]string{}}, alice, "eyJ", http.Header{}, ""},
		{"oversized value left out", Options{}, huge, "", http.Header{
			"X-Forwarded-User":  {"u-bob"},
			"X-Forwarded-Email": {"bob@example.com"},
		}, "identity: X-Forwarded-Groups left out"},
	}
	for _, tt := range tests {
		rt, err := NewRoute(tt.opts, "http://upstream", nil)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		err = rt.Apply(context.Background(), h, tt.user, tt.idToken, "")
		if !equalHeaders(h, tt.want) {
			t.Errorf("%s: headers = %v, want %v", tt.name, h, tt.want)
		}
		var tooLarge *ValueTooLargeError
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: Apply error %v", tt.name, err)
		case tt.err != "" && (!errors.As(err, &tooLarge) || !strings.HasPrefix(err.Error(), tt.err)):
			t.Errorf("%s: Apply error %v, want %q", tt.name, err, tt.err)
		}
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestSanitize pins that no control character reaches a header value.
func TestSanitize(t *testing.T) {
	tests := map[string]string{
		"plain":               "plain",
		" padded ":            "padded",
		"a\r\nb":              "a  b",
		"nul\x00tab\tdel\x7f": "nul tab del",
		"é ü":                 "é ü",
	}
	for in, want := range tests {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestValidateOptions pins the problems check-config reports for a route's
// identity options and the assertion options.
func TestValidateOptions(t *testing.T) {
	o := Options{Headers: map[string]string{"X-Ok": "email", "Bad Name": "x", "authorization": "sub", "X-Empty": " "}, IDTokenHeader: "x-ok"}
	got := problemStrings(o.Validate())
	want := []string{
		`headers.Bad Name: "Bad Name" is not a valid header name`,
		"headers.X-Empty: name the claim this header carries",
		"headers.authorization: Authorization is reserved: choose another header",
		"id_token_header: already carries a claim (headers)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Options.Validate = %q, want %q", got, want)
	}
	if ps := (Options{}).Validate(); len(ps) != 0 {
		t.Errorf("zero Options: %v", ps)
	}
	if ps := (Options{IDTokenHeader: "X-Forwarded-Email"}).Validate(); len(ps) != 1 {
		t.Errorf("an ID token header over a default header: %v, want one problem", ps)
	}

	a := AssertionOptions{Header: "Cookie", Algorithm: "RS256", Lifetime: 2 * time.Hour, PublishAhead: -time.Second, KeyFile: "/nonexistent/key.pem"}
	got = problemStrings(a.Validate())
	want = []string{
		"header: Cookie is reserved: choose another header",
		`algorithm: unknown algorithm "RS256" (want ES256 or EdDSA)`,
		"lifetime: must be between 1s and 1h, not 2h0m0s",
		"publish_ahead: must not be negative",
		"key_file: open /nonexistent/key.pem: no such file or directory",
	}
	if !slices.Equal(got, want) {
		t.Errorf("AssertionOptions.Validate = %q, want %q", got, want)
	}
	if ps := (AssertionOptions{Rotation: time.Hour}).Validate(); len(ps) != 1 || ps[0].Path != "rotation" {
		t.Errorf("rotation shorter than publish_ahead: %v, want a rotation problem", ps)
	}
	if ps := (AssertionOptions{}).Validate(); len(ps) != 0 {
		t.Errorf("zero AssertionOptions: %v", ps)
	}
}

func problemStrings(ps []problem.Problem) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
