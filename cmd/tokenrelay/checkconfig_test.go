package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestCheckConfigDiscover: check-config --discover reads the provider's
// discovery document and explains every conflict with it (exit 2); a
// document without conflicts passes; one that cannot be read is a runtime
// failure (exit 1); without --discover nothing is fetched.
func TestCheckConfigDiscover(t *testing.T) {
	var fetched int
	doc := map[string]any{
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic"},
	}
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched++
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		d := map[string]any{"issuer": srv.URL, "authorization_endpoint": srv.URL + "/auth", "token_endpoint": srv.URL + "/token", "jwks_uri": srv.URL + "/jwks"}
		for k, v := range doc {
			d[k] = v
		}
		_ = json.NewEncoder(w).Encode(d)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	path := writeFile(t, dir, "c.yaml", `
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
public_url: http://localhost:8080
provider: {issuer: "`+srv.URL+`", client_id: test, client_secret: s, dpop: true}
session: {secret: "0123456789abcdef0123456789abcdef"}
routes:
  - {path: /api/, upstream: "http://127.0.0.1:9"}
  - {path: /svc/, upstream: "http://127.0.0.1:9", token: client}
`)
	if code, stdout, _ := runCmd(t, nil, "check-config", "--config", path); code != 0 || stdout != "config OK\n" || fetched != 0 {
		t.Fatalf("without --discover: %d %q after %d fetches, want 0 \"config OK\" and none", code, stdout, fetched)
	}
	code, stdout, stderr := runCmd(t, nil, "check-config", "--discover", "--config", path)
	want := "the configuration conflicts with the discovery document of " + srv.URL + " (2 problems):\n" +
		"  provider.dpop: the provider does not support DPoP with ES256 (dpop_signing_alg_values_supported: none)\n" +
		"  routes[1].token: client needs the client_credentials grant, which the provider does not list (grant_types_supported: authorization_code, refresh_token)\n"
	if code != 2 || stdout != "" || stderr != want {
		t.Errorf("conflicts: %d, stdout %q, stderr:\n%s\nwant 2 and stderr:\n%s", code, stdout, stderr, want)
	}
	doc["grant_types_supported"] = append(doc["grant_types_supported"].([]string), "client_credentials")
	doc["dpop_signing_alg_values_supported"] = []string{"ES256"}
	if code, stdout, stderr := runCmd(t, nil, "check-config", "--discover", "--config", path); code != 0 || stdout != "config OK\n" {
		t.Errorf("no conflict: %d %q %q, want 0 \"config OK\"", code, stdout, stderr)
	}
	srv.Close()
	if code, _, stderr := runCmd(t, nil, "check-config", "--discover", "--config", path); code != 1 || stderr == "" {
		t.Errorf("provider unreachable: %d %q, want 1 and why", code, stderr)
	}
}

// TestCheckConfigOnlineConflicts: check-config --online reports, one a
// line, exactly the conflicts with the discovery document that --discover
// reports, fails for them (exit 1), and goes on checking the rest (here
// the key set, which this provider does not serve).
func TestCheckConfigOnlineConflicts(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": srv.URL, "authorization_endpoint": srv.URL + "/auth", "token_endpoint": srv.URL + "/token", "jwks_uri": srv.URL + "/jwks",
			"grant_types_supported": []string{"authorization_code", "refresh_token"},
		})
	}))
	t.Cleanup(srv.Close)
	path := writeFile(t, t.TempDir(), "c.yaml", `
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
public_url: http://localhost:8080
provider: {issuer: "`+srv.URL+`", client_id: test, client_secret: s}
session: {secret: "0123456789abcdef0123456789abcdef"}
routes:
  - {path: /api/, upstream: "http://127.0.0.1:9"}
  - {path: /svc/, upstream: "http://127.0.0.1:9", token: client}
  - {path: /x/, upstream: "http://127.0.0.1:9", token: exchange, resource: https://x.example}
`)
	_, _, discovered := runCmd(t, nil, "check-config", "--discover", "--config", path)
	var want []string
	for line := range strings.SplitSeq(strings.TrimSpace(discovered), "\n") {
		if p, ok := strings.CutPrefix(line, "  "); ok {
			want = append(want, p)
		}
	}
	if len(want) != 2 {
		t.Fatalf("--discover reported %d conflicts, want 2:\n%s", len(want), discovered)
	}
	code, out, _ := runCmd(t, nil, "check-config", "--online", "--config", path)
	var got []string
	for _, m := range regexp.MustCompile(`(?m)^conflicts +FAIL +(.*)$`).FindAllStringSubmatch(out, -1) {
		got = append(got, m[1])
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("--online conflicts:\n%s\nwant those of --discover:\n%s\nfull output:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), out)
	}
	t.Logf("check-config --online:\n%s", out)
	if code != 1 || !regexp.MustCompile(`(?m)^discovery +ok +`).MatchString(out) || !regexp.MustCompile(`(?m)^jwks +FAIL +`).MatchString(out) || !strings.Contains(out, "result: 3 checks failed") {
		t.Errorf("--online = exit %d, want 1, discovery ok, jwks failing, 3 failures:\n%s", code, out)
	}
}
