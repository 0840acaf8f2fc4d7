package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://app.example.com"
	testAudience = "http://127.0.0.1:3000"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// clock is a manual clock shared by a ring, a signer and the verifier.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func newRing(t *testing.T, store KeyStore, c *clock, o AssertionOptions) *KeyRing {
	t.Helper()
	r, err := NewKeyRing(context.Background(), KeyRingConfig{Options: o, Store: store, Secret: testSecret, Now: c.Now})
	if err != nil {
		t.Fatalf("NewKeyRing: %v", err)
	}
	return r
}

// sign returns an assertion for alice on the test audience.
func sign(t *testing.T, r *KeyRing, c *clock, o AssertionOptions) string {
	t.Helper()
	rt, err := NewRoute(Options{Assertion: true}, testAudience, NewSigner(r, testIssuer, o))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	u := User{Subject: "u-alice", Claims: decode(t, `{"email":"alice@example.com","groups":["staff","admins"]}`)}
	if err := rt.Apply(context.Background(), h, u, "", ""); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return h.Get(DefaultAssertionHeader)
}

// verify checks tok with a stock library (golang-jwt + keyfunc) against the
// JWKS document, at the clock's time.
func verify(jwks []byte, tok, audience string, c *clock) (jwt.MapClaims, error) {
	k, err := keyfunc.NewJWKSetJSON(jwks)
	if err != nil {
		return nil, err
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(tok, claims, k.Keyfunc,
		jwt.WithValidMethods([]string{"ES256", "EdDSA"}),
		jwt.WithIssuer(testIssuer), jwt.WithAudience(audience),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithTimeFunc(c.Now))
	return claims, err
}

// TestAssertionVerifies pins the assertion's contents and that a stock JWT
// library verifies it against the JWKS, and refuses it tampered with, for
// another audience, or expired.
func TestAssertionVerifies(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			c := newClock()
			o := AssertionOptions{Algorithm: alg}
			r := newRing(t, &MemoryKeyStore{}, c, o)
			tok := sign(t, r, c, o)
			jwks := r.JWKS(context.Background())

			claims, err := verify(jwks, tok, testAudience, c)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			want := map[string]any{
				"iss": testIssuer, "aud": testAudience, "sub": "u-alice",
				"iat": float64(c.Now().Unix()), "exp": float64(c.Now().Add(time.Minute).Unix()),
				"email": "alice@example.com", "groups": []any{"staff", "admins"},
			}
			if got, _ := json.Marshal(claims); string(got) != mustJSON(t, want) {
				t.Errorf("claims = %s, want %s", got, mustJSON(t, want))
			}
			var doc struct {
				Keys []map[string]string `json:"keys"`
			}
			_ = json.Unmarshal(jwks, &doc)
			parsed, _, _ := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
			if len(doc.Keys) != 1 || parsed.Header["kid"] != doc.Keys[0]["kid"] || doc.Keys[0]["alg"] != alg || doc.Keys[0]["use"] != "sig" {
				t.Errorf("JWKS %s does not describe the signing key (token header %v)", jwks, parsed.Header)
			}
			if _, ok := doc.Keys[0]["d"]; ok {
				t.Fatal("the JWKS publishes the private key")
			}

			if _, err := verify(jwks, tamper(t, tok), testAudience, c); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
				t.Errorf("tampered assertion: err = %v, want %v", err, jwt.ErrTokenSignatureInvalid)
			}
			if _, err := verify(jwks, tok, "http://other-upstream", c); !errors.Is(err, jwt.ErrTokenInvalidAudience) {
				t.Errorf("other audience: err = %v, want %v", err, jwt.ErrTokenInvalidAudience)
			}
			c.Set(c.Now().Add(time.Minute))
			if _, err := verify(jwks, tok, testAudience, c); !errors.Is(err, jwt.ErrTokenExpired) {
				t.Errorf("after its lifetime: err = %v, want %v", err, jwt.ErrTokenExpired)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tamper changes the payload's sub and keeps the signature.
func tamper(t *testing.T, tok string) string {
	parts := strings.Split(tok, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	payload = []byte(strings.Replace(string(payload), "u-alice", "u-admin", 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// TestThumbprint pins the kid to RFC 7638 with the Ed25519 example of RFC
// 8037, Appendix A.3.
func TestThumbprint(t *testing.T) {
	pub, _ := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	seed, _ := base64.RawURLEncoding.DecodeString("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
	priv := ed25519.NewKeyFromSeed(seed)
	if !slices.Equal([]byte(priv.Public().(ed25519.PublicKey)), pub) {
		t.Fatal("RFC 8037 key pair does not match")
	}
	k, err := newSigningKey(priv, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; k.id != want {
		t.Errorf("kid = %s, want %s", k.id, want)
	}
}

// TestRotation pins key rotation with a clock: the next key is published
// PublishAhead before it signs, the previous one stays published (and its
// assertions verify) until twice the lifetime after the switch, and two
// replicas sharing a store rotate once and agree on every key.
func TestRotation(t *testing.T) {
	c := newClock()
	start := c.Now()
	o := AssertionOptions{Rotation: 24 * time.Hour, PublishAhead: time.Hour, Lifetime: time.Minute}
	store := &MemoryKeyStore{}
	r1 := newRing(t, store, c, o)
	r2 := newRing(t, store, c, o) // a second replica, same store
	ctx := context.Background()
	kids := func(r *KeyRing) []string {
		var doc struct {
			Keys []struct {
				KID string `json:"kid"`
			} `json:"keys"`
		}
		_ = json.Unmarshal(r.JWKS(ctx), &doc)
		var out []string
		for _, k := range doc.Keys {
			out = append(out, k.KID)
		}
		return out
	}
	kidOf := func(tok string) string {
		p, _, _ := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
		return p.Header["kid"].(string)
	}
	first := kids(r1)
	if len(first) != 1 || !slices.Equal(kids(r2), first) {
		t.Fatalf("at start: JWKS %v and %v, want one shared key", first, kids(r2))
	}
	oldTok := sign(t, r2, c, o)

	// An hour before the period ends, the next key is published but does
	// not sign yet.
	c.Set(start.Add(23 * time.Hour))
	both := kids(r1)
	if len(both) != 2 || both[0] != first[0] {
		t.Fatalf("at rotation: JWKS %v, want the old key then a new one", both)
	}
	if got := kids(r2); !slices.Equal(got, both) {
		t.Fatalf("second replica: JWKS %v, want %v (one rotation, shared)", got, both)
	}
	if got := kidOf(sign(t, r1, c, o)); got != first[0] {
		t.Errorf("before the switch: signed with %s, want the old key %s", got, first[0])
	}

	// At the switch both replicas sign with the new key; an assertion
	// signed just before verifies until it expires.
	c.Set(start.Add(24*time.Hour - time.Second))
	lastOld := sign(t, r2, c, o)
	c.Set(start.Add(24 * time.Hour))
	for _, r := range []*KeyRing{r1, r2} {
		if got := kidOf(sign(t, r, c, o)); got != both[1] {
			t.Errorf("after the switch: signed with %s, want the new key %s", got, both[1])
		}
	}
	c.Set(start.Add(24*time.Hour + 58*time.Second))
	if _, err := verify(r1.JWKS(ctx), lastOld, testAudience, c); err != nil {
		t.Errorf("the old key's last assertion within its lifetime: %v", err)
	}
	if _, err := verify(r2.JWKS(ctx), sign(t, r1, c, o), testAudience, c); err != nil {
		t.Errorf("a new key's assertion: %v", err)
	}
	if _, err := verify(r1.JWKS(ctx), oldTok, testAudience, c); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("the day-old assertion: %v, want expired", err)
	}

	// Twice the lifetime after the switch, the old key leaves the JWKS.
	c.Set(start.Add(24*time.Hour + 2*time.Minute - time.Second))
	if got := kids(r1); !slices.Equal(got, both) {
		t.Errorf("just before retirement: JWKS %v, want %v", got, both)
	}
	c.Set(start.Add(24*time.Hour + 2*time.Minute))
	if got := kids(r2); !slices.Equal(got, both[1:]) {
		t.Errorf("after retirement: JWKS %v, want only %v", got, both[1:])
	}
	if _, err := verify(r2.JWKS(ctx), lastOld, testAudience, c); !errors.Is(err, jwt.ErrTokenUnverifiable) {
		t.Errorf("an old-key assertion after retirement: %v, want unverifiable", err)
	}

	// The next rotation stores a third key and drops the retired one.
	c.Set(start.Add(47 * time.Hour))
	if got := kids(r1); len(got) != 2 || got[0] != both[1] {
		t.Errorf("second rotation: JWKS %v, want %s and a new key", got, both[1])
	}
	blob, version, _ := store.LoadKeys(ctx, DefaultKeyName)
	if version != 3 {
		t.Errorf("store version %d, want 3 (created, rotated twice)", version)
	}
	if strings.Contains(string(blob), "pkcs8") {
		t.Error("the stored key ring is not sealed")
	}
}

// TestStaleRingPublishesAhead pins that a ring nobody used for longer than
// a period still publishes its next key PublishAhead before it signs.
func TestStaleRingPublishesAhead(t *testing.T) {
	c := newClock()
	o := AssertionOptions{}
	r := newRing(t, &MemoryKeyStore{}, c, o)
	first := sign(t, r, c, o)
	c.Set(c.Now().Add(30 * 24 * time.Hour))
	ctx := context.Background()
	if kid := mustKid(t, sign(t, r, c, o)); kid != mustKid(t, first) {
		t.Errorf("right after the new key was published it already signs (%s)", kid)
	}
	c.Set(c.Now().Add(DefaultPublishAhead))
	if kid := mustKid(t, sign(t, r, c, o)); kid == mustKid(t, first) {
		t.Error("PublishAhead later the old key still signs")
	}
	if n := strings.Count(string(r.JWKS(ctx)), `"kid"`); n != 2 {
		t.Errorf("JWKS has %d keys, want 2", n)
	}
}

func mustKid(t *testing.T, tok string) string {
	p, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Header["kid"].(string)
}

// failingStore fails every call after the first successful ones.
type failingStore struct {
	MemoryKeyStore
	mu    sync.Mutex
	fail  bool
	loads int
}

func (s *failingStore) LoadKeys(ctx context.Context, name string) ([]byte, uint64, error) {
	s.mu.Lock()
	s.loads++
	fail := s.fail
	s.mu.Unlock()
	if fail {
		return nil, 0, errors.New("store down")
	}
	return s.MemoryKeyStore.LoadKeys(ctx, name)
}

// TestStoreDownKeepsSigning pins that a store failure at rotation time
// does not stop assertions: the ring keeps its keys and tries again a
// minute later, not on every request.
func TestStoreDownKeepsSigning(t *testing.T) {
	c := newClock()
	o := AssertionOptions{}
	store := &failingStore{}
	r := newRing(t, store, c, o)
	kid := mustKid(t, sign(t, r, c, o))

	store.mu.Lock()
	store.fail, store.loads = true, 0
	store.mu.Unlock()
	c.Set(c.Now().Add(DefaultRotation))
	for range 5 {
		if got := mustKid(t, sign(t, r, c, o)); got != kid {
			t.Fatalf("signed with %s while the store is down, want the current key %s", got, kid)
		}
	}
	if store.loads != 1 {
		t.Errorf("store loads while down = %d, want 1 (then wait a minute)", store.loads)
	}
	store.mu.Lock()
	store.fail = false
	store.mu.Unlock()
	c.Set(c.Now().Add(time.Minute))
	if n := strings.Count(string(r.JWKS(context.Background())), `"kid"`); n != 2 {
		t.Errorf("after the store came back: %d keys published, want 2 (rotated)", n)
	}
}

// TestWrongSecret pins that a ring sealed under another secret is refused,
// not replaced (replicas with different secrets would otherwise fight), and
// opens with that secret among the previous ones.
func TestWrongSecret(t *testing.T) {
	store := &MemoryKeyStore{}
	c := newClock()
	first := newRing(t, store, c, AssertionOptions{})
	_, err := NewKeyRing(context.Background(), KeyRingConfig{Store: store, Secret: []byte("another secret, also 32 bytes long!"), Now: c.Now})
	if !errors.Is(err, errUnsealable) {
		t.Errorf("NewKeyRing with another secret: %v, want %v", err, errUnsealable)
	}
	// After a secret rotation the previous secret still opens the ring,
	// so the keys (and every replica's JWKS) stay the same.
	newSecret := []byte("another secret, also 32 bytes long!")
	r, err := NewKeyRing(context.Background(), KeyRingConfig{Store: store, Secret: newSecret, PreviousSecrets: [][]byte{testSecret}, Now: c.Now})
	if err != nil {
		t.Fatalf("NewKeyRing with the old secret as previous: %v", err)
	}
	if got, want := string(r.JWKS(context.Background())), string(first.JWKS(context.Background())); got != want {
		t.Errorf("after a secret rotation the JWKS is %s, want %s", got, want)
	}
	if _, err := NewKeyRing(context.Background(), KeyRingConfig{Store: store, Secret: []byte("short")}); err == nil {
		t.Error("a short secret was accepted")
	}
	if _, err := NewKeyRing(context.Background(), KeyRingConfig{Secret: testSecret}); err == nil {
		t.Error("generated keys without a store were accepted")
	}
}

// TestKeyFile pins the PEM forms a key file may take and that the
// algorithm, when given, must match the key.
// pemWriter writes PEM files into a test's temp dir and returns their paths.
func pemWriter(t *testing.T) func(name, typ string, der []byte) string {
	t.Helper()
	dir := t.TempDir()
	return func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

func TestKeyFile(t *testing.T) {
	write := pemWriter(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecPKCS8, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecSEC1, _ := x509.MarshalECPrivateKey(ec)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	edPKCS8, _ := x509.MarshalPKCS8PrivateKey(ed)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	edPath := write("ed.pem", "PRIVATE KEY", edPKCS8)
	tests := []struct {
		path, alg, err string
	}{
		{write("ec.pem", "PRIVATE KEY", ecPKCS8), "", ""},
		{write("ec-sec1.pem", "EC PRIVATE KEY", ecSEC1), "ES256", ""},
		{edPath, "EdDSA", ""},
		{edPath, "ES256", "the key is for EdDSA, not ES256"},
		{write("p384.pem", "PRIVATE KEY", p384DER), "", "P-256"},
		{write("cert.pem", "CERTIFICATE", []byte{1}), "", "is not a private key"},
	}
	for _, tt := range tests {
		o := AssertionOptions{KeyFile: tt.path, Algorithm: tt.alg}
		ps := o.Validate()
		c := newClock()
		r, err := NewKeyRing(context.Background(), KeyRingConfig{Options: o, Now: c.Now})
		if tt.err == "" {
			if err != nil || len(ps) != 0 {
				t.Errorf("%s: NewKeyRing: %v, Validate: %v", tt.path, err, ps)
				continue
			}
			if _, err := verify(r.JWKS(context.Background()), sign(t, r, c, o), testAudience, c); err != nil {
				t.Errorf("%s: %v", tt.path, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) || len(ps) != 1 || ps[0].Path != "key_file" {
			t.Errorf("%s: NewKeyRing error %v, Validate %v, want %q", tt.path, err, ps, tt.err)
		}
	}
}

// TestPreviousKeyFile pins the rotation of a key file: with the old key as
// previous_key_file (its private key or its public key), the JWKS lists
// both, the new key signs, and an assertion the old key signed still
// verifies; without it, that assertion fails.
func TestPreviousKeyFile(t *testing.T) {
	write := pemWriter(t)
	oldKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	oldDER, _ := x509.MarshalPKCS8PrivateKey(oldKey)
	oldPub, _ := x509.MarshalPKIXPublicKey(oldKey.Public())
	_, newKey, _ := ed25519.GenerateKey(rand.Reader)
	newDER, _ := x509.MarshalPKCS8PrivateKey(newKey)
	oldFile, oldPubFile := write("old.pem", "PRIVATE KEY", oldDER), write("old.pub.pem", "PUBLIC KEY", oldPub)
	newFile := write("new.pem", "PRIVATE KEY", newDER)

	c := newClock()
	oldOpts := AssertionOptions{KeyFile: oldFile}
	oldRing, err := NewKeyRing(context.Background(), KeyRingConfig{Options: oldOpts, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	signedByOld := sign(t, oldRing, c, oldOpts)

	for _, prev := range []string{oldFile, oldPubFile} {
		o := AssertionOptions{KeyFile: newFile, PreviousKeyFile: prev}
		if ps := o.Validate(); len(ps) != 0 {
			t.Fatalf("Validate(previous %s) = %v", prev, ps)
		}
		r, err := NewKeyRing(context.Background(), KeyRingConfig{Options: o, Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		jwks := r.JWKS(context.Background())
		if n := strings.Count(string(jwks), `"kid"`); n != 2 {
			t.Errorf("previous %s: JWKS lists %d keys, want 2: %s", prev, n, jwks)
		}
		if _, err := verify(jwks, signedByOld, testAudience, c); err != nil {
			t.Errorf("previous %s: an assertion of the old key: %v", prev, err)
		}
		fresh := sign(t, r, c, o)
		if _, err := verify(jwks, fresh, testAudience, c); err != nil || mustKid(t, fresh) == mustKid(t, signedByOld) {
			t.Errorf("previous %s: a new assertion (kid %s): %v; want it signed by the new key", prev, mustKid(t, fresh), err)
		}
	}
	alone, err := NewKeyRing(context.Background(), KeyRingConfig{Options: AssertionOptions{KeyFile: newFile}, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify(alone.JWKS(context.Background()), signedByOld, testAudience, c); err == nil {
		t.Error("without previous_key_file an assertion of the old key verifies")
	}
	if ps := (AssertionOptions{PreviousKeyFile: oldFile}).Validate(); len(ps) != 1 || ps[0].Path != "previous_key_file" {
		t.Errorf("previous_key_file without key_file: Validate = %v, want one problem at previous_key_file", ps)
	}
}

// TestAssertionCache pins that one session's assertion is reused for half
// its lifetime, and never for another subject.
func TestAssertionCache(t *testing.T) {
	c := newClock()
	o := AssertionOptions{}
	r := newRing(t, &MemoryKeyStore{}, c, o)
	rt, _ := NewRoute(Options{Assertion: true}, testAudience, NewSigner(r, testIssuer, o))
	get := func(sub, key string) string {
		h := http.Header{}
		if err := rt.Apply(context.Background(), h, User{Subject: sub}, "", key); err != nil {
			t.Fatal(err)
		}
		return h.Get(DefaultAssertionHeader)
	}
	first := get("alice", "s1")
	c.Set(c.Now().Add(29 * time.Second))
	if get("alice", "s1") != first {
		t.Error("within half the lifetime: a new assertion, want the cached one")
	}
	if get("bob", "s1") == first {
		t.Error("another subject under the same key got alice's assertion")
	}
	if get("alice", "") == first {
		t.Error("without a cache key: the cached assertion, want a new one")
	}
	c.Set(c.Now().Add(time.Second))
	if get("alice", "s1") == first {
		t.Error("after half the lifetime: the cached assertion, want a new one")
	}
}

// TestJWKSHandler pins the JWKS endpoint's answer.
func TestJWKSHandler(t *testing.T) {
	c := newClock()
	r := newRing(t, &MemoryKeyStore{}, c, AssertionOptions{})
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.auth/jwks.json", nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" ||
		rec.Header().Get("Cache-Control") != "public, max-age=300" || rec.Body.String() != string(r.JWKS(context.Background())) {
		t.Errorf("GET: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	rec = httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/.auth/jwks.json", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d %v", rec.Code, rec.Header())
	}
}

// timeNow is the real clock, for tests that hand tokens to code that reads
// it (keyfunc, jwt.Parse without WithTimeFunc).
func timeNow() time.Time { return time.Now() }

// TestStoreLostKeepsKeys pins that a replica whose stored ring vanished (a
// flushed Redis) stores the keys it holds again at its next look, rather
// than new ones, so assertions already out still verify and a replica
// started afterwards signs with the same key.
func TestStoreLostKeepsKeys(t *testing.T) {
	c := newClock()
	o := AssertionOptions{}
	store := &MemoryKeyStore{}
	r1 := newRing(t, store, c, o)
	tok := sign(t, r1, c, o)
	ctx := context.Background()
	store.mu.Lock()
	store.entries = nil
	store.mu.Unlock()

	c.Set(c.Now().Add(reloadInterval))
	_ = r1.JWKS(ctx)
	r2 := newRing(t, store, c, o)
	if got, want := string(r2.JWKS(ctx)), string(r1.JWKS(ctx)); got != want {
		t.Errorf("a replica started after the loss publishes %s, want the surviving keys %s", got, want)
	}
	if mustKid(t, sign(t, r2, c, o)) != mustKid(t, tok) {
		t.Error("the new replica signs with another key")
	}
}

// TestReloadAdoptsStoredKeys pins that between rotations a replica looks at
// the store every reloadInterval and adopts the ring there, so replicas
// that diverged (one recreated the ring while another held old keys)
// agree again within the JWKS cache lifetime.
func TestReloadAdoptsStoredKeys(t *testing.T) {
	c := newClock()
	o := AssertionOptions{}
	store := &MemoryKeyStore{}
	r1 := newRing(t, store, c, o)
	ctx := context.Background()
	store.mu.Lock()
	store.entries = nil
	store.mu.Unlock()
	r2 := newRing(t, store, c, o) // recreates the ring with a new key
	if string(r1.JWKS(ctx)) == string(r2.JWKS(ctx)) {
		t.Fatal("setup: the replicas should have diverged")
	}
	c.Set(c.Now().Add(reloadInterval - time.Second))
	if string(r1.JWKS(ctx)) == string(r2.JWKS(ctx)) {
		t.Error("adopted before reloadInterval: the test does not pin the interval")
	}
	c.Set(c.Now().Add(time.Second))
	if got, want := string(r1.JWKS(ctx)), string(r2.JWKS(ctx)); got != want {
		t.Errorf("after reloadInterval the first replica publishes %s, want the stored %s", got, want)
	}
}
