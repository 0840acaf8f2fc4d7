package main

import (
	"io"
	"sync"
)

// logBufferBytes bounds the log lines waiting to be written: about a
// thousand access log lines, a tenth of a second of a busy proxy's log.
const logBufferBytes = 256 << 10

// logWriter is the process log's destination. slog's handlers hold their
// lock across Write, so with stderr written directly every request's access
// log line waited for a write system call, and for the lines of all the
// requests queued before it (the access log's lock was 70–80 % of the
// process's lock waiting under load). Write only copies the line into a
// buffer; one goroutine writes what has gathered, as many lines as arrived
// meanwhile in one system call. There is no timer: a batch leaves as soon
// as the previous write has returned, so a quiet process writes each line
// at once.
//
// When the buffer holds logBufferBytes (the destination cannot keep up),
// Write blocks until the writer goroutine has taken the buffer: lines are
// never dropped, and memory stays bounded (two buffers of about
// logBufferBytes; a single longer line is taken alone). Lines keep their
// order, and each Write's bytes stay together. Close writes what is
// buffered and waits for it; after Close, Write writes through.
//
// logWriter is safe for concurrent use.
type logWriter struct {
	dst io.Writer
	max int

	mu sync.Mutex
	// queued holds the bytes of whole Writes not yet taken by the writer
	// goroutine; spare is the buffer it wrote last, kept for reuse.
	queued, spare []byte
	// closing: Close has been called; stopped: the writer goroutine has
	// written everything and ended. All guarded by mu.
	closing, stopped bool
	// ready wakes the writer goroutine (something queued, or closing);
	// room wakes Writes blocked on a full buffer.
	ready, room sync.Cond
	done        chan struct{}
}

// newLogWriter starts the goroutine that writes to dst; max bounds the
// bytes buffered (logBufferBytes when not positive).
func newLogWriter(dst io.Writer, max int) *logWriter {
	if max <= 0 {
		max = logBufferBytes
	}
	w := &logWriter{dst: dst, max: max, done: make(chan struct{})}
	w.ready.L = &w.mu
	w.room.L = &w.mu
	go w.drain()
	return w
}

// Write queues a copy of p. It fails never (a failed write of the
// destination is not reported to the logger, which could not act on it).
func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.stopped && len(w.queued) > 0 && len(w.queued)+len(p) > w.max {
		w.room.Wait()
	}
	if w.stopped {
		return w.dst.Write(p)
	}
	w.queued = append(w.queued, p...)
	if len(w.queued) == len(p) {
		w.ready.Signal()
	}
	return len(p), nil
}

// drain is the writer goroutine: it takes the queued bytes and writes them,
// until Close has been called and nothing is left.
func (w *logWriter) drain() {
	defer close(w.done)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for len(w.queued) == 0 && !w.closing {
			w.ready.Wait()
		}
		if len(w.queued) == 0 {
			w.stopped = true
			w.room.Broadcast()
			return
		}
		batch := w.queued
		w.queued = w.spare[:0]
		w.room.Broadcast()
		w.mu.Unlock()
		_, _ = w.dst.Write(batch)
		w.mu.Lock()
		if cap(batch) <= 2*w.max {
			w.spare = batch[:0]
		} else {
			// Grown by one very long line: let it go.
			w.spare = nil
		}
	}
}

// Close writes the buffered lines, waits until they are written, and makes
// later Writes write through. It is idempotent and returns nil.
func (w *logWriter) Close() error {
	w.mu.Lock()
	w.closing = true
	w.ready.Signal()
	w.mu.Unlock()
	<-w.done
	return nil
}
