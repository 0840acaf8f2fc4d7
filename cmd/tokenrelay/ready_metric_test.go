package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// TestReadyGauge pins tokenrelay_ready to what /readyz answers at the same
// moment: 1 with 200, 0 with 503, whether the readiness check fails or
// shutdown has begun.
func TestReadyGauge(t *testing.T) {
	var readyErr atomic.Pointer[error]
	var draining atomic.Bool
	h := adminHandler(newRegistry(), func(context.Context) error {
		if p := readyErr.Load(); p != nil {
			return *p
		}
		return nil
	}, &draining, slog.New(slog.DiscardHandler), nil)

	storeDown := errors.New("store unreachable")
	steps := []struct {
		name      string
		err       error
		draining  bool
		wantCode  int
		wantGauge string
	}{
		{"ready", nil, false, http.StatusOK, "tokenrelay_ready 1"},
		{"check fails", storeDown, false, http.StatusServiceUnavailable, "tokenrelay_ready 0"},
		{"ready again", nil, false, http.StatusOK, "tokenrelay_ready 1"},
		{"draining", nil, true, http.StatusServiceUnavailable, "tokenrelay_ready 0"},
	}
	for _, s := range steps {
		readyErr.Store(&s.err)
		draining.Store(s.draining)
		if code, _ := serveAdmin(t, h, "/readyz"); code != s.wantCode {
			t.Errorf("%s: /readyz = %d, want %d", s.name, code, s.wantCode)
		}
		_, metrics := serveAdmin(t, h, "/metrics")
		if !slices.Contains(strings.Split(metrics, "\n"), s.wantGauge) {
			t.Errorf("%s: /metrics has no line %q", s.name, s.wantGauge)
		}
	}
}

func serveAdmin(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Code, string(body)
}
