package session

import (
	"testing/synctest"

	"github.com/tokenrelay/tokenrelay/internal/idptest"

	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// TestDecodeTokenSegments: tokens stored as binary segments come back
// exactly, including segments longer than one encoding chunk (192 bytes),
// empty segments and the five segments of a JWE.
func TestDecodeTokenSegments(t *testing.T) {
	long := strings.Repeat("AbCd-_09", 100) // 800 chars: 600 bytes, several chunks
	tests := []struct {
		name string
		tok  string
	}{
		{"one short segment", "R7k2Pq9Xw3Lm8Nt4Vy1Za6Bc0De5Fg7Hj2Kl9Mn4Op4"},
		{"jwt", "eyJhbGciOiJSUzI1NiJ9." + long + ".c2lnbmF0dXJl"},
		{"exactly one chunk", strings.Repeat("abcd", 64)},
		{"one chunk and one byte", strings.Repeat("abcd", 64) + "AQ"},
		{"jwe with an empty key segment", "eyJhbGciOiJkaXIifQ..aXY." + long + ".dGFn"},
		{"text", "not base64 !"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e encoder
			e.token(secret.String(tc.tok))
			d := decoder{b: e.b}
			got := d.token()
			if err := d.done(); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got.Reveal() != tc.tok {
				t.Errorf("token() = %q, want %q", got.Reveal(), tc.tok)
			}
		})
	}
}

// TestDecodeRecordWithoutClaims: the request path's decoding gives the
// same record minus the claims.
func TestDecodeRecordWithoutClaims(t *testing.T) {
	rec := realisticRecord(t)
	b, err := encodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	full, err := decodeRecordClaims(b, true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(full, rec) {
		t.Errorf("decodeRecordClaims(true) = %+v, want %+v", full, rec)
	}
	lean, err := decodeRecordClaims(b, false)
	if err != nil {
		t.Fatal(err)
	}
	want := *rec
	want.Claims = nil
	if !reflect.DeepEqual(lean, &want) {
		t.Errorf("decodeRecordClaims(false) = %+v, want %+v", lean, &want)
	}
}

// TestClaimsSurviveTheTokenPath: AccessToken reads records without their
// claims; a refresh it triggers must still save them, and Load must still
// return them.
func TestClaimsSurviveTheTokenPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		m := newTestManager(t, NewMemoryStore(time.Now), time.Now, p, nil)
		at, rt, exp := p.Grant()
		rec := Record{AccessToken: at, RefreshToken: rt, AccessExpiry: exp, Subject: "ada", SID: "s1",
			Claims: map[string]any{"name": "Ada Lovelace", "email": "ada@example.com"}}
		tk, err := m.Create(ctx, rec, ViaLogin)
		if err != nil {
			t.Fatal(err)
		}

		if got, err := m.AccessToken(ctx, TokenRequest{Ticket: tk}); err != nil || got.Value != at {
			t.Fatalf("fresh AccessToken = %v, %v; want %v", got.Value, err, at)
		}
		time.Sleep(10 * time.Minute) // expired: the next call refreshes
		got, err := m.AccessToken(ctx, TokenRequest{Ticket: tk})
		if err != nil || got.Value == at {
			t.Fatalf("AccessToken after expiry = %v, %v; want a new token", got.Value, err)
		}
		if calls, reused := p.Stats(); calls != 1 || reused != 0 {
			t.Errorf("token endpoint calls, reuses = %d, %d; want 1, 0", calls, reused)
		}
		s, err := m.Load(ctx, tk)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(s.Record.Claims, rec.Claims) {
			t.Errorf("claims after a refresh = %v, want %v", s.Record.Claims, rec.Claims)
		}
		if s.Record.AccessToken != got.Value {
			t.Errorf("stored access token = %v, want the refreshed one", s.Record.AccessToken)
		}
	})
}
