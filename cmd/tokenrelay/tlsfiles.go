package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// defaultCertCheckInterval is how often tls.mode files looks at the
// certificate files for a change.
const defaultCertCheckInterval = 5 * time.Second

// certReloader serves the certificate of tls.cert_file/tls.key_file and
// picks up a new one when the files change (cert-manager renewals, a
// Kubernetes Secret update), without a restart. A handshake looks at the
// files at most once per interval; a new pair that does not load is logged
// and the previous certificate stays in use.
//
// GetCertificate is safe for concurrent use.
type certReloader struct {
	certFile, keyFile string
	interval          time.Duration
	now               func() time.Time
	logger            *slog.Logger

	mu       sync.Mutex // guards the fields below
	cert     *tls.Certificate
	stamps   [2]fileStamp // of certFile and keyFile when last looked at
	lastSeen time.Time    // when the files were last looked at
}

// fileStamp tells a changed file from an unchanged one without reading it.
// The inode catches a file replaced by rename (how Kubernetes updates a
// Secret volume) even within one tick of the file system's clock.
type fileStamp struct {
	modTime time.Time
	size    int64
	inode   uint64
}

func stampOf(name string) (fileStamp, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{modTime: fi.ModTime(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.inode = uint64(st.Ino)
	}
	return s, nil
}

// newCertReloader loads the pair once; failing that, there is nothing to
// serve and the error is returned.
func newCertReloader(certFile, keyFile string, interval time.Duration, now func() time.Time, logger *slog.Logger) (*certReloader, error) {
	if interval <= 0 {
		interval = defaultCertCheckInterval
	}
	if now == nil {
		now = time.Now
	}
	r := &certReloader{certFile: certFile, keyFile: keyFile, interval: interval, now: now, logger: logger}
	stamps, err := r.stampFiles()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s and %s: %w", certFile, keyFile, err)
	}
	r.cert, r.stamps, r.lastSeen = &cert, stamps, now()
	return r, nil
}

func (r *certReloader) stampFiles() ([2]fileStamp, error) {
	var stamps [2]fileStamp
	for i, name := range []string{r.certFile, r.keyFile} {
		s, err := stampOf(name)
		if err != nil {
			return stamps, fmt.Errorf("tls: %w", err)
		}
		stamps[i] = s
	}
	return stamps, nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.lastSeen) >= r.interval {
		r.lastSeen = now
		r.reloadIfChanged()
	}
	return r.cert, nil
}

// reloadIfChanged loads the pair again when either file changed. The new
// stamps are kept even when loading fails, so a bad pair is reported once,
// not at every check; the next change (the missing half of a pair written
// in two steps) is tried again.
func (r *certReloader) reloadIfChanged() {
	stamps, err := r.stampFiles()
	if err != nil {
		r.logger.Error("tls: cannot read the certificate files; keeping the current certificate", "error", err)
		return
	}
	if stamps == r.stamps {
		return
	}
	r.stamps = stamps
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.logger.Error("tls: new certificate files do not load; keeping the current certificate",
			"cert_file", r.certFile, "key_file", r.keyFile, "error", err)
		return
	}
	r.cert = &cert
	r.logger.Info("tls: certificate reloaded", "cert_file", r.certFile,
		"serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter)
}
