package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// realisticRecord is a session as an OIDC provider leaves it: a JWT access
// token of about 800 bytes, an ID token of about 900, an opaque 43-byte
// refresh token and four claims.
func realisticRecord(tb testing.TB) *Record {
	tb.Helper()
	now := testEpoch
	iss, sub, sid := "https://my-app.authgearapps.com", "4f3c2a1b-9d8e-4c7b-a6f5-0e1d2c3b4a59", "c2b6f8e0-5d4a-4f3e-9a1b-7c8d9e0f1a2b"
	at := fakeJWT(tb, 800, map[string]any{
		"iss": iss, "sub": sub, "aud": []string{"https://api.example.com"}, "client_id": "spa",
		"exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(), "auth_time": now.Unix(),
		"jti": "2b7f0a4c-8e1d-4b3a-9c6f-5d2e1a0b9c8d", "scope": "openid offline_access profile email", "sid": sid,
	})
	it := fakeJWT(tb, 900, map[string]any{
		"iss": iss, "sub": sub, "aud": "spa", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(),
		"auth_time": now.Unix(), "nonce": "Xk2_9vQp3LmN8rT4wYz1aB6cD0eF5gH7", "sid": sid, "at_hash": "fQ9pW3xY7zA1bC5dE8gH2j",
		"email": "ada.lovelace@example.com", "email_verified": true, "name": "Ada Lovelace",
	})
	return &Record{
		AccessToken:  secret.String(at),
		RefreshToken: secret.String("R7k2Pq9Xw3Lm8Nt4Vy1Za6Bc0De5Fg7Hj2Kl9Mn4Op4"),
		IDToken:      secret.String(it),
		AccessExpiry: now.Add(5 * time.Minute),
		Issuer:       iss,
		Subject:      sub,
		SID:          sid,
		Claims: map[string]any{
			"sub": sub, "name": "Ada Lovelace", "email": "ada.lovelace@example.com", "preferred_username": "ada",
		},
		CreatedAt: now,
	}
}

func mustSealer(tb testing.TB, current []byte, previous ...[]byte) *sealer {
	tb.Helper()
	s, err := newSealer(current, previous)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func equalRecords(t *testing.T, got, want *Record) {
	t.Helper()
	gc, _ := json.Marshal(got.Claims)
	wc, _ := json.Marshal(want.Claims)
	if got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken || got.IDToken != want.IDToken ||
		!got.AccessExpiry.Equal(want.AccessExpiry) || !got.RefreshExpiry.Equal(want.RefreshExpiry) ||
		got.Issuer != want.Issuer || got.Subject != want.Subject || got.SID != want.SID ||
		!got.CreatedAt.Equal(want.CreatedAt) || !bytes.Equal(gc, wc) {
		t.Errorf("record mismatch:\n got %+v claims %s\nwant %+v claims %s", *got, gc, *want, wc)
	}
}

func TestSealRoundTrip(t *testing.T) {
	s := mustSealer(t, testSecret)
	tk, _ := NewTicket()
	key := sessionKey(tk.ID)
	tests := []struct {
		name string
		rec  *Record
	}{
		{"realistic", realisticRecord(t)},
		{"empty", &Record{}},
		{"no claims, refresh expiry, big numbers", &Record{
			AccessToken: "a", RefreshExpiry: testEpoch.Add(time.Hour), CreatedAt: testEpoch.Add(time.Nanosecond),
			Claims: map[string]any{"n": json.Number("12345678901234567890"), "nested": map[string]any{"k": []any{"v", true}}},
		}},
	}
	big := realisticRecord(t)
	big.Claims["groups"] = []string{"engineering", "engineering-leads", "engineering-oncall", "platform", "platform-oncall",
		"security-reviewers", "release-managers", "engineering-managers", "staff-engineers", "platform-admins"}
	big.Claims["address"] = map[string]any{"street_address": "12 Analytical Engine Row", "locality": "London", "country": "GB"}
	tests = append(tests, struct {
		name string
		rec  *Record
	}{"large, deflated", big})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := s.sealRecord(tk, key, tt.rec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.openRecord(tk, key, data)
			if err != nil {
				t.Fatalf("openRecord: %v", err)
			}
			equalRecords(t, got, tt.rec)
			enc, err := encodeRecord(tt.rec)
			if err != nil {
				t.Fatal(err)
			}
			overhead := 1 + nonceSize + 1 + 16
			if deflated := len(data) < len(enc)+overhead; deflated != (len(enc) > compressAbove) {
				t.Errorf("encoded %d B, sealed %d B: deflated = %v, want %v", len(enc), len(data), deflated, len(enc) > compressAbove)
			}
			again, err := s.sealRecord(tk, key, tt.rec)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(again, data) {
				t.Errorf("two seals of one record are identical: nonce not random")
			}
		})
	}
}

