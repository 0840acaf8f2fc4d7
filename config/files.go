package config

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/tokenrelay/tokenrelay/idp"
	"github.com/tokenrelay/tokenrelay/secret"
)

// maxSecretFileBytes caps a secret file; a secret is a few hundred bytes.
const maxSecretFileBytes = 64 << 10

// readSecretFiles reads every *_file key into its secret field. A value and
// a file for the same secret is a problem: which one wins would be a guess.
func readSecretFiles(cfg *Config, readFile func(string) ([]byte, error)) Problems {
	r := secretReader{readFile: readFile}
	p, s, rd := &cfg.Provider, &cfg.Session, &cfg.Session.Redis
	r.one("provider.client_secret_file", p.ClientSecretFile, "provider.client_secret", &p.ClientSecret)
	r.one("session.secret_file", s.SecretFile, "session.secret", &s.Secret)
	r.one("session.redis.password_file", rd.PasswordFile, "session.redis.password", &rd.Password)
	r.one("session.redis.sentinel_password_file", rd.SentinelPassFile, "session.redis.sentinel_password", &rd.SentinelPassword)
	r.one("admin.token_file", cfg.Admin.TokenFile, "admin.token", &cfg.Admin.Token)
	r.previousSecrets(s)
	r.headerFiles(&p.Custom.RefreshRequest)
	if p.PrivateKeyFile != "" {
		if v, ok := r.read("provider.private_key_file", p.PrivateKeyFile); ok {
			p.PrivateKey = v
		}
	}
	return r.problems
}

// secretReader reads secret files, collecting the problems.
type secretReader struct {
	readFile func(string) ([]byte, error)
	problems Problems
}

// read returns the secret in file, the key at path naming it.
func (r *secretReader) read(path, file string) (secret.String, bool) {
	data, err := r.readFile(file)
	if err != nil {
		r.problems.add(path, "cannot read: %v", err)
		return "", false
	}
	s := trimNewline(string(data))
	if s == "" {
		r.problems.add(path, "file %s is empty", file)
		return "", false
	}
	return secret.String(s), true
}

// one reads file (the key at filePath) into value (the key at valuePath).
func (r *secretReader) one(filePath, file, valuePath string, value *secret.String) {
	if file == "" {
		return
	}
	if !value.IsZero() {
		r.problems.add(filePath, "cannot be used together with %s", valuePath)
		return
	}
	if s, ok := r.read(filePath, file); ok {
		*value = s
	}
}

// previousSecrets reads session.previous_secret_files.
func (r *secretReader) previousSecrets(s *SessionConfig) {
	if len(s.PreviousSecretFiles) == 0 {
		return
	}
	if len(s.PreviousSecrets) > 0 {
		r.problems.add("session.previous_secret_files", "cannot be used together with session.previous_secrets")
		return
	}
	for i, file := range s.PreviousSecretFiles {
		if v, ok := r.read(fmt.Sprintf("session.previous_secret_files[%d]", i), file); ok {
			s.PreviousSecrets = append(s.PreviousSecrets, v)
		}
	}
}

// headerFiles reads the custom refresh request's header_files into its
// secret headers.
func (r *secretReader) headerFiles(rt *idp.RequestTemplate) {
	for _, name := range sortedKeys(rt.HeaderFiles) {
		path := "provider.custom.refresh_request.header_files." + name
		if clash := headerIn(rt.Headers, name); clash != "" {
			r.problems.add(path, "header also set in provider.custom.refresh_request.headers.%s", clash)
			continue
		}
		if v, ok := r.read(path, rt.HeaderFiles[name]); ok {
			if rt.SecretHeaders == nil {
				rt.SecretHeaders = map[string]secret.String{}
			}
			rt.SecretHeaders[name] = v
		}
	}
}

// trimNewline removes one trailing newline ("\n" or "\r\n"), which editors
// and `echo` add and Kubernetes Secrets keep.
func trimNewline(s string) string {
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		return strings.TrimSuffix(t, "\r")
	}
	return s
}

// headerIn returns the key of headers naming the same HTTP header as name
// (header names are case-insensitive), or "".
func headerIn(headers map[string]string, name string) string {
	for k := range headers {
		if http.CanonicalHeaderKey(k) == http.CanonicalHeaderKey(name) {
			return k
		}
	}
	return ""
}
