package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tokenrelay/tokenrelay/config"
)

// TestZapIntoSlog checks that certmagic's zap lines come out of the process
// logger with their level, logger name and fields.
func TestZapIntoSlog(t *testing.T) {
	var buf bytes.Buffer
	logger := newLogger(config.LogConfig{Level: "info", Format: "json"}, &buf)
	zl := newZapLogger(logger.Handler()).Named("certmagic").With(zap.String("issuer", "pebble"))

	zl.Debug("dropped: below the level")
	zl.Info("certificate obtained", zap.Strings("identifiers", []string{"localhost"}), zap.Duration("took", 1500*time.Millisecond))
	zl.Error("renewal failed", zap.Error(errors.New("boom")), zap.Int("attempt", 3))

	var got []map[string]any
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		delete(m, "time")
		got = append(got, m)
	}
	want := []map[string]any{
		{"level": "INFO", "msg": "certificate obtained", "logger": "certmagic", "issuer": "pebble",
			"identifiers": []any{"localhost"}, "took": "1.5s"},
		{"level": "ERROR", "msg": "renewal failed", "logger": "certmagic", "issuer": "pebble",
			"error": "boom", "attempt": float64(3)},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		gotJSON, _ := json.Marshal(got[i])
		wantJSON, _ := json.Marshal(want[i])
		if !bytes.Equal(gotJSON, wantJSON) {
			t.Errorf("line %d:\n got %s\nwant %s", i, gotJSON, wantJSON)
		}
	}
}

func TestNewLoggerFormatAndLevel(t *testing.T) {
	tests := []struct {
		cfg  config.LogConfig
		want string
	}{
		{config.LogConfig{Level: "warn", Format: "text"}, "level=WARN msg=shown\n"},
		{config.LogConfig{Level: "debug", Format: "text"}, "level=DEBUG msg=detail\nlevel=INFO msg=hidden\nlevel=WARN msg=shown\n"},
		{config.LogConfig{Level: "info", Format: "json"}, `{"level":"INFO","msg":"hidden"}` + "\n" + `{"level":"WARN","msg":"shown"}` + "\n"},
		{config.LogConfig{Level: "error", Format: "json"}, ""},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		logger := slog.New(dropTime{newLogger(tt.cfg, &buf).Handler()})
		logger.Debug("detail")
		logger.Info("hidden")
		logger.Warn("shown")
		if got := buf.String(); got != tt.want {
			t.Errorf("newLogger(%+v) wrote %q, want %q", tt.cfg, got, tt.want)
		}
	}
}

// dropTime zeroes record times, which slog handlers then leave out.
type dropTime struct{ slog.Handler }

func (d dropTime) Handle(ctx context.Context, r slog.Record) error {
	r.Time = time.Time{}
	return d.Handler.Handle(ctx, r)
}

func TestServerErrorLogLevels(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(dropTime{newLogger(config.LogConfig{Level: "info", Format: "text"}, &buf).Handler()})
	l := serverErrorLog(logger, "main")
	l.Printf("http: TLS handshake error from 127.0.0.1:1234: EOF")
	l.Printf("http: panic serving 127.0.0.1:1234: boom")
	if got, want := buf.String(), "level=WARN msg=\"http: panic serving 127.0.0.1:1234: boom\" server=main\n"; got != want {
		t.Errorf("logged %q, want %q (handshake errors only at debug)", got, want)
	}
}

func (d dropTime) WithAttrs(attrs []slog.Attr) slog.Handler {
	return dropTime{d.Handler.WithAttrs(attrs)}
}

func (d dropTime) WithGroup(name string) slog.Handler { return dropTime{d.Handler.WithGroup(name)} }
