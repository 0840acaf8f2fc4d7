package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
)

// Ticket is what the session cookie carries: a random 128-bit session id and
// a random 128-bit per-session key. The store sees only a hash of ID, and a
// record can be opened only with Key and the server secret together.
//
// A Ticket never prints itself: fmt and log/slog show a short hash of ID
// (see String), which is enough to correlate log lines of one session.
type Ticket struct {
	ID  [16]byte
	Key [16]byte
}

// encodedTicketLen is the length of base64url(ID||Key) without padding.
var encodedTicketLen = base64.RawURLEncoding.EncodedLen(32)

// NewTicket returns a ticket with a fresh random id and key.
func NewTicket() (Ticket, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Ticket{}, fmt.Errorf("session: new ticket: %w", err)
	}
	var t Ticket
	copy(t.ID[:], b[:16])
	copy(t.Key[:], b[16:])
	return t, nil
}

// Encode returns the cookie value: base64url without padding of ID||Key
// (43 characters).
func (t Ticket) Encode() string {
	var b [32]byte
	copy(b[:16], t.ID[:])
	copy(b[16:], t.Key[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseTicket decodes a cookie value made by Encode. Anything else — wrong
// length, a character outside the base64url alphabet, padding, non-zero
// trailing bits — is an error that matches ErrNoSession: a tampered or
// truncated cookie is no session.
func ParseTicket(s string) (Ticket, error) {
	if len(s) != encodedTicketLen {
		return Ticket{}, fmt.Errorf("%w: malformed ticket (length %d)", ErrNoSession, len(s))
	}
	var b [32]byte
	// Strict rejects non-zero padding bits, so each ticket has exactly one
	// encoding; the length check above leaves no room for '=' or
	// newlines, which the decoder would otherwise skip.
	n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(s))
	if err != nil || n != len(b) {
		return Ticket{}, fmt.Errorf("%w: malformed ticket", ErrNoSession)
	}
	var t Ticket
	copy(t.ID[:], b[:16])
	copy(t.Key[:], b[16:])
	return t, nil
}

// String returns "ticket:" and the first 8 hex characters of SHA-256(ID),
// safe for logs: it reveals neither the id nor the key.
func (t Ticket) String() string {
	sum := sha256.Sum256(t.ID[:])
	return "ticket:" + hex.EncodeToString(sum[:4])
}

// GoString implements fmt.GoStringer for %#v.
func (t Ticket) GoString() string { return "session.Ticket(" + t.String() + ")" }

// Format makes every verb (%v, %+v, %x, %d, ...) print String, so no format
// string can reach the id or key bytes.
func (t Ticket) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(t.GoString()))
		return
	}
	_, _ = f.Write([]byte(t.String()))
}

// LogValue implements slog.LogValuer.
func (t Ticket) LogValue() slog.Value { return slog.StringValue(t.String()) }