func TestSealedRecordSize(t *testing.T) {
	s := mustSealer(t, testSecret)
	tk, _ := NewTicket()
	rec := realisticRecord(t)
	if len(rec.AccessToken) < 800 || len(rec.IDToken) < 900 || len(rec.RefreshToken) != 43 || len(rec.Claims) != 4 {
		t.Fatalf("fixture: access %d, id %d, refresh %d, claims %d", len(rec.AccessToken), len(rec.IDToken), len(rec.RefreshToken), len(rec.Claims))
	}
	data, err := s.sealRecord(tk, sessionKey(tk.ID), rec)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := encodeRecord(rec)
	t.Logf("tokens %d B, encoded %d B, sealed %d B", len(rec.AccessToken)+len(rec.IDToken)+len(rec.RefreshToken), len(enc), len(data))
	if len(data) > 2048 {
		t.Errorf("sealed record is %d bytes, want <= 2048", len(data))
	}
	if data[0] != sealVersion {
		t.Errorf("format byte = %d, want %d", data[0], sealVersion)
	}
}

func TestOpenRecordRejects(t *testing.T) {
	s := mustSealer(t, testSecret)
	tk, _ := NewTicket()
	key := sessionKey(tk.ID)
	data, err := s.sealRecord(tk, key, realisticRecord(t))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(data)
		b[i] ^= 0x01
		return b
	}
	other, _ := NewTicket()
	wrongKey := tk
	wrongKey.Key[0] ^= 0x80
	otherSecret := bytes.Repeat([]byte{7}, 32)
	n := len(data)
	tests := []struct {
		name string
		s    *sealer
		tk   Ticket
		key  string
		data []byte
	}{
		{"flip version byte", s, tk, key, flip(0)},
		{"flip first nonce byte", s, tk, key, flip(1)},
		{"flip last nonce byte", s, tk, key, flip(nonceSize)},
		{"flip first ciphertext byte", s, tk, key, flip(1 + nonceSize)},
		{"flip middle ciphertext byte", s, tk, key, flip(n / 2)},
		{"flip first tag byte", s, tk, key, flip(n - 16)},
		{"flip last tag byte", s, tk, key, flip(n - 1)},
		{"truncated tag", s, tk, key, data[:n-1]},
		{"only header", s, tk, key, data[:1+nonceSize]},
		{"one byte", s, tk, key, data[:1]},
		{"empty", s, tk, key, nil},
		{"extra byte", s, tk, key, append(bytes.Clone(data), 0)},
		{"wrong per-session key", s, wrongKey, key, data},
		{"other ticket", s, other, key, data},
		{"wrong server secret", mustSealer(t, otherSecret), tk, key, data},
		{"moved to another store key", s, tk, sessionKey(other.ID), data},
		{"lock key instead of session key", s, tk, lockKey(tk.ID), data},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := tt.s.openRecord(tt.tk, tt.key, tt.data)
			if !errors.Is(err, errOpen) || rec != nil {
				t.Errorf("openRecord = %v, %v; want nil, errOpen", rec, err)
			}
		})
	}
}

