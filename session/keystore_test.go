package session

import (
	"bytes"
	"context"
	"testing"

	"github.com/tokenrelay/tokenrelay/identity"
	"github.com/tokenrelay/tokenrelay/internal/redistest"
	"github.com/tokenrelay/tokenrelay/session/redisstore"
)

var _ identity.KeyStore = (*KeyStore)(nil)

// TestKeyStore pins the KeyStore on the memory store and on Redis: nothing
// stored reads as version 0; writes are compare-and-set on the version;
// and two key rings (two replicas) on one store sign with the same key,
// the second adopting the ring the first stored.
func TestKeyStore(t *testing.T) {
	ctx := context.Background()
	for name, newBackend := range map[string]func(t *testing.T) Backend{
		"memory": func(*testing.T) Backend { return NewMemoryStore(nil) },
		"redis": func(t *testing.T) Backend {
			c := newTestRedisClient(t, redisstore.Options{URL: "redis://" + redistest.Shared(t).Addr})
			return redisstore.New(c, redisstore.Options{KeyPrefix: redistest.KeyPrefix(t)}, nil)
		},
	} {
		t.Run(name, func(t *testing.T) {
			ks := NewKeyStore(newBackend(t))
			blob, v, err := ks.LoadKeys(ctx, "ring")
			if blob != nil || v != 0 || err != nil {
				t.Fatalf("LoadKeys of nothing = %q, %d, %v; want nil, 0, nil", blob, v, err)
			}
			if ok, err := ks.StoreKeys(ctx, "ring", 0, []byte("one")); !ok || err != nil {
				t.Fatalf("first StoreKeys = %v, %v; want true", ok, err)
			}
			if ok, err := ks.StoreKeys(ctx, "ring", 0, []byte("again")); ok || err != nil {
				t.Errorf("StoreKeys at version 0 over a stored blob = %v, %v; want false, nil", ok, err)
			}
			blob, v, err = ks.LoadKeys(ctx, "ring")
			if string(blob) != "one" || v == 0 || err != nil {
				t.Fatalf("LoadKeys = %q, %d, %v; want \"one\" at a version", blob, v, err)
			}
			if ok, err := ks.StoreKeys(ctx, "ring", v, []byte("two")); !ok || err != nil {
				t.Fatalf("StoreKeys at the read version = %v, %v; want true", ok, err)
			}
			if ok, err := ks.StoreKeys(ctx, "ring", v, []byte("stale")); ok || err != nil {
				t.Errorf("StoreKeys at a stale version = %v, %v; want false, nil", ok, err)
			}
			if blob, _, _ = ks.LoadKeys(ctx, "ring"); string(blob) != "two" {
				t.Errorf("LoadKeys = %q, want \"two\"", blob)
			}

			secret := bytes.Repeat([]byte("s"), 32)
			ring := func() *identity.KeyRing {
				r, err := identity.NewKeyRing(ctx, identity.KeyRingConfig{Store: ks, Secret: secret, Name: "assertion"})
				if err != nil {
					t.Fatalf("NewKeyRing: %v", err)
				}
				return r
			}
			a, b := ring(), ring()
			if ja, jb := a.JWKS(ctx), b.JWKS(ctx); !bytes.Equal(ja, jb) || bytes.Count(ja, []byte(`"kid"`)) != 1 {
				t.Errorf("two replicas publish %s and %s; want one and the same key", ja, jb)
			}
		})
	}
}
