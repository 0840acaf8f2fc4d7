package session

import (
	"github.com/tokenrelay/tokenrelay/internal/idptest"

	"context"
	"testing"
	"time"
)

// BenchmarkAccessTokenFresh is the steady-state request path: one Get, open
// the record, classify, no touch.
func BenchmarkAccessTokenFresh(b *testing.B) {
	ctx := context.Background()
	m := newTestManager(b, NewMemoryStore(nil), nil, idptest.NewTokenEndpoint(time.Now, time.Hour), nil)
	rec := *realisticRecord(b)
	rec.AccessExpiry = time.Now().Add(time.Hour)
	tk, err := m.Create(ctx, rec, ViaLogin)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.AccessToken(ctx, TokenRequest{Ticket: tk}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSealRecord(b *testing.B) {
	s := mustSealer(b, testSecret)
	tk, _ := NewTicket()
	key := sessionKey(tk.ID)
	rec := realisticRecord(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.sealRecord(tk, key, rec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenRecord(b *testing.B) {
	s := mustSealer(b, testSecret)
	tk, _ := NewTicket()
	key := sessionKey(tk.ID)
	data, err := s.sealRecord(tk, key, realisticRecord(b))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.openRecord(tk, key, data); err != nil {
			b.Fatal(err)
		}
	}
}
