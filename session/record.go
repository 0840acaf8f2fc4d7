package session

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokenrelay/tokenrelay/secret"
)

// The record encoding is a flat sequence of fields, each a uvarint length
// followed by bytes, or a zigzag varint; times are Unix nanoseconds with 0
// for the zero time. It carries no field names. Tokens made of base64url
// segments (JWTs, JWEs, most opaque tokens) are stored as the decoded bytes
// of each segment, a quarter smaller than their text, whenever re-encoding
// gives back the exact token; anything else is stored as text. So a session
// with a JWT access token, an ID token and a refresh token fits well inside
// the 2 KiB a store entry may use without compression, which would cost
// more CPU on every request than the rest of opening a record. The layout is
// versioned by the sealed format's version byte (seal.go): a new layout
// takes a new version.

// errMalformed means the bytes did not decode; callers turn it into
// ErrNoSession or ErrUnknownState.
var errMalformed = errors.New("session: malformed record")

// maxField bounds one decoded field, so a corrupt length cannot make the
// decoder allocate much.
const maxField = 64 << 10

// maxSegments is the most base64url segments a token is split into (a JWE
// compact serialisation has five).
const maxSegments = 5

type encoder struct{ b []byte }

// token writes a segment count (0 for text) and the segments' bytes, or the
// text.
func (e *encoder) token(tok secret.String) {
	s := tok.Reveal()
	n := strings.Count(s, ".") + 1
	if s == "" || n > maxSegments || !canonicalSegments(s) {
		e.b = append(e.b, 0)
		e.str(s)
		return
	}
	e.b = append(e.b, byte(n))
	for seg := range strings.SplitSeq(s, ".") {
		e.b = binary.AppendUvarint(e.b, uint64(base64.RawURLEncoding.DecodedLen(len(seg))))
		// canonicalSegments checked that each segment decodes.
		e.b, _ = base64.RawURLEncoding.AppendDecode(e.b, []byte(seg))
	}
}

// canonicalSegments reports whether every dot-separated segment of s is
// unpadded base64url that re-encodes to itself, so the binary form is
// lossless.
func canonicalSegments(s string) bool {
	var buf [1024]byte
	for seg := range strings.SplitSeq(s, ".") {
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
		dec, err := base64.RawURLEncoding.Strict().AppendDecode(buf[:0], []byte(seg))
		if err != nil || base64.RawURLEncoding.EncodedLen(len(dec)) != len(seg) {
			return false
		}
	}
	return true
}

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

func (d *decoder) token() secret.String {
	if d.err != nil {
		return ""
	}
	if len(d.b) == 0 || d.b[0] > maxSegments {
		d.err = errMalformed
		return ""
	}
	n := int(d.b[0])
	d.b = d.b[1:]
	if n == 0 {
		return secret.String(d.str())
	}
	// Collect the segments first so the text is built in one allocation:
	// this runs for every token of every request.
	var segs [maxSegments][]byte
	size := n - 1
	for i := range n {
		segs[i] = d.bytes()
		size += base64.RawURLEncoding.EncodedLen(len(segs[i]))
	}
	if d.err != nil {
		return ""
	}
	var out strings.Builder
	out.Grow(size)
	var buf [256]byte
	for i, seg := range segs[:n] {
		if i > 0 {
			out.WriteByte('.')
		}
		for len(seg) > 0 {
			// 192 input bytes encode to exactly 256, without padding.
			chunk := seg[:min(len(seg), 192)]
			seg = seg[len(chunk):]
			out.Write(base64.RawURLEncoding.AppendEncode(buf[:0], chunk))
		}
	}
	return secret.String(out.String())
}

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
	e.token(rec.AccessToken)
	e.token(rec.RefreshToken)
	e.token(rec.IDToken)
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
func decodeRecord(b []byte) (*Record, error) { return decodeRecordClaims(b, true) }

// decodeRecordClaims decodes a record, leaving Claims nil unless withClaims
// is set: the request path needs the tokens, not the identity claims, whose
// JSON decoding would cost more than the rest of opening the record. A
// record decoded without its claims must never be encoded and saved.
func decodeRecordClaims(b []byte, withClaims bool) (*Record, error) {
	d := decoder{b: b}
	rec := &Record{
		AccessToken:   d.token(),
		RefreshToken:  d.token(),
		IDToken:       d.token(),
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
	if len(claims) > 0 && withClaims {
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
