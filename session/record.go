package session

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// The record encoding is a flat sequence of fields, each a uvarint length
// followed by bytes, or a zigzag varint; times are Unix nanoseconds with 0
// for the zero time. It carries no field names, so a session with a JWT
// access token, an ID token and a refresh token fits well inside the 2 KiB a
// store entry may use. The layout is versioned by the sealed format's version
// byte (seal.go): a new layout takes a new version.

// errMalformed means the bytes did not decode; callers turn it into
// ErrNoSession or ErrUnknownState.
var errMalformed = errors.New("session: malformed record")

// maxField bounds one decoded field, so a corrupt length cannot make the
// decoder allocate much.
const maxField = 64 << 10

type encoder struct{ b []byte }

func (e *encoder) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) bytes(p []byte) {
	e.b = binary.AppendUvarint(e.b, uint64(len(p)))
	e.b = append(e.b, p...)
}

func (e *encoder) time(t time.Time) {
	var n int64
	if !t.IsZero() {
		n = t.UnixNano()
	}
	e.b = binary.AppendVarint(e.b, n)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) bytes() []byte {
	if d.err != nil {
		return nil
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > maxField || n > uint64(len(d.b)-k) {
		d.err = errMalformed
		return nil
	}
	p := d.b[k : k+int(n)]
	d.b = d.b[k+int(n):]
	return p
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) time() time.Time {
	if d.err != nil {
		return time.Time{}
	}
	n, k := binary.Varint(d.b)
	if k <= 0 {
		d.err = errMalformed
		return time.Time{}
	}
	d.b = d.b[k:]
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// done reports the first error, or errMalformed when bytes are left over.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errMalformed
	}
	return d.err
}

// encodeRecord lays out rec. Claims are stored as JSON.
func encodeRecord(rec *Record) ([]byte, error) {
	var claims []byte
	if len(rec.Claims) > 0 {
		var err error
		if claims, err = json.Marshal(rec.Claims); err != nil {
			return nil, fmt.Errorf("session: encode claims: %w", err)
		}
	}
	e := encoder{b: make([]byte, 0, 64+len(rec.AccessToken)+len(rec.RefreshToken)+len(rec.IDToken)+len(claims))}
	e.str(rec.AccessToken.Reveal())
	e.str(rec.RefreshToken.Reveal())
	e.str(rec.IDToken.Reveal())
	e.time(rec.AccessExpiry)
	e.time(rec.RefreshExpiry)
	e.str(rec.Issuer)
	e.str(rec.Subject)
	e.str(rec.SID)
	e.bytes(claims)
	e.time(rec.CreatedAt)
	return e.b, nil
}

// decodeRecord reverses encodeRecord. Claim numbers decode as json.Number,
// so they re-encode exactly as the provider sent them.
func decodeRecord(b []byte) (*Record, error) {
	d := decoder{b: b}
	rec := &Record{
		AccessToken:   secret.String(d.str()),
		RefreshToken:  secret.String(d.str()),
		IDToken:       secret.String(d.str()),
		AccessExpiry:  d.time(),
		RefreshExpiry: d.time(),
		Issuer:        d.str(),
		Subject:       d.str(),
		SID:           d.str(),
	}
	claims := d.bytes()
	rec.CreatedAt = d.time()
	if err := d.done(); err != nil {
		return nil, err
	}
	if len(claims) > 0 {
		dec := json.NewDecoder(bytes.NewReader(claims))
		dec.UseNumber()
		if err := dec.Decode(&rec.Claims); err != nil || rec.Claims == nil || dec.More() {
			return nil, errMalformed
		}
	}
	return rec, nil
}

// encodeState and decodeState do the same for a login state.
func encodeState(st *LoginState) []byte {
	e := encoder{b: make([]byte, 0, 32+len(st.State)+len(st.Nonce)+len(st.Verifier)+len(st.ReturnTo))}
	e.str(st.State)
	e.str(st.Nonce)
	e.str(st.Verifier)
	e.str(st.ReturnTo)
	e.time(st.CreatedAt)
	return e.b
}

func decodeState(b []byte) (*LoginState, error) {
	d := decoder{b: b}
	st := &LoginState{State: d.str(), Nonce: d.str(), Verifier: d.str(), ReturnTo: d.str(), CreatedAt: d.time()}
	if err := d.done(); err != nil {
		return nil, err
	}
	return st, nil
}
