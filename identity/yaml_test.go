package identity

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestYAMLKeys pins the configuration keys of a route's identity and of
// the assertion as the documentation shows them, decoded strictly.
func TestYAMLKeys(t *testing.T) {
	decode := func(src string, v any) {
		t.Helper()
		dec := yaml.NewDecoder(strings.NewReader(src))
		dec.KnownFields(true)
		if err := dec.Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	var route Options
	decode("headers: {X-User: sub, X-User-Roles: realm_access.roles}\nid_token_header: X-Id-Token\nassertion: true\n", &route)
	wantRoute := Options{Headers: map[string]string{"X-User": "sub", "X-User-Roles": "realm_access.roles"}, IDTokenHeader: "X-Id-Token", Assertion: true}
	if !reflect.DeepEqual(route, wantRoute) {
		t.Errorf("route: %+v, want %+v", route, wantRoute)
	}
	var none Options
	decode("headers: {}\n", &none)
	if none.Headers == nil || len(newHeaderPlan(none).headers) != 0 {
		t.Errorf("headers: {} decoded to %#v: want an empty, non-nil map that sends nothing", none.Headers)
	}
	var a AssertionOptions
	decode("header: X-Assertion\nlifetime: 2m\nalgorithm: EdDSA\nkey_file: /k.pem\nrotation: 48h\npublish_ahead: 2h\n", &a)
	wantA := AssertionOptions{Header: "X-Assertion", Lifetime: 2 * time.Minute, Algorithm: "EdDSA", KeyFile: "/k.pem", Rotation: 48 * time.Hour, PublishAhead: 2 * time.Hour}
	if !reflect.DeepEqual(a, wantA) {
		t.Errorf("assertion: %+v, want %+v", a, wantA)
	}
}
