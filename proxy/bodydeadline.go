package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// DefaultBodyReadTimeout is how long a client has, by default, to send a
// whole request body.
const DefaultBodyReadTimeout = 30 * time.Second

// errBodyTimeout marks a request body that did not arrive before the body
// read deadline.
var errBodyTimeout = errors.New("proxy: request body read deadline passed")

// States of a deadlineBody.
const (
	bodyIdle     int32 = iota // not read yet: no deadline set
	bodyReading               // a deadline is set on the connection
	bodyFinished              // read to the end: the deadline is lifted
)

// deadlineBody bounds the time a client has to send its request body. The
// bound is a read deadline on the client's connection (or HTTP/2 stream),
// set through http.ResponseController when the body is first read and
// lifted as soon as it has been read to its end. Requests without a body
// (WebSocket handshakes, downloads) never get one, and an answer streamed
// after the body is not cut off by it.
//
// The deadline starts at the first read, not when the request arrives: a
// body that is complete in net/http's buffer but read late (after a slow
// refresh) must not meet an expired deadline, since net/http starts
// watching the connection for a client that went away when the body ends,
// with whatever deadline is set, and a timeout there cancels the request.
//
// Read is called by whoever consumes the body (the retry buffer in the
// handler's goroutine, or the upstream transport's writer goroutine);
// handlerDone and expired by the handler's goroutine, concurrently.
type deadlineBody struct {
	io.ReadCloser
	w       http.ResponseWriter
	timeout time.Duration

	state atomic.Int32
	// deadline is the deadline set, in Unix nanoseconds.
	deadline atomic.Int64
	timedOut atomic.Bool
}

// limitBodyRead puts the body read deadline on r's body, if it has one,
// and returns the guard (nil when there is nothing to guard).
func limitBodyRead(w http.ResponseWriter, r *http.Request, timeout time.Duration) *deadlineBody {
	if timeout <= 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	b := &deadlineBody{ReadCloser: r.Body, w: w, timeout: timeout}
	r.Body = b
	return b
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyIdle:
		b.start()
	case bodyFinished:
		// Once at its end, the body stays there. net/http's server body
		// hands out its last bytes together with io.EOF, and refuses any
		// Read after Close ("invalid Read on closed Body"); the upstream
		// transport reads once more after the declared length and may
		// close the body first when the answer comes early. That error
		// would fail the request write and cut off the answer.
		return 0, io.EOF
	}
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == nil:
	case err == io.EOF:
		if b.state.Swap(bodyFinished) != bodyFinished {
			_ = http.NewResponseController(b.w).SetReadDeadline(time.Time{})
		}
	case isTimeout(err):
		b.timedOut.Store(true)
		err = fmt.Errorf("%w: %w", errBodyTimeout, err)
	}
	return n, err
}

// start sets the deadline, once.
func (b *deadlineBody) start() {
	if !b.state.CompareAndSwap(bodyIdle, bodyReading) {
		return
	}
	d := time.Now().Add(b.timeout)
	b.deadline.Store(d.UnixNano())
	// A writer without deadlines (a test recorder) leaves the body
	// unbounded.
	_ = http.NewResponseController(b.w).SetReadDeadline(d)
}

// handlerDone bounds, when nothing has read the body, what net/http reads
// of it after the handler returns (it discards up to 256 KiB so the
// connection can be reused): a trickling client would otherwise hold the
// connection. Call it before the handler returns.
func (b *deadlineBody) handlerDone() {
	if b != nil && b.state.Load() == bodyIdle {
		b.start()
	}
}

// expired reports whether the request failed because its body did not
// arrive in time: a read timed out, or, when a cancellation won the race
// to report the failure, the body is unfinished past its deadline.
func (b *deadlineBody) expired() bool {
	if b == nil {
		return false
	}
	return b.timedOut.Load() ||
		(b.state.Load() == bodyReading && time.Now().UnixNano() >= b.deadline.Load())
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
