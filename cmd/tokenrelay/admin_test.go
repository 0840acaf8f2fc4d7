package main

import (
	"errors"
	"fmt"
	"testing"
)

// TestReadinessAnswer: /readyz names each failed check and nothing of its
// cause.
func TestReadinessAnswer(t *testing.T) {
	cause := errors.New("dial tcp 10.0.0.7:6379: connect: connection refused")
	tests := []struct {
		err  error
		want string
	}{
		{failedCheck("store", cause), "not ready: store: unavailable"},
		{fmt.Errorf("wrapped: %w", failedCheck("store", cause)), "not ready: store: unavailable"},
		{errors.Join(failedCheck("provider", cause), nil, failedCheck("store", cause)), "not ready: provider: unavailable, store: unavailable"},
		{errors.Join(nil, failedCheck("store", cause)), "not ready: store: unavailable"},
		{cause, "not ready"},
	}
	for _, tt := range tests {
		if got := readinessAnswer(tt.err); got != tt.want {
			t.Errorf("readinessAnswer(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	if failedCheck("store", nil) != nil {
		t.Errorf("failedCheck(store, nil) != nil")
	}
}
