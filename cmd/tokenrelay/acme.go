package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/certmagic"

	"github.com/tokenrelay/tokenrelay/config"
)

// acmeTLS obtains and renews certificates with certmagic for tls.mode acme.
// It has its own certificate cache (never certmagic's package default), so
// two servers in one process do not share state.
type acmeTLS struct {
	cache  *certmagic.Cache
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer
}

// newACME sets certmagic up. The challenge listeners are tokenrelay's own:
// mainAddr (TLS-ALPN-01, answered by the TLS config's GetCertificate) and
// httpAddr (HTTP-01, answered by HTTPHandler). certmagic tries to bind the
// same addresses, finds them taken and leaves the answering to us.
func newACME(cfg *config.TLSConfig, mainAddr, httpAddr net.Addr, logger *slog.Logger) (*acmeTLS, error) {
	a := &cfg.ACME
	var roots *x509.CertPool
	if a.CARootFile != "" {
		pem, err := os.ReadFile(a.CARootFile)
		if err != nil {
			return nil, fmt.Errorf("acme: ca_root_file: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("acme: ca_root_file %s: no PEM certificate in it", a.CARootFile)
		}
	}
	httpHost, httpPort, err := hostPort(httpAddr)
	if err != nil {
		return nil, err
	}
	_, tlsPort, err := hostPort(mainAddr)
	if err != nil {
		return nil, err
	}

	zl := newZapLogger(logger.Handler()).Named("certmagic")
	t := &acmeTLS{}
	t.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return t.magic, nil },
		Logger:           zl,
	})
	t.magic = certmagic.New(t.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: a.Storage},
		Logger:  zl,
	})
	t.issuer = certmagic.NewACMEIssuer(t.magic, certmagic.ACMEIssuer{
		CA:                      a.CA,
		Email:                   a.Email,
		Agreed:                  true,
		TrustedRoots:            roots,
		DisableHTTPChallenge:    !slices.Contains(a.Challenges, "http-01"),
		DisableTLSALPNChallenge: !slices.Contains(a.Challenges, "tls-alpn-01"),
		ListenHost:              httpHost,
		AltHTTPPort:             httpPort,
		AltTLSALPNPort:          tlsPort,
		Logger:                  zl,
	})
	t.magic.Issuers = []certmagic.Issuer{t.issuer}
	return t, nil
}

// hostPort splits a bound address; an unspecified host ("::" or
// "0.0.0.0") becomes "", which is how certmagic spells "every interface".
func hostPort(addr net.Addr) (string, int, error) {
	host, p, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "", 0, fmt.Errorf("acme: listener address %s: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("acme: listener address %s: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = ""
	}
	return host, port, nil
}

// Manage starts obtaining (or loading) and renewing the certificates in
// the background; ctx ends the renewals. Readiness does not wait for the
// certificates: a load balancer that routes by readiness would otherwise
// never send the HTTP-01 challenge that gets them.
func (t *acmeTLS) Manage(ctx context.Context, domains []string) error {
	if err := t.magic.ManageAsync(ctx, domains); err != nil {
		return fmt.Errorf("acme: %w", err)
	}
	return nil
}

// TLSConfig is the main listener's TLS configuration: certmagic's
// certificates, HTTP/2, and the acme-tls/1 protocol for TLS-ALPN-01.
func (t *acmeTLS) TLSConfig() *tls.Config {
	c := t.magic.TLSConfig()
	c.MinVersion = tls.VersionTLS12
	c.NextProtos = append([]string{"h2", "http/1.1"}, c.NextProtos...)
	return c
}

// HTTPHandler answers HTTP-01 challenges and redirects every other request
// for one of domains to https.
func (t *acmeTLS) HTTPHandler(domains []string, publicURL string, httpsPort int) http.Handler {
	return t.issuer.HTTPChallengeHandler(httpsRedirect(domains, publicURL, httpsPort))
}

// Stop ends certificate maintenance.
func (t *acmeTLS) Stop() { t.cache.Stop() }

// httpsRedirect sends plain-HTTP requests for one of domains to the same
// host over https; other hosts get 404, so the redirect never points at a
// name tokenrelay does not serve. The port is public_url's when it names
// one, none when public_url is https without a port (a load balancer maps
// 443) or the main listener is on 443, else the main listener's.
func httpsRedirect(domains []string, publicURL string, httpsPort int) http.Handler {
	port := ""
	if u, err := url.Parse(publicURL); publicURL != "" && err == nil && u.Scheme == "https" {
		port = u.Port()
	} else if httpsPort != 443 {
		port = strconv.Itoa(httpsPort)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		} else {
			host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		}
		if !slices.ContainsFunc(domains, func(d string) bool { return strings.EqualFold(d, host) }) {
			http.NotFound(w, r)
			return
		}
		target := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
		if port != "" {
			target.Host = net.JoinHostPort(host, port)
		} else if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			target.Host = "[" + host + "]"
		}
		w.Header().Set("Connection", "close")
		http.Redirect(w, r, target.String(), http.StatusPermanentRedirect)
	})
}
