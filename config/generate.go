package config

import (
	"crypto/rand"
	"encoding/base64"

	"github.com/tokenrelay/tokenrelay/secret"
)

// secretEntropyBytes is how many random bytes GenerateSecret draws.
const secretEntropyBytes = 32

// GenerateSecret returns a new random server secret: 32 random bytes
// (256 bits) in unpadded base64url, 43 characters that pass Validate and
// survive YAML, environment variables and Kubernetes Secrets unquoted.
func GenerateSecret() secret.String {
	b := make([]byte, secretEntropyBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails; it crashes the program instead
	return secret.String(base64.RawURLEncoding.EncodeToString(b))
}
