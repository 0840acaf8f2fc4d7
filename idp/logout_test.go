package idp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerifyLogoutToken(t *testing.T) {
	op := newTestOP(t)
	p := op.provider(nil)
	n := 0
	with := func(change func(c jwt.MapClaims), header map[string]any) string {
		n++
		c := op.logoutClaims(fmt.Sprintf("jti-%d", n))
		if change != nil {
			change(c)
		}
		if header == nil {
			header = map[string]any{"typ": nil} // jwt adds typ JWT
		}
		return sign(t, "rsa1", c, header)
	}
	replayed := with(nil, nil)
	if _, err := p.VerifyLogoutToken(context.Background(), replayed); err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	forged := func() string {
		good := with(nil, nil)
		other := sign(t, "rsa2", op.logoutClaims("x"), map[string]any{"kid": "rsa1", "typ": nil})
		return good[:strings.LastIndexByte(good, '.')] + other[strings.LastIndexByte(other, '.'):]
	}
	hs := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, op.logoutClaims("hs"))
		tok.Header["kid"] = "rsa1"
		delete(tok.Header, "typ")
		s, _ := tok.SignedString([]byte("guess"))
		return s
	}

	tests := []struct {
		name    string
		raw     string
		want    *LogoutToken // nil: only check the error
		wantErr string
	}{
		{
			name: "valid",
			raw:  with(func(c jwt.MapClaims) { c["jti"] = "jti-valid" }, map[string]any{"typ": "logout+jwt"}),
			want: &LogoutToken{Issuer: op.url, Subject: "user-42", SID: "sid-7", JTI: "jti-valid", IssuedAt: testNow.Add(-10 * time.Second)},
		},
		{name: "sid only", raw: with(func(c jwt.MapClaims) { delete(c, "sub") }, nil)},
		{name: "sub only, typ with application/", raw: with(func(c jwt.MapClaims) { delete(c, "sid") }, map[string]any{"typ": "application/logout+jwt"})},
		{name: "exp in the future", raw: with(func(c jwt.MapClaims) { c["exp"] = testNow.Add(time.Minute).Unix() }, nil)},
		{name: "iat at the edge of the window", raw: with(func(c jwt.MapClaims) { c["iat"] = testNow.Add(-6 * time.Minute).Unix() }, nil)},

		{name: "missing events", raw: with(func(c jwt.MapClaims) { delete(c, "events") }, nil), wantErr: "events is missing"},
		{name: "events not an object", raw: with(func(c jwt.MapClaims) { c["events"] = []string{backchannelLogoutEvent} }, nil), wantErr: "events is missing or not an object"},
		{name: "wrong event member", raw: with(func(c jwt.MapClaims) {
			c["events"] = map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}
		}, nil), wantErr: "no back-channel logout event"},
		{name: "event value not an object", raw: with(func(c jwt.MapClaims) { c["events"] = map[string]any{backchannelLogoutEvent: "yes"} }, nil), wantErr: "no back-channel logout event"},
		{name: "event value null", raw: with(func(c jwt.MapClaims) { c["events"] = map[string]any{backchannelLogoutEvent: nil} }, nil), wantErr: "no back-channel logout event"},
		{name: "nonce present", raw: with(func(c jwt.MapClaims) { c["nonce"] = "n" }, nil), wantErr: "nonce is present"},
		{name: "neither sid nor sub", raw: with(func(c jwt.MapClaims) { delete(c, "sid"); delete(c, "sub") }, nil), wantErr: "neither sid nor sub"},
		{name: "sid a number", raw: with(func(c jwt.MapClaims) { c["sid"] = 7 }, nil), wantErr: "not a string"},
		{name: "wrong typ", raw: with(nil, map[string]any{"typ": "JWT"}), wantErr: `typ "jwt"`},
		{name: "replayed jti", raw: replayed, wantErr: "replayed"},
		{name: "missing jti", raw: with(func(c jwt.MapClaims) { delete(c, "jti") }, nil), wantErr: "no jti"},
		{name: "empty jti", raw: with(func(c jwt.MapClaims) { c["jti"] = "" }, nil), wantErr: "no jti"},
		{name: "bad iss", raw: with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }, nil), wantErr: "invalid issuer"},
		{name: "bad aud", raw: with(func(c jwt.MapClaims) { c["aud"] = "other" }, nil), wantErr: "invalid audience"},
		{name: "bad signature", raw: forged(), wantErr: "signature is invalid"},
		{name: "HS256", raw: hs(), wantErr: "signing method HS256 is invalid"},
		{name: "iat too old", raw: with(func(c jwt.MapClaims) { c["iat"] = testNow.Add(-6*time.Minute - time.Second).Unix() }, nil), wantErr: "iat too old"},
		{name: "iat in the future", raw: with(func(c jwt.MapClaims) { c["iat"] = testNow.Add(2 * time.Minute).Unix() }, nil), wantErr: "token used before issued"},
		{name: "no iat", raw: with(func(c jwt.MapClaims) { delete(c, "iat") }, nil), wantErr: "no iat"},
		{name: "expired", raw: with(func(c jwt.MapClaims) { c["exp"] = testNow.Add(-2 * time.Minute).Unix() }, nil), wantErr: "token is expired"},
		{name: "not a JWT", raw: "hello", wantErr: "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.VerifyLogoutToken(context.Background(), tt.raw)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("VerifyLogoutToken() = %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyLogoutToken() error = %v", err)
			}
			if tt.want != nil {
				if !got.IssuedAt.Equal(tt.want.IssuedAt) {
					t.Errorf("IssuedAt = %v, want %v", got.IssuedAt, tt.want.IssuedAt)
				}
				got.IssuedAt, tt.want.IssuedAt = time.Time{}, time.Time{}
				if *got != *tt.want {
					t.Errorf("VerifyLogoutToken() = %+v, want %+v", got, tt.want)
				}
			}
		})
	}
	if _, err := p.VerifyLogoutToken(context.Background(), replayed); !errors.Is(err, ErrReplayedLogoutToken) {
		t.Errorf("replay error = %v, want ErrReplayedLogoutToken", err)
	}
}

