package session

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tokenrelay/tokenrelay/internal/idptest"
)

// TestRefreshSpans pins the spans of requests that share one refresh:
// each request gets session.load and session.refresh spans under its own
// span; exactly one leads the refresh, whose session.refresh.flight span
// (locked, with its lock wait, result success) sits under that request's
// refresh span; the others are marked shared and linked to the flight.
func TestRefreshSpans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		p := idptest.NewTokenEndpoint(time.Now, 5*time.Minute)
		m := newTestManager(t, NewMemoryStore(time.Now), time.Now, p, func(o *ManagerOptions) { o.TracerProvider = tp })
		tk := startSession(t, m, p)
		time.Sleep(5 * time.Minute) // the access token expired
		p.SetLatency(time.Second)   // so that the requests overlap

		const n = 3
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				ctx, span := tp.Tracer("test").Start(context.Background(), "request")
				defer span.End()
				<-start
				if _, err := m.AccessToken(ctx, TokenRequest{Ticket: tk}); err != nil {
					t.Errorf("request %d: %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()

		byName := map[string][]sdktrace.ReadOnlySpan{}
		for _, s := range rec.Ended() {
			byName[s.Name()] = append(byName[s.Name()], s)
		}
		if len(byName["session.load"]) != n || len(byName["session.refresh"]) != n || len(byName["session.refresh.flight"]) != 1 {
			t.Fatalf("spans: %d session.load, %d session.refresh, %d session.refresh.flight; want %d, %d, 1",
				len(byName["session.load"]), len(byName["session.refresh"]), len(byName["session.refresh.flight"]), n, n)
		}
		flight := byName["session.refresh.flight"][0]
		attrs := func(s sdktrace.ReadOnlySpan) map[string]string {
			out := map[string]string{}
			for _, a := range s.Attributes() {
				out[string(a.Key)] = a.Value.Emit()
			}
			return out
		}
		if a := attrs(flight); a[attrLocked] != "true" || a[attrResult] != "success" || a[attrShared] != "false" || a[attrLockWait] == "" {
			t.Errorf("flight attributes %v, want locked, success, not shared, a lock wait", a)
		}
		shared := 0
		for _, s := range byName["session.refresh"] {
			a := attrs(s)
			switch a[attrShared] {
			case "false":
				if flight.Parent().SpanID() != s.SpanContext().SpanID() {
					t.Errorf("the flight's parent is %s, want the leading request's refresh span %s", flight.Parent().SpanID(), s.SpanContext().SpanID())
				}
			case "true":
				shared++
				if links := s.Links(); len(links) != 1 || !links[0].SpanContext.Equal(flight.SpanContext()) {
					t.Errorf("a shared refresh span links to %v, want the flight", links)
				}
			}
			if a[attrResult] != "success" && a[attrResult] != "shared" {
				t.Errorf("refresh span result %q", a[attrResult])
			}
			if s.SpanKind() != trace.SpanKindInternal {
				t.Errorf("refresh span kind %v, want internal", s.SpanKind())
			}
		}
		if shared != n-1 {
			t.Errorf("%d requests shared the refresh, want %d", shared, n-1)
		}
	})
}