func TestSecretRotation(t *testing.T) {
	old := bytes.Repeat([]byte{1}, 32)
	cur := bytes.Repeat([]byte{2}, 48)
	tk, _ := NewTicket()
	key := sessionKey(tk.ID)
	rec := realisticRecord(t)
	sealedOld, err := mustSealer(t, old).sealRecord(tk, key, rec)
	if err != nil {
		t.Fatal(err)
	}
	rotated := mustSealer(t, cur, old)
	got, err := rotated.openRecord(tk, key, sealedOld)
	if err != nil {
		t.Fatalf("previous secret does not open an old record: %v", err)
	}
	equalRecords(t, got, rec)
	// New records are sealed with the current secret only.
	sealedNew, err := rotated.sealRecord(tk, key, rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mustSealer(t, old).openRecord(tk, key, sealedNew); !errors.Is(err, errOpen) {
		t.Errorf("old secret opened a record sealed after rotation: %v", err)
	}
	if _, err := mustSealer(t, cur).openRecord(tk, key, sealedOld); !errors.Is(err, errOpen) {
		t.Errorf("without the previous secret an old record opened: %v", err)
	}

	st := &LoginState{State: "s", Nonce: "n", Verifier: "v", ReturnTo: "/x", CreatedAt: testEpoch}
	oldState, err := mustSealer(t, old).sealLogin(st)
	if err != nil {
		t.Fatal(err)
	}
	gotSt, err := rotated.openLogin(oldState)
	if err != nil || !reflect.DeepEqual(*gotSt, *st) {
		t.Errorf("openLogin after rotation = %+v, %v; want %+v", gotSt, err, st)
	}
	if _, err := mustSealer(t, cur).openLogin(oldState); !errors.Is(err, errOpen) {
		t.Errorf("without the previous secret an old login state opened: %v", err)
	}
}

func TestNewSealerRejectsShortSecrets(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cur      []byte
		previous [][]byte
	}{
		{"empty", nil, nil},
		{"31 bytes", make([]byte, 31), nil},
		{"short previous", make([]byte, 32), [][]byte{make([]byte, 16)}},
	} {
		if _, err := newSealer(tc.cur, tc.previous); err == nil {
			t.Errorf("%s: newSealer accepted it", tc.name)
		}
	}
}