func TestReplayCache(t *testing.T) {
	c := newReplayCache(3)
	now := testNow
	later := now.Add(time.Minute)
	steps := []struct {
		key  string
		at   time.Time
		want bool
		size int
	}{
		{"a", now, true, 1},
		{"a", now, false, 1},
		{"b", now, true, 2},
		{"c", now, true, 3},
		{"d", now, true, 3}, // full: a is evicted
		{"a", now, true, 3}, // so a is accepted again (b evicted)
		{"c", now, false, 3},
		{"e", later, true, 1}, // a, c and d expired at later; b was evicted
		{"e", later, false, 1},
	}
	for i, s := range steps {
		if got := c.add(s.key, s.at.Add(time.Minute-time.Second), s.at); got != s.want {
			t.Errorf("step %d: add(%q) = %v, want %v", i, s.key, got, s.want)
		}
		if got := c.len(); got != s.size {
			t.Errorf("step %d: len = %d, want %d", i, got, s.size)
		}
	}
}

// One logout token delivered many times at once is accepted exactly once.
func TestVerifyLogoutTokenConcurrentReplay(t *testing.T) {
	op := newTestOP(t)
	p := op.provider(nil)
	raw := sign(t, "rsa1", op.logoutClaims("jti-race"), map[string]any{"typ": "logout+jwt"})
	const n = 16
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := p.VerifyLogoutToken(context.Background(), raw)
			errs <- err
		}()
	}
	accepted, replays := 0, 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			accepted++
		case errors.Is(err, ErrReplayedLogoutToken):
			replays++
		default:
			t.Errorf("VerifyLogoutToken() = %v", err)
		}
	}
	if accepted != 1 || replays != n-1 {
		t.Errorf("accepted, replays = %d, %d; want 1, %d", accepted, replays, n-1)
	}
}
