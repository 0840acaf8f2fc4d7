package session

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestTicketRoundTrip(t *testing.T) {
	tk, err := NewTicket()
	if err != nil {
		t.Fatal(err)
	}
	enc := tk.Encode()
	if got, want := len(enc), 43; got != want {
		t.Fatalf("len(Encode()) = %d, want %d", got, want)
	}
	got, err := ParseTicket(enc)
	if err != nil {
		t.Fatalf("ParseTicket(Encode()) error: %v", err)
	}
	if got != tk {
		t.Errorf("ParseTicket(Encode()) = different ticket")
	}
	other, err := NewTicket()
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == tk.ID || other.Key == tk.Key || other.ID == other.Key {
		t.Errorf("NewTicket repeated random bytes")
	}
}

func TestParseTicketRejects(t *testing.T) {
	tk := Ticket{ID: [16]byte{1, 2, 3}, Key: [16]byte{4, 5, 6, 255}}
	good := tk.Encode()
	// The last character carries 2 data bits and 4 zero bits: 'A' -> 'B'
	// sets a padding bit.
	last := good[:42] + string(rune(good[42]+1))
	tests := []struct {
		name, in string
	}{
		{"empty", ""},
		{"truncated by one", good[:42]},
		{"truncated to half", good[:21]},
		{"one extra char", good + "A"},
		{"padding", good[:42] + "="},
		{"trailing padding", good + "="},
		{"std alphabet plus", "+" + good[1:]},
		{"std alphabet slash", good[:10] + "/" + good[11:]},
		{"space", good[:10] + " " + good[11:]},
		{"newline", good[:42] + "\n"},
		{"inner newline", good[:20] + "\n" + good[21:]},
		{"non-zero trailing bits", last},
		{"non-ascii", strings.Repeat("é", 21) + "A"},
		{"nul", good[:42] + "\x00"},
		{"quoted", `"` + good[:41] + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTicket(tt.in)
			if !errors.Is(err, ErrNoSession) {
				t.Errorf("ParseTicket(%q) error = %v, want ErrNoSession", tt.in, err)
			}
		})
	}
	if _, err := ParseTicket(good); err != nil {
		t.Errorf("ParseTicket(good) = %v", err)
	}
}

func TestTicketDoesNotPrintItself(t *testing.T) {
	tk := Ticket{ID: [16]byte{0xde, 0xad, 0xbe, 0xef}, Key: [16]byte{0xca, 0xfe, 0xba, 0xbe}}
	want := "ticket:" + idHashHex(tk)
	if got := tk.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if len(tk.String()) != len("ticket:")+8 {
		t.Fatalf("String() = %q, want 8 hex chars", tk.String())
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "session", tk)
	outputs := map[string]string{
		"%v": fmt.Sprintf("%v", tk), "%+v": fmt.Sprintf("%+v", tk), "%#v": fmt.Sprintf("%#v", tk),
		"%s": fmt.Sprintf("%s", tk), "%x": fmt.Sprintf("%x", tk), "%d": fmt.Sprintf("%d", tk),
		"%q": fmt.Sprintf("%q", tk), "%v ptr": fmt.Sprintf("%v", &tk), "slog": logged.String(),
	}
	enc := tk.Encode()
	for verb, out := range outputs {
		for _, leak := range []string{enc, "deadbeef", "cafebabe", "222 173", "de ad", "0xde"} {
			if strings.Contains(strings.ToLower(out), leak) {
				t.Errorf("%s output %q contains %q", verb, out, leak)
			}
		}
		if !strings.Contains(out, want) {
			t.Errorf("%s output %q lacks %q", verb, out, want)
		}
	}
}

// idHashHex is the 8-hex-character log hash, computed independently.
func idHashHex(t Ticket) string {
	h := idHash(t.ID) // base64url of SHA-256(ID)
	raw, err := decodeB64(h)
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("%x", raw[:4])
}

func FuzzParseTicket(f *testing.F) {
	tk := Ticket{ID: [16]byte{1}, Key: [16]byte{2}}
	for _, s := range []string{tk.Encode(), "", "A", strings.Repeat("A", 43), strings.Repeat("_", 43), strings.Repeat("-", 44), tk.Encode()[:42] + "=", tk.Encode()[:42] + "\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTicket(s)
		if err != nil {
			if !errors.Is(err, ErrNoSession) {
				t.Fatalf("ParseTicket(%q) error %v does not match ErrNoSession", s, err)
			}
			return
		}
		// One ticket, one encoding: whatever parses is canonical.
		if enc := got.Encode(); enc != s {
			t.Fatalf("ParseTicket(%q) accepted a non-canonical form of %q", s, enc)
		}
	})
}
