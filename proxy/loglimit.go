package proxy

import (
	"sync"
	"time"
)

// refusedLogoutLogEvery is how often a refused back-channel logout post may
// be logged at warn: a provider misconfiguration shows within a minute,
// and a flood of forged posts gives one line a minute.
const refusedLogoutLogEvery = time.Minute

// logLimiter lets one log line through per interval and counts the ones it
// held back. It is safe for concurrent use.
type logLimiter struct {
	every time.Duration
	now   func() time.Time

	mu         sync.Mutex // guards next and suppressed
	next       time.Time  // when the next line may be logged
	suppressed int        // lines held back since the last one logged
}

func newLogLimiter(every time.Duration, now func() time.Time) *logLimiter {
	return &logLimiter{every: every, now: now}
}

// allow reports whether a line may be logged now and, if so, how many were
// held back since the previous one.
func (l *logLimiter) allow() (ok bool, suppressed int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	suppressed, l.suppressed = l.suppressed, 0
	l.next = now.Add(l.every)
	return true, suppressed
}
