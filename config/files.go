package config

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/tokenrelay/tokenrelay/secret"
)

// maxSecretFileBytes caps a secret file; a secret is a few hundred bytes.
const maxSecretFileBytes = 64 << 10

// readSecretFiles reads every *_file key into its secret field. A value and
// a file for the same secret is a problem: which one wins would be a guess.
func readSecretFiles(cfg *Config, readFile func(string) ([]byte, error)) Problems {
	var problems Problems
	read := func(path, file string) (secret.String, bool) {
		data, err := readFile(file)
		if err != nil {
			problems.add(path, "cannot read: %v", err)
			return "", false
		}
		s := trimNewline(string(data))
		if s == "" {
			problems.add(path, "file %s is empty", file)
			return "", false
		}
		return secret.String(s), true
	}
	one := func(filePath, file, valuePath string, value *secret.String) {
		if file == "" {
			return
		}
		if !value.IsZero() {
			problems.add(filePath, "cannot be used together with %s", valuePath)
			return
		}
		if s, ok := read(filePath, file); ok {
			*value = s
		}
	}

	p, s, r := &cfg.Provider, &cfg.Session, &cfg.Session.Redis
	one("provider.client_secret_file", p.ClientSecretFile, "provider.client_secret", &p.ClientSecret)
	one("session.secret_file", s.SecretFile, "session.secret", &s.Secret)
	one("session.redis.password_file", r.PasswordFile, "session.redis.password", &r.Password)
	one("session.redis.sentinel_password_file", r.SentinelPassFile, "session.redis.sentinel_password", &r.SentinelPassword)

	if len(s.PreviousSecretFiles) > 0 {
		if len(s.PreviousSecrets) > 0 {
			problems.add("session.previous_secret_files", "cannot be used together with session.previous_secrets")
		} else {
			for i, file := range s.PreviousSecretFiles {
				if v, ok := read(fmt.Sprintf("session.previous_secret_files[%d]", i), file); ok {
					s.PreviousSecrets = append(s.PreviousSecrets, v)
				}
			}
		}
	}

	rt := &p.Custom.RefreshRequest
	for _, name := range sortedKeys(rt.HeaderFiles) {
		path := "provider.custom.refresh_request.header_files." + name
		if clash := headerIn(rt.Headers, name); clash != "" {
			problems.add(path, "header also set in provider.custom.refresh_request.headers.%s", clash)
			continue
		}
		if v, ok := read(path, rt.HeaderFiles[name]); ok {
			if rt.SecretHeaders == nil {
				rt.SecretHeaders = map[string]secret.String{}
			}
			rt.SecretHeaders[name] = v
		}
	}
	return problems
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
