package dashboardtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tokenrelayBin is the binary whose /metrics the dashboard is checked
// against: $TOKENRELAY_BIN, or cmd/tokenrelay built by TestMain.
var (
	tokenrelayBin string
	buildErr      error
)

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "dashboardtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	tokenrelayBin, buildErr = binary(tmp)
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

func binary(tmp string) (string, error) {
	if bin := os.Getenv("TOKENRELAY_BIN"); bin != "" {
		return bin, nil
	}
	bin := filepath.Join(tmp, "tokenrelay")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/tokenrelay")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/tokenrelay: %v\n%s", err, out)
	}
	return bin, nil
}

// probeConfig runs tokenrelay with every component that registers metrics
// (session manager, proxy, auth endpoints) and nothing on the network: a
// plain OAuth2 provider with explicit endpoints needs no discovery, and the
// memory store no server.
const probeConfig = `
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
public_url: http://localhost:8080
log: {level: info, format: json}
provider:
  type: oauth2
  client_id: dashboardtest
  authorization_endpoint: http://127.0.0.1:9/authorize
  token_endpoint: http://127.0.0.1:9/token
  revocation_endpoint: http://127.0.0.1:9/revoke
  access_token_lifetime: 1h
routes:
  - {name: api, path: /api/, upstream: "http://127.0.0.1:9", auth: required}
`

// scrapeTokenrelay starts the real binary, sends one request to a route and
// one to the auth endpoints (request counters have series only once a
// request has been answered), and returns what its /metrics exports.
func scrapeTokenrelay(t *testing.T) Exported {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tokenrelay.yaml")
	if err := os.WriteFile(cfg, []byte(probeConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tokenrelayBin, "serve", "--config", cfg)
	// tokenrelay reads TOKENRELAY_* variables as configuration and rejects
	// unknown ones (this test's own TOKENRELAY_BIN among them).
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOKENRELAY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	addrs := listenAddrs(t, stderr, "main", "admin")

	for _, path := range []string{"/api/things", "/.auth/session"} {
		resp, err := http.Get("http://" + addrs["main"] + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	resp, err := http.Get("http://" + addrs["admin"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	exp, err := ParseExposition(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return exp
}

// listenAddrs reads tokenrelay's JSON log until it has said where each
// listener listens, then keeps draining it so the process never blocks on
// a full pipe. It fails the test if the process exits or is silent first.
func listenAddrs(t *testing.T, stderr io.Reader, names ...string) map[string]string {
	t.Helper()
	found := make(chan map[string]string, 1)
	var log strings.Builder
	logged := make(chan string, 1)
	go func() {
		addrs := map[string]string{}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			var line struct{ Msg, Listener, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addrs[line.Listener] = line.Addr
				if len(addrs) == len(names) {
					found <- addrs
					_, _ = io.Copy(io.Discard, stderr)
					return
				}
			}
		}
		logged <- log.String()
	}()
	select {
	case addrs := <-found:
		return addrs
	case out := <-logged:
		t.Fatalf("tokenrelay exited before listening:\n%s", out)
	case <-time.After(30 * time.Second):
		t.Fatal("tokenrelay did not report its listeners within 30s")
	}
	return nil
}
