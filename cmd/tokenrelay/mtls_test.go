package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
)

// TestProviderClientPresentsCertificate: with tls_client_auth the
// provider's HTTP client presents the configured certificate to a provider
// that requires and verifies one, and trusts the provider through ca_file;
// without it the provider refuses the connection.
func TestProviderClientPresentsCertificate(t *testing.T) {
	dir := t.TempDir()
	server := newTestCert(t, 1)
	clientCert, clientKey := newClientCert(t)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(clientCert)
	var seen []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srvCert, err := tls.X509KeyPair(server.certPEM, server.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	opts := idp.Options{
		CAFile:            writeFile(t, dir, "ca.pem", string(server.certPEM)),
		TLSClientCertFile: writeFile(t, dir, "client.pem", string(clientCert)),
		TLSClientKeyFile:  writeFile(t, dir, "client-key.pem", string(clientKey)),
	}
	client, err := providerHTTPClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(srv.URL + "/token")
	if err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	resp.Body.Close()
	if len(seen) != 1 || seen[0] != "tokenrelay-client" {
		t.Errorf("the provider saw client certificates %q, want [tokenrelay-client]", seen)
	}

	opts.TLSClientCertFile, opts.TLSClientKeyFile = "", ""
	without, err := providerHTTPClient(opts)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := without.Get(srv.URL + "/token"); err == nil {
		resp.Body.Close()
		t.Error("without a client certificate the provider accepted the connection")
	}
	opts.TLSClientCertFile, opts.TLSClientKeyFile = filepath.Join(dir, "missing.pem"), filepath.Join(dir, "missing-key.pem")
	if _, err := providerHTTPClient(opts); err == nil {
		t.Error("providerHTTPClient with missing certificate files: no error")
	}
}

// newClientCert is a self-signed client certificate (its own CA) and its
// key, PEM.
func newClientCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "tokenrelay-client"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// The provider's client closes an idle connection before a server with
// Node.js's default keep-alive timeout (5 s) would: a refresh written on a
// connection the server closes at the same moment would have an unknown
// outcome and cost the session. (Seen in CI: `idp: token endpoint: Post:
// EOF` against the e2e OpenID Provider, a Node.js server.)
func TestProviderClientClosesIdleConnectionsFirst(t *testing.T) {
	t.Parallel()
	const nodeKeepAlive = 5 * time.Second
	if providerIdleTimeout >= nodeKeepAlive {
		t.Fatalf("providerIdleTimeout %v, want below Node.js's keep-alive timeout %v", providerIdleTimeout, nodeKeepAlive)
	}
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.IdleTimeout = nodeKeepAlive
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	client, err := providerHTTPClient(idp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	post := func() {
		resp, err := client.Post(srv.URL, "application/x-www-form-urlencoded", strings.NewReader("grant_type=refresh_token"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	post()
	post()
	if n := conns.Load(); n != 1 {
		t.Fatalf("two calls in a row used %d connections, want 1 (kept alive)", n)
	}
	time.Sleep(providerIdleTimeout + 300*time.Millisecond) // the idle timeout itself is under test
	post()
	if n := conns.Load(); n != 2 {
		t.Fatalf("a call after %v idle used %d connections in all, want 2: the idle one must be closed by then", providerIdleTimeout, n)
	}
}
