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

	"github.com/tokenrelay/tokenrelay/idp"
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
	size := 64 + len(rec.AccessToken) + len(rec.RefreshToken) + len(rec.IDToken) + len(claims) + len(rec.DPoPKey)
	for _, t := range rec.Tokens {
		size += 32 + len(t.Target) + len(t.Value)
	}
	e := encoder{b: make([]byte, 0, size)}
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
	encodeRefreshState(&e, rec)
	e.loginRequest(sectionLogin, rec.Login)
	encodeTargetTokens(&e, rec)
	encodeDPoPKey(&e, rec)
	return e.b, nil
}

// Optional sections follow CreatedAt, each a tag byte and its fields, in
// increasing tag order, each at most once. A record without one decodes
// with that section's zero values, so a record written before a section
// existed still opens.
const (
	// sectionRefreshState is the refresh engine's bookkeeping (no refresh
	// since login: absent).
	sectionRefreshState = 1
	// sectionLogin is what a step-up login asked the provider for
	// (absent for a plain login).
	sectionLogin = 2
	// sectionTargetTokens is the access tokens of route targets (Tokens;
	// absent when the routes use only the login's token). An older release
	// does not open a record that has it.
	sectionTargetTokens = 3
	// sectionDPoPKey is the session's DPoP key (absent without DPoP).
	sectionDPoPKey = 4
)

func encodeRefreshState(e *encoder, rec *Record) {
	if rec.RefreshedAt.IsZero() && rec.RetryAt.IsZero() && rec.Attempt.IsZero() {
		return
	}
	e.b = append(e.b, sectionRefreshState)
	e.time(rec.RefreshedAt)
	e.time(rec.RetryAt)
	e.time(rec.Attempt.Since)
	if !rec.Attempt.IsZero() {
		e.b = append(e.b, rec.Attempt.Token[:]...)
	}
}

func (d *decoder) refreshState(rec *Record) {
	rec.RefreshedAt = d.time()
	rec.RetryAt = d.time()
	rec.Attempt.Since = d.time()
	if d.err != nil || rec.Attempt.IsZero() {
		return
	}
	if len(d.b) < attemptDigestSize {
		d.err = errMalformed
		return
	}
	copy(rec.Attempt.Token[:], d.b)
	d.b = d.b[attemptDigestSize:]
}

func encodeTargetTokens(e *encoder, rec *Record) {
	if len(rec.Tokens) == 0 {
		return
	}
	e.b = append(e.b, sectionTargetTokens)
	e.b = binary.AppendUvarint(e.b, uint64(len(rec.Tokens)))
	for _, t := range rec.Tokens {
		e.str(t.Target)
		e.token(t.Value)
		e.time(t.Expiry)
		e.time(t.RefreshedAt)
	}
}

func encodeDPoPKey(e *encoder, rec *Record) {
	if len(rec.DPoPKey) == 0 {
		return
	}
	e.b = append(e.b, sectionDPoPKey)
	e.bytes(rec.DPoPKey)
}

// maxTargetTokens bounds the target tokens one record decodes to.
const maxTargetTokens = 64

func (d *decoder) targetTokens(rec *Record) {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n == 0 || n > maxTargetTokens {
		d.err = errMalformed
		return
	}
	d.b = d.b[k:]
	rec.Tokens = make([]TargetToken, 0, n)
	for range n {
		t := TargetToken{Target: d.str(), Value: d.token(), Expiry: d.time(), RefreshedAt: d.time()}
		if d.err != nil {
			return
		}
		rec.Tokens = append(rec.Tokens, t)
	}
}

// loginRequest writes a login request (acr values, max age in seconds,
// prompt values) with its tag, when it asks for anything.
func (e *encoder) loginRequest(tag byte, r idp.LoginRequest) {
	if r.IsZero() {
		return
	}
	e.b = append(e.b, tag)
	e.strs(r.ACRValues)
	e.b = binary.AppendVarint(e.b, int64(r.MaxAge/time.Second))
	e.strs(r.Prompt)
}

func (d *decoder) loginRequest() idp.LoginRequest {
	r := idp.LoginRequest{ACRValues: d.strs()}
	if d.err == nil {
		n, k := binary.Varint(d.b)
		if k <= 0 || n < 0 || n > maxLoginMaxAge {
			d.err = errMalformed
		} else {
			d.b = d.b[k:]
			r.MaxAge = time.Duration(n) * time.Second
		}
	}
	r.Prompt = d.strs()
	return r
}

// maxLoginMaxAge bounds a decoded max age in seconds (ten years).
const maxLoginMaxAge = 10 * 365 * 24 * 3600

// maxListItems bounds a decoded list of strings.
const maxListItems = 64

func (e *encoder) strs(list []string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(list)))
	for _, s := range list {
		e.str(s)
	}
}

func (d *decoder) strs() []string {
	if d.err != nil {
		return nil
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > maxListItems {
		d.err = errMalformed
		return nil
	}
	d.b = d.b[k:]
	if n == 0 {
		return nil
	}
	list := make([]string, n)
	for i := range list {
		list[i] = d.str()
	}
	return list
}

// recordSections decodes the optional sections of a record.
func (d *decoder) recordSections(rec *Record) {
	var last byte
	for d.err == nil && len(d.b) > 0 {
		tag := d.b[0]
		d.b = d.b[1:]
		if tag <= last {
			d.err = errMalformed
			return
		}
		last = tag
		switch tag {
		case sectionRefreshState:
			d.refreshState(rec)
		case sectionLogin:
			rec.Login = d.loginRequest()
		case sectionTargetTokens:
			d.targetTokens(rec)
		case sectionDPoPKey:
			rec.DPoPKey = bytes.Clone(d.bytes())
		default:
			d.err = errMalformed
		}
	}
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
	d.recordSections(rec)
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
	e.loginRequest(stateSectionRequest, st.Request)
	return e.b
}

// stateSectionRequest tags a login state's optional login request (a
// step-up), after CreatedAt.
const stateSectionRequest = 1

func decodeState(b []byte) (*LoginState, error) {
	d := decoder{b: b}
	st := &LoginState{State: d.str(), Nonce: d.str(), Verifier: d.str(), ReturnTo: d.str(), CreatedAt: d.time()}
	if d.err == nil && len(d.b) > 0 {
		if d.b[0] != stateSectionRequest {
			return nil, errMalformed
		}
		d.b = d.b[1:]
		st.Request = d.loginRequest()
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return st, nil
}
