package session

import (
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// The session manager's spans, when a TracerProvider is given:
//
//	session.load            reading the record of a request (and sliding it)
//	session.refresh         a request waiting for a refresh; shared: the
//	                        tokens came from another request's or replica's
//	                        refresh (linked to that flight's span when it
//	                        ran in this process)
//	session.refresh.flight  one refresh: the lock wait, the token call (a
//	                        client span of the provider's HTTP client) and
//	                        the save
//
// Attributes say what happened (shared or not, lock wait, result), never a
// token, a ticket or a session id.

// Span attribute keys.
const (
	attrShared   = "tokenrelay.refresh.shared"
	attrResult   = "tokenrelay.refresh.result"
	attrLockWait = "tokenrelay.refresh.lock_wait_ms"
	attrLocked   = "tokenrelay.refresh.locked"
)

// outcomeResult names an outcome for a span: success, shared (another
// refresh's tokens), fallback (failed, old token still valid), rejected
// (the session ended), unavailable, or error.
func outcomeResult(o outcome, err error) string {
	if err == nil {
		err = o.err
	}
	var ue *UnavailableError
	switch {
	case o.fallback:
		return "fallback"
	case err == nil && o.shared:
		return "shared"
	case err == nil:
		return "success"
	case errors.Is(err, ErrSessionExpired), errors.Is(err, ErrNoSession):
		return "rejected"
	case errors.As(err, &ue):
		return "unavailable"
	}
	return "error"
}

// traceAwait ends the span of a request that waited for a refresh.
func traceAwait(span trace.Span, o outcome, shared bool, err error) {
	if span.IsRecording() {
		span.SetAttributes(
			attribute.Bool(attrShared, shared),
			attribute.String(attrResult, outcomeResult(o, err)),
		)
		if shared && o.span.IsValid() && !o.span.Equal(span.SpanContext()) {
			span.AddLink(trace.Link{SpanContext: o.span})
		}
		if err != nil {
			span.SetStatus(codes.Error, outcomeResult(o, err))
		}
	}
	span.End()
}

// traceFlight ends a flight's span and returns its span context for the
// outcome.
func traceFlight(span trace.Span, f *flight, o outcome) trace.SpanContext {
	if span.IsRecording() {
		span.SetAttributes(
			attribute.Bool(attrLocked, !f.lockedAt.IsZero()),
			attribute.Int64(attrLockWait, f.lockWait.Milliseconds()),
			attribute.Bool(attrShared, o.shared),
			attribute.String(attrResult, outcomeResult(o, nil)),
		)
		if o.err != nil && !o.fallback {
			span.SetStatus(codes.Error, outcomeResult(o, nil))
		}
	}
	span.End()
	return span.SpanContext()
}

// spanError marks span failed with err's kind (never its text, which may
// name a store address).
func spanError(span trace.Span, err error) {
	if span.IsRecording() {
		span.SetStatus(codes.Error, outcomeResult(outcome{}, err))
	}
}
