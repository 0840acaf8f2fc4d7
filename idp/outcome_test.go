package idp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestRefreshOutcomeOnTheWire pins how a refresh that got no answer is
// classified: one that never reached the provider (refused connection)
// spent nothing and may be retried; one the provider read and did not
// answer (a hang, a reset) has an unknown outcome.
func TestRefreshOutcomeOnTheWire(t *testing.T) {
	refused := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr + "/token"
	}
	serve := func(h http.HandlerFunc) func(t *testing.T) string {
		return func(t *testing.T) string {
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			return srv.URL + "/token"
		}
	}
	tests := []struct {
		name        string
		endpoint    func(t *testing.T) string
		wantSent    bool
		wantUnknown bool
	}{
		{"connection refused", refused, false, false},
		{"provider hangs", serve(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done() // the request was read; no answer comes
		}), true, true},
		{"connection reset after the request", serve(func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		}), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := customProvider(t, func(o *Options) { o.TokenEndpoint = tt.endpoint(t) })
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			_, err := p.Refresh(ctx, "rt")
			var te *TokenError
			if !errors.As(err, &te) || te.Status != 0 {
				t.Fatalf("Refresh = %v, want a *TokenError without status", err)
			}
			if te.Sent != tt.wantSent || te.OutcomeUnknown() != tt.wantUnknown {
				t.Errorf("Sent %v, OutcomeUnknown %v; want %v, %v (error %v)", te.Sent, te.OutcomeUnknown(), tt.wantSent, tt.wantUnknown, err)
			}
			if !te.Temporary() || errors.Is(err, ErrInvalidGrant) || errors.Is(err, ErrClientRejected) {
				t.Errorf("Temporary %v, dead %v, client rejected %v; want a temporary failure only", te.Temporary(), errors.Is(err, ErrInvalidGrant), errors.Is(err, ErrClientRejected))
			}
		})
	}
}