// TestSealLogin: a login state sealed for its cookie opens to exactly what
// was sealed, shows none of it, and fails closed on every single-bit
// change, on truncation and under a key that is not the login key (another
// secret, or the same secret's record key).
func TestSealLogin(t *testing.T) {
	s := mustSealer(t, testSecret)
	st := &LoginState{State: "state-1", Nonce: "nonce", Verifier: "verifier", ReturnTo: "/app?x=1", CreatedAt: testEpoch}
	data, err := s.sealLogin(st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.openLogin(data)
	if err != nil || !reflect.DeepEqual(*got, *st) {
		t.Fatalf("openLogin = %+v, %v; want %+v", got, err, st)
	}
	if bytes.Contains(data, []byte("verifier")) || bytes.Contains(data, []byte("/app")) || bytes.Contains(data, []byte("state-1")) {
		t.Errorf("sealed state shows its contents")
	}
	for i := range len(data) * 8 {
		bad := bytes.Clone(data)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := s.openLogin(bad); !errors.Is(err, errOpen) {
			t.Fatalf("bit %d flipped: openLogin = %v, want errOpen", i, err)
		}
	}
	for n := range len(data) {
		if _, err := s.openLogin(data[:n]); !errors.Is(err, errOpen) {
			t.Fatalf("truncated to %d bytes: openLogin = %v, want errOpen", n, err)
		}
	}
	other := bytes.Repeat([]byte{0x42}, 32)
	if _, err := mustSealer(t, other).openLogin(data); !errors.Is(err, errOpen) {
		t.Errorf("another secret opened the login state: %v", err)
	}
	// The record key of any ticket under the same secret is another key.
	tk := Ticket{}
	aead, err := s.sessionAEAD(tk, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.open(aead, loginAD, data); !errors.Is(err, errOpen) {
		t.Errorf("a record key opened the login state: %v", err)
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	good, err := encodeRecord(realisticRecord(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"overlong varint", bytes.Repeat([]byte{0x80}, 11)},
	} {
		if _, err := decodeRecord(tc.in); !errors.Is(err, errMalformed) {
			t.Errorf("%s: decodeRecord error = %v, want errMalformed", tc.name, err)
		}
	}
	// Claims that are not a JSON object.
	e := encoder{}
	for range 3 {
		e.str("")
	}
	e.time(time.Time{})
	e.time(time.Time{})
	for range 3 {
		e.str("")
	}
	e.bytes([]byte(`[1]`))
	e.time(time.Time{})
	if _, err := decodeRecord(e.b); !errors.Is(err, errMalformed) {
		t.Errorf("claims array: decodeRecord error = %v, want errMalformed", err)
	}
}

func FuzzOpenRecord(f *testing.F) {
	s, err := newSealer(testSecret, nil)
	if err != nil {
		f.Fatal(err)
	}
	tk := Ticket{ID: [16]byte{9}, Key: [16]byte{8}}
	key := sessionKey(tk.ID)
	rec := &Record{AccessToken: "at", RefreshToken: "rt", Subject: "sub", Claims: map[string]any{"a": "b"}, CreatedAt: testEpoch}
	sealed, err := s.sealRecord(tk, key, rec)
	if err != nil {
		f.Fatal(err)
	}
	enc, err := encodeRecord(rec)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Add(sealed[:len(sealed)-1])
	f.Add(enc)
	f.Add(s.compress(enc))
	f.Add(s.compress(bytes.Repeat(enc, 1+compressAbove/len(enc))))
	f.Add([]byte{})
	f.Add([]byte{sealVersion})
	f.Add([]byte{payloadFlate, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		// The sealed path: only genuine seals of rec open (the seed corpus
		// holds one; each fuzz worker seals its own with another nonce).
		if got, err := s.openRecord(tk, key, data); err == nil {
			if got.Subject != rec.Subject || got.AccessToken != rec.AccessToken || got.RefreshToken != rec.RefreshToken || !got.CreatedAt.Equal(rec.CreatedAt) {
				t.Fatalf("openRecord accepted forged data: %+v", got)
			}
		} else if !errors.Is(err, errOpen) {
			t.Fatalf("openRecord error = %v, want errOpen", err)
		}
		// The layers under the cipher, which a forgery cannot reach, must
		// still fail cleanly on any input.
		if out, err := s.decompress(data); err == nil && len(out) > maxPlaintext {
			t.Fatalf("decompress returned %d bytes", len(out))
		}
		if r, err := decodeRecord(data); err == nil {
			again, err := encodeRecord(r)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			if _, err := decodeRecord(again); err != nil {
				t.Fatalf("decode(encode(decode(x))): %v", err)
			}
		}
		if st, err := decodeState(data); err == nil {
			if _, err := decodeState(encodeState(st)); err != nil {
				t.Fatalf("state round trip: %v", err)
			}
		}
	})
}

func TestTokenEncodingIsLossless(t *testing.T) {
	jwt := fakeJWT(t, 800, map[string]any{"sub": "x"})
	tests := []struct {
		name   string
		token  string
		binary bool // stored as segment bytes
	}{
		{"jwt", jwt, true},
		{"jwe, five segments", "eyJhbGciOiJSU0EtT0FFUCJ9.AAAA.BBBBBBBBBBBBBBBB.CCCC.DDDDDDDDDDDDDDDDDDDDDA", true},
		{"six segments", "a.b.c.d.e.f", false},
		{"empty segment", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", true},
		{"opaque base64url", "R7k2Pq9Xw3Lm8Nt4Vy1Za6Bc0De5Fg7Hj2Kl9Mn4Op4", true},
		{"non-zero trailing bits", "AB", false},
		{"one char segment", "A", false},
		{"padding", "QUJD==", false},
		{"std alphabet", "ab+/cd", false},
		{"newline", "abcd\nefgh", false},
		{"dots only", "..", true},
		{"hex with colon", "ab:cd", false},
		{"unicode", "tökén", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := encoder{}
			e.token(secret.String(tt.token))
			if got := e.b[0] != 0; got != tt.binary {
				t.Errorf("binary = %v, want %v", got, tt.binary)
			}
			d := decoder{b: e.b}
			if got := d.token(); got.Reveal() != tt.token || d.done() != nil {
				t.Errorf("round trip = %q (%v), want %q", got.Reveal(), d.done(), tt.token)
			}
		})
	}
}
