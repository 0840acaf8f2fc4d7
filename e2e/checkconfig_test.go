package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// checkConfigOnline runs `tokenrelay check-config --online` on the
// configuration text yaml and returns its exit code and output.
func checkConfigOnline(t *testing.T, yaml string) (int, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins.tokenrelay, "check-config", "--online", "--config", path)
	cmd.Env = baseEnv()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("check-config: %v", err)
	return 0, ""
}

// TestCheckConfigOnline runs check-config --online against the real OP:
// every check passes and the summary fits one screen; with a wrong client
// secret the token endpoint check fails (invalid_client, not
// invalid_grant) and the exit code is 1; a route whose token needs a grant
// the OP does not list is a conflict with its discovery document (as
// --discover reports it) while the other checks still pass; a public_url
// whose redirect URI the OP has not registered fails the redirect_uri
// check (the OP refuses the authorization request); with a
// provider that is not there discovery fails, the checks that need it are
// skipped, and the exit code is 1.
func TestCheckConfigOnline(t *testing.T) {
	t.Parallel()
	// The made-up refresh token is answered invalid_grant on purpose.
	s := startStack(t, stackOptions{AllowInvalidGrant: true})
	raw, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	good := string(raw)

	code, out := checkConfigOnline(t, good)
	if code != 0 {
		t.Fatalf("check-config --online = exit %d, want 0:\n%s", code, out)
	}
	for _, want := range []string{
		`(?m)^config +ok +valid`,
		`(?m)^discovery +ok +` + regexp.QuoteMeta(s.OP.Issuer) + `/\.well-known/openid-configuration$`,
		`(?m)^conflicts +ok +none with the discovery document$`,
		`(?m)^jwks +ok +1 key at ` + regexp.QuoteMeta(s.OP.Issuer),
		`(?m)^token +ok +` + regexp.QuoteMeta(s.OP.Issuer) + `/token refused a made-up refresh token \(invalid_grant\)`,
		`(?m)^revocation +ok +` + regexp.QuoteMeta(s.OP.Issuer) + `/token/revocation$`,
		`(?m)^logout +ok +via ` + regexp.QuoteMeta(s.OP.Issuer) + `/session/end`,
		`(?m)^redirect_uri +ok +` + regexp.QuoteMeta(s.RelayURL) + `/\.auth/callback: the provider took the authorization request \(status 303, on to its login page\)$`,
		`(?m)^store +ok +memory`,
		`(?m)^routes +ok +/api/ → `,
		`(?m)^result: OK$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	t.Logf("check-config --online against the real OP:\n%s", out)
	if lines := strings.Count(out, "\n"); lines > 24 {
		t.Errorf("the summary has %d lines, want at most one screen (24):\n%s", lines, out)
	}
	if strings.Contains(out, opClientSecret) {
		t.Errorf("the output holds the client secret:\n%s", out)
	}

	wrongSecret := strings.Replace(good, fmt.Sprintf("client_secret: %q", opClientSecret), `client_secret: "not-the-secret"`, 1)
	if wrongSecret == good {
		t.Fatal("the generated configuration has no client_secret line to change")
	}
	code, out = checkConfigOnline(t, wrongSecret)
	if code != 1 || !regexp.MustCompile(`(?m)^token +FAIL +.*refused the client \(invalid_client, status 401\)`).MatchString(out) || !strings.Contains(out, "result: 1 check failed") {
		t.Errorf("with a wrong client secret: exit %d, want 1 and the token check failing with invalid_client:\n%s", code, out)
	}

	clientRoute := strings.Replace(good, "routes:\n", "routes:\n  - path: /svc/\n    upstream: \"http://127.0.0.1:9\"\n    token: client\n", 1)
	code, out = checkConfigOnline(t, clientRoute)
	if code != 1 || !strings.Contains(out, "result: 1 check failed") ||
		!regexp.MustCompile(`(?m)^conflicts +FAIL +routes\[0\]\.token: client needs the client_credentials grant, which the provider does not list`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^token +ok +`).MatchString(out) || !regexp.MustCompile(`(?m)^jwks +ok +`).MatchString(out) {
		t.Errorf("with a client-credentials route the OP does not offer: exit %d, want 1, that one conflict failing and the token and keys checks passing:\n%s", code, out)
	}

	otherHost := strings.ReplaceAll(good, fmt.Sprintf("public_url: %q", s.RelayURL), `public_url: "http://127.0.0.1:9"`)
	if otherHost == good {
		t.Fatal("the generated configuration has no public_url line to change")
	}
	code, out = checkConfigOnline(t, otherHost)
	if code != 1 || !strings.Contains(out, "result: 1 check failed") ||
		!regexp.MustCompile(`(?m)^redirect_uri +FAIL +http://127\.0\.0\.1:9/\.auth/callback: the provider refused the authorization request \(status 400\): is it registered for client `+opClientID+`\?$`).MatchString(out) {
		t.Errorf("with a redirect URI the OP does not know: exit %d, want 1 and the redirect_uri check failing with status 400:\n%s", code, out)
	}

	gone := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	code, out = checkConfigOnline(t, strings.ReplaceAll(good, s.OP.Issuer, gone))
	if code != 1 || !regexp.MustCompile(`(?m)^discovery +FAIL +`).MatchString(out) || !regexp.MustCompile(`(?m)^token +skipped`).MatchString(out) {
		t.Errorf("with no provider there: exit %d, want 1, discovery failing and the token check skipped:\n%s", code, out)
	}
}
