package session

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/idp"
)

// TestRefreshStateEncoding pins the refresh engine's bookkeeping in the
// record: it survives a round trip; a record without it (no refresh since
// login, or written before it existed) decodes with zero values and is
// encoded exactly as before; a section with an unknown tag or cut short
// does not decode.
func TestRefreshStateEncoding(t *testing.T) {
	rec := realisticRecord(t)
	bare, err := encodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRecord(bare)
	if err != nil || !got.RefreshedAt.IsZero() || !got.RetryAt.IsZero() || !got.Attempt.IsZero() {
		t.Fatalf("record without bookkeeping: %+v, %v; want zero values", got, err)
	}

	rec.RefreshedAt = testEpoch.Add(time.Minute)
	rec.RetryAt = testEpoch.Add(2 * time.Minute)
	rec.Attempt = newAttempt(rec.RefreshToken, testEpoch.Add(3*time.Minute))
	full, err := encodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if string(full[:len(bare)]) != string(bare) {
		t.Errorf("the bookkeeping changed the bytes before it")
	}
	got, err = decodeRecord(full)
	if err != nil {
		t.Fatal(err)
	}
	equalRecords(t, got, rec)
	if !got.RefreshedAt.Equal(rec.RefreshedAt) || !got.RetryAt.Equal(rec.RetryAt) || !got.Attempt.Since.Equal(rec.Attempt.Since) || got.Attempt.Token != rec.Attempt.Token {
		t.Errorf("bookkeeping = %v %v %+v, want %v %v %+v", got.RefreshedAt, got.RetryAt, got.Attempt, rec.RefreshedAt, rec.RetryAt, rec.Attempt)
	}
	if !got.Attempt.sends(rec.RefreshToken) || got.Attempt.sends("another refresh token") {
		t.Errorf("the attempt does not recognise exactly its refresh token")
	}

	rec.Attempt = Attempt{} // bookkeeping without an attempt
	noAttempt, _ := encodeRecord(rec)
	for name, b := range map[string][]byte{
		"unknown tag":       append(append([]byte{}, bare...), 9),
		"cut in the digest": full[:len(full)-1],
		"extra byte":        append(append([]byte{}, noAttempt...), 0),
	} {
		if _, err := decodeRecord(b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: decode = %v, want errMalformed", name, err)
		}
	}
}

// TestLoginRequestEncoding pins what a step-up login asked for, in the
// record and in the sealed login state: it survives a round trip, after the
// refresh bookkeeping or without it; a record or a state without it decodes
// with the zero value and is encoded exactly as before; sections out of
// order or repeated do not decode.
func TestLoginRequestEncoding(t *testing.T) {
	rec := realisticRecord(t)
	bare, err := encodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	asked := idp.LoginRequest{ACRValues: []string{"urn:mfa", "urn:hwk"}, MaxAge: 10 * time.Minute, Prompt: []string{"login"}}
	rec.Login = asked
	withLogin, err := encodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if string(withLogin[:len(bare)]) != string(bare) {
		t.Errorf("the login request changed the bytes before it")
	}
	rec.RefreshedAt = testEpoch.Add(time.Minute)
	both, err := encodeRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"alone": withLogin, "after the bookkeeping": both} {
		got, err := decodeRecord(b)
		if err != nil || !reflect.DeepEqual(got.Login, asked) {
			t.Errorf("%s: Login = %+v, %v; want %+v", name, got.Login, err, asked)
		}
	}
	loginSection := withLogin[len(bare):]
	for name, b := range map[string][]byte{
		"twice":        append(append([]byte{}, withLogin...), loginSection...),
		"out of order": append(append([]byte{}, withLogin...), 1, 0, 0, 0),
		"cut short":    withLogin[:len(withLogin)-1],
	} {
		if _, err := decodeRecord(b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: decode = %v, want errMalformed", name, err)
		}
	}

	st := LoginState{State: "s", Nonce: "n", Verifier: "v", ReturnTo: "/x", CreatedAt: testEpoch}
	plain := encodeState(&st)
	st.Request = asked
	got, err := decodeState(encodeState(&st))
	if err != nil || !reflect.DeepEqual(got.Request, asked) {
		t.Errorf("login state: Request = %+v, %v; want %+v", got.Request, err, asked)
	}
	if got, err := decodeState(plain); err != nil || !got.Request.IsZero() {
		t.Errorf("plain login state: Request = %+v, %v; want zero", got.Request, err)
	}
}
