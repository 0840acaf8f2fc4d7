package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// acmeDeadline bounds obtaining a certificate from Pebble (about a second
// on an idle machine).
const acmeDeadline = 90 * time.Second

// repoRoot is the directory holding go.mod, found upward from the test's
// working directory (the package directory).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// pebbleBinary returns bin/pebble, installed by scripts/install-test-tools.sh.
// Missing, the test skips; with CI=true it fails, so CI cannot pass
// without running it.
func pebbleBinary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(repoRoot(t), "bin", "pebble")
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing and CI=true: run scripts/install-test-tools.sh", path)
		}
		t.Skipf("%s is missing: run scripts/install-test-tools.sh to run the ACME test against Pebble", path)
	}
	return path
}

// freePort returns a loopback port that was free a moment ago. Pebble
// must know tokenrelay's challenge ports before tokenrelay binds them, so
// they cannot be port 0.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// pebble is a running Pebble ACME server.
type pebble struct {
	dirURL    string // ACME directory
	mgmtURL   string // management API
	tlsRoots  *x509.CertPool
	tlsCAFile string // PEM that Pebble's HTTPS listeners chain to
}

// startPebble runs Pebble on free ports; it validates challenges by
// connecting to httpPort (HTTP-01) and tlsPort (TLS-ALPN-01) on the
// address the identifier resolves to.
func startPebble(t *testing.T, httpPort, tlsPort int) *pebble {
	t.Helper()
	bin := pebbleBinary(t)
	dir := t.TempDir()

	// Pebble's own HTTPS listeners get a certificate made here, so the
	// test needs nothing from the module cache.
	listenerCert := newTestCert(t, 100)
	certFile := writeFile(t, dir, "pebble.pem", string(listenerCert.certPEM))
	keyFile := writeFile(t, dir, "pebble.key", string(listenerCert.keyPEM))
	acmeAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mgmtAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg, err := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":                  acmeAddr,
		"managementListenAddress":        mgmtAddr,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := writeFile(t, dir, "pebble.json", string(cfg))

	out := &syncBuffer{}
	cmd := exec.Command(bin, "-config", cfgFile)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once
		"PEBBLE_WFE_NONCEREJECT=0", // no random bad-nonce errors
		"PEBBLE_AUTHZREUSE=0",      // every order validates afresh
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pebble: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // only the process this test started
		<-exited
		if t.Failed() {
			t.Logf("pebble output:\n%s", out)
		}
	})

	p := &pebble{
		dirURL:    "https://" + acmeAddr + "/dir",
		mgmtURL:   "https://" + mgmtAddr,
		tlsRoots:  x509.NewCertPool(),
		tlsCAFile: certFile,
	}
	p.tlsRoots.AddCert(listenerCert.cert)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.tlsRoots}}}
	deadline := time.After(testDeadline)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(p.dirURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-exited:
			t.Fatalf("pebble exited:\n%s", out)
		case <-deadline:
			t.Fatalf("pebble not answering %s within %s (last error %v)", p.dirURL, testDeadline, err)
		case <-tick.C:
		}
	}
}

// issuingRoots fetches the root that signs Pebble's certificates; it is
// new at every Pebble start.
func (p *pebble) issuingRoots(t *testing.T) *x509.CertPool {
	t.Helper()
	client := &http.Client{Timeout: testDeadline, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.tlsRoots}}}
	resp, err := client.Get(p.mgmtURL + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	pem, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /roots/0 = %d, %v", resp.StatusCode, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("/roots/0 holds no certificate: %q", pem)
	}
	return pool
}

// waitForCert handshakes with addr until a certificate for serverName
// verifies against roots, and returns it.
func waitForCert(t *testing.T, addr string, roots *x509.CertPool, serverName string) *x509.Certificate {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: serverName}
	deadline := time.After(acmeDeadline)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err == nil {
			leaf := conn.ConnectionState().PeerCertificates[0]
			conn.Close()
			return leaf
		}
		select {
		case <-deadline:
			t.Fatalf("no verified certificate for %s within %s (last error: %v)", serverName, acmeDeadline, err)
		case <-tick.C:
		}
	}
}

