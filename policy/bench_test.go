package policy

import (
	"net/http"
	"testing"
	"time"
)

// BenchmarkEvaluate measures one request's policy check: a default policy
// with an email-domain allow-list, a route adding a group allow-list and a
// three-rule CEL expression over claims, method, path and a header, and a
// step-up acr check. It is the cost the proxy adds per request.
func BenchmarkEvaluate(b *testing.B) {
	def := Options{EmailDomains: []string{"example.com", "*.example.org"}}
	route := RouteOptions{Options: Options{
		Groups: []string{"staff", "admins"},
		Expression: `(request.method == "GET" || "admins" in claims.groups) &&
			request.path.startsWith("/api/") &&
			request.headers["x-tenant"] == claims.tenant`,
		StepUp: StepUpOptions{ACRValues: []string{"urn:mfa"}},
	}}
	p := mustNew(b, def, route, nil)
	u := User{Subject: "u-alice", Claims: decode(b, `{"sub":"u-alice","email":"alice@example.com","email_verified":true,"groups":["staff","admins"],"tenant":"acme","acr":"urn:mfa","name":"Alice","preferred_username":"alice"}`)}
	r := Request{Method: http.MethodPost, Path: "/api/orders", Header: http.Header{
		"Accept":          {"application/json"},
		"Content-Type":    {"application/json"},
		"User-Agent":      {"Mozilla/5.0"},
		"X-Csrf":          {"1"},
		"X-Tenant":        {"acme"},
		"Sec-Fetch-Mode":  {"cors"},
		"Sec-Fetch-Site":  {"same-origin"},
		"Accept-Language": {"en"},
	}}
	if d := p.Evaluate(u, r); d.Effect != Allow {
		b.Fatalf("Evaluate = %v %q %v, want allow", d.Effect, d.Rule, d.Err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Evaluate(u, r); d.Effect != Allow {
			b.Fatal(d.Rule)
		}
	}
}

// BenchmarkEvaluateAllowListsOnly is the same without an expression: the
// cost of the allow-lists and step-up alone.
func BenchmarkEvaluateAllowListsOnly(b *testing.B) {
	p := mustNew(b, Options{EmailDomains: []string{"example.com"}}, RouteOptions{Options: Options{
		Groups: []string{"staff", "admins"},
		StepUp: StepUpOptions{ACRValues: []string{"urn:mfa"}, MaxAuthAge: time.Hour},
	}}, nil)
	u := User{Subject: "u-alice", Claims: decode(b, `{"email":"alice@example.com","email_verified":true,"groups":["staff","admins"],"acr":"urn:mfa","auth_time":4102444800}`)}
	r := get("/api/orders")
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Evaluate(u, r); d.Effect != Allow {
			b.Fatal(d.Rule)
		}
	}
}
