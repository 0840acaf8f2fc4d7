package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestYAMLKeys pins the configuration keys of a route's policy as the
// documentation shows them, decoded strictly (unknown keys are errors).
func TestYAMLKeys(t *testing.T) {
	src := `
mode: replace
emails: [a@example.com]
email_domains: [example.com, "*.example.org"]
allow_unverified_email: true
groups: [admins]
groups_claim: realm_access.roles
subjects: [u-1]
claims: {department: [eng, ops], level: ["3"]}
expression: 'request.method == "GET"'
step_up:
  acr_values: ["urn:example:mfa"]
  amr_values: [mfa, hwk]
  max_auth_age: 10m
`
	var got RouteOptions
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := RouteOptions{Mode: ModeReplace, Options: Options{
		Emails: []string{"a@example.com"}, EmailDomains: []string{"example.com", "*.example.org"},
		AllowUnverifiedEmail: true, Groups: []string{"admins"}, GroupsClaim: "realm_access.roles",
		Subjects: []string{"u-1"}, Claims: map[string][]string{"department": {"eng", "ops"}, "level": {"3"}},
		Expression: `request.method == "GET"`,
		StepUp:     StepUpOptions{ACRValues: []string{"urn:example:mfa"}, AMRValues: []string{"mfa", "hwk"}, MaxAuthAge: 10 * time.Minute},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
	if ps := got.Validate(); len(ps) != 0 {
		t.Errorf("Validate: %v", ps)
	}
	dec = yaml.NewDecoder(strings.NewReader("group: [admins]\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err == nil {
		t.Error("a misspelt key decoded without error")
	}
}