// TestACMEWithPebble obtains real certificates for localhost and 127.0.0.1 through
// tokenrelay's acme mode, once per challenge type, and makes a verified
// HTTPS request with them.
func TestACMEWithPebble(t *testing.T) {
	pebbleBinary(t) // skip early when absent
	tlsPort, httpPort := freePort(t), freePort(t)
	p := startPebble(t, httpPort, tlsPort)
	roots := p.issuingRoots(t)

	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			dir := t.TempDir()
			yaml := fmt.Sprintf(`
listen: 127.0.0.1:%d
admin_listen: 127.0.0.1:0
public_url: https://localhost:%d
provider: {issuer: "http://127.0.0.1:9", client_id: test}
routes: [{path: /, upstream: "http://127.0.0.1:9"}]
tls:
  mode: acme
  http_listen: 127.0.0.1:%d
  acme:
    domains: [localhost, 127.0.0.1]
    email: admin@example.com
    ca: %q
    ca_root_file: %s
    storage: %s
    challenges: [%s]
`, tlsPort, tlsPort, httpPort, p.dirURL, p.tlsCAFile, filepath.Join(dir, "acme"), challenge)
			path := writeFile(t, dir, "c.yaml", yaml)
			r := startServe(t, &cli{buildApp: newTestApp().build, noSignals: true}, path, "main", "admin", "http")
			mainAddr := r.addrs["main"]

			// Wait for the certificates: handshakes fail until certmagic has
			// them. A client sends no SNI for an IP address; certmagic then
			// picks the certificate by the address the client connected to.
			leaf := waitForCert(t, mainAddr, roots, "localhost")
			if !slices.Equal(leaf.DNSNames, []string{"localhost"}) || len(leaf.IPAddresses) != 0 {
				t.Errorf("localhost certificate names = %v %v, want [localhost] only", leaf.DNSNames, leaf.IPAddresses)
			}
			leaf = waitForCert(t, mainAddr, roots, "127.0.0.1")
			if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || len(leaf.DNSNames) != 0 {
				t.Errorf("127.0.0.1 certificate names = %v %v, want IP 127.0.0.1 only", leaf.DNSNames, leaf.IPAddresses)
			}

			// A verified HTTPS request reaches the app.
			client := &http.Client{Timeout: testDeadline, Transport: &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: roots},
				ForceAttemptHTTP2: true,
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, mainAddr)
				},
			}}
			url := fmt.Sprintf("https://localhost:%d/hello", tlsPort)
			resp, err := client.Get(url)
			if err != nil {
				t.Fatalf("GET %s: %v", url, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "hello" || resp.ProtoMajor != 2 {
				t.Errorf("GET %s = %d %s %q, want 200 HTTP/2 \"hello\"", url, resp.StatusCode, resp.Proto, body)
			}

			// The challenge was solved by the type configured, for real.
			served := false
			for line := range strings.SplitSeq(r.stderr.String(), "\n") {
				if strings.Contains(line, `"msg":"served key authentication`) &&
					strings.Contains(line, `"challenge":"`+challenge+`"`) &&
					strings.Contains(line, `"logger":"certmagic`) {
					served = true
				}
			}
			if !served {
				t.Errorf("no certmagic log line says it served the %s challenge", challenge)
			}
			if hasLine(r.stderr.String(), `"level":"ERROR"`) {
				t.Errorf("errors logged:\n%s", r.stderr)
			}

			// Plain HTTP redirects to https.
			noFollow := &http.Client{Timeout: testDeadline, CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			}}
			req, _ := http.NewRequest(http.MethodGet, "http://"+r.addrs["http"]+"/a/b?c=d", nil)
			req.Host = "localhost"
			resp, err = noFollow.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			wantLoc := fmt.Sprintf("https://localhost:%d/a/b?c=d", tlsPort)
			if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != wantLoc {
				t.Errorf("plain HTTP = %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), wantLoc)
			}

			r.cancel()
			if code := r.wait(t); code != 0 {
				t.Errorf("exit code = %d, want 0", code)
			}
		})
	}
}
