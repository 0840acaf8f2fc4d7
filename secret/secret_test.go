package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestStringNeverPrintsValue(t *testing.T) {
	const value = "eyJhbGciOiJSUzI1NiJ9.top-secret"
	s := String(value)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "tok", s, "group", slog.GroupValue(slog.Any("inner", s)))
	j, _ := json.Marshal(struct{ T String }{s})
	outs := []string{
		fmt.Sprint(s), fmt.Sprintf("%v %s %q %x %#v %+v", s, s, s, s, s, s),
		fmt.Sprintf("%v", struct{ T String }{s}), buf.String(), string(j), fmt.Errorf("wrap: %v", s).Error(),
	}
	for _, out := range outs {
		if strings.Contains(out, value) || strings.Contains(out, "top-secret") {
			t.Errorf("output leaks the secret: %s", out)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("output %q lacks %q", out, redacted)
		}
	}
	if got := s.Reveal(); got != value {
		t.Errorf("Reveal() = %q, want %q", got, value)
	}
	if String("").String() != "" || !String("").IsZero() {
		t.Errorf("empty secret should print empty and be zero")
	}
}
