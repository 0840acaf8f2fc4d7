package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// testCert is a self-signed certificate for 127.0.0.1 and localhost.
type testCert struct {
	certPEM, keyPEM []byte
	cert            *x509.Certificate
}

func newTestCert(t *testing.T, serial int64) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "tokenrelay test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		cert:    cert,
	}
}

// replaceFile writes data next to path and renames it over path, as
// Kubernetes does when it updates a Secret volume.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// servedSerial makes a fresh TLS connection (no session resumption) that
// trusts roots, and returns the serial of the certificate the server sent.
func servedSerial(t *testing.T, addr string, roots *x509.CertPool) int64 {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: testDeadline}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestTLSFilesReload(t *testing.T) {
	dir := t.TempDir()
	certs := []testCert{newTestCert(t, 1), newTestCert(t, 2), newTestCert(t, 3)}
	roots := x509.NewCertPool()
	for _, c := range certs {
		roots.AddCert(c.cert)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	replaceFile(t, certFile, certs[0].certPEM)
	replaceFile(t, keyFile, certs[0].keyPEM)
	path := writeFile(t, dir, "c.yaml", minimalYAML+"tls: {mode: files, cert_file: "+certFile+", key_file: "+keyFile+"}\n")

	const interval = 5 * time.Second
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	ta := newTestApp()
	r := startServe(t, &cli{buildApp: ta.build, noSignals: true, certCheckInterval: interval, now: clock.Now}, path)
	addr := r.addrs["main"]

	if got := servedSerial(t, addr, roots); got != 1 {
		t.Fatalf("first certificate serial = %d, want 1", got)
	}

	// A new pair on disk is not looked at before the interval has passed.
	replaceFile(t, certFile, certs[1].certPEM)
	replaceFile(t, keyFile, certs[1].keyPEM)
	clock.Advance(interval - time.Nanosecond)
	if got := servedSerial(t, addr, roots); got != 1 {
		t.Errorf("serial before the check interval = %d, want 1", got)
	}
	clock.Advance(time.Nanosecond)
	waitFor(t, "the server to present serial 2", func() bool { return servedSerial(t, addr, roots) == 2 })

	// A pair that does not match keeps the current certificate, and says so.
	replaceFile(t, certFile, certs[2].certPEM) // key still that of serial 2
	clock.Advance(interval)
	if got := servedSerial(t, addr, roots); got != 2 {
		t.Errorf("serial after a mismatched pair = %d, want 2 (kept)", got)
	}
	if !hasLine(r.stderr.String(), `"msg":"tls: new certificate files do not load; keeping the current certificate"`) {
		t.Errorf("no error logged for the mismatched pair:\n%s", r.stderr)
	}
	// The missing half arrives: the pair loads.
	replaceFile(t, keyFile, certs[2].keyPEM)
	clock.Advance(interval)
	if got := servedSerial(t, addr, roots); got != 3 {
		t.Errorf("serial after the key arrived = %d, want 3", got)
	}

	// HTTPS requests work end to end.
	client := httpsClient(roots)
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Errorf("GET over TLS = %d %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}
}

// httpsClient trusts roots and speaks HTTP/2 when the server offers it.
func httpsClient(roots *x509.CertPool) *http.Client {
	return &http.Client{Timeout: testDeadline, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
		DisableKeepAlives: true,
	}}
}
