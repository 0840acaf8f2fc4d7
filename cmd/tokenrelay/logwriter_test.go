package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
)

// gatedWriter is a log destination whose writes wait for release (when
// gated) and that records each write it was given.
type gatedWriter struct {
	release chan struct{} // nil: writes do not wait
	mu      sync.Mutex
	writes  [][]byte
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	if g.release != nil {
		<-g.release
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writes = append(g.writes, bytes.Clone(p))
	return len(p), nil
}

func (g *gatedWriter) text() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return string(bytes.Join(g.writes, nil))
}

func (g *gatedWriter) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.writes)
}

// Lines written concurrently by many goroutines all arrive, whole, and in
// the order each goroutine wrote them.
func TestLogWriterKeepsEveryLineWholeAndInOrder(t *testing.T) {
	dst := &gatedWriter{}
	w := newLogWriter(dst, 512)
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(w, `{"g":%d,"i":%d,"pad":"%s"}`+"\n", g, i, strings.Repeat("x", i%40))
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	next := make([]int, writers)
	got := strings.Split(strings.TrimSuffix(dst.text(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines written, want %d", len(got), writers*lines)
	}
	for _, line := range got {
		var g, i int
		var pad string
		if _, err := fmt.Sscanf(line, `{"g":%d,"i":%d,"pad":%q}`, &g, &i, &pad); err != nil {
			t.Fatalf("line %q is not whole: %v", line, err)
		}
		if i != next[g] || pad != strings.Repeat("x", i%40) {
			t.Fatalf("line %q of writer %d, want its line %d", line, g, next[g])
		}
		next[g]++
	}
	if dst.count() >= writers*lines {
		t.Errorf("%d writes for %d lines: lines were not batched", dst.count(), writers*lines)
	}
}

// Close returns only when every buffered line has been written, even
// while the destination is slow; lines logged after Close are written at
// once.
func TestLogWriterCloseWritesEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dst := &gatedWriter{release: make(chan struct{})}
		w := newLogWriter(dst, 1<<10)
		for i := range 20 {
			fmt.Fprintf(w, "line %d\n", i)
		}
		closed := make(chan struct{})
		go func() {
			w.Close()
			close(closed)
		}()
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("Close returned while lines were unwritten")
		default:
		}
		close(dst.release)
		<-closed

		var want strings.Builder
		for i := range 20 {
			fmt.Fprintf(&want, "line %d\n", i)
		}
		if got := dst.text(); got != want.String() {
			t.Fatalf("written %q, want %q", got, want.String())
		}
		fmt.Fprintf(w, "after close\n")
		if got := dst.text(); !strings.HasSuffix(got, "line 19\nafter close\n") {
			t.Errorf("a line logged after Close: written %q", got)
		}
	})
}

// A full buffer makes Write wait for the destination (no line dropped),
// and what waits in memory stays within the bound.
func TestLogWriterBlocksWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dst := &gatedWriter{release: make(chan struct{})}
		const max = 100
		w := newLogWriter(dst, max)
		line := []byte(strings.Repeat("a", 24) + "\n") // 25 bytes
		// The first line is taken by the writer goroutine, which then waits
		// for the destination; four more fill the buffer.
		w.Write(line)
		synctest.Wait()
		for range 4 {
			w.Write(line)
		}
		var returned atomic.Bool
		go func() {
			w.Write(line)
			returned.Store(true)
		}()
		synctest.Wait()
		if returned.Load() {
			t.Fatal("Write into a full buffer returned before the destination took anything")
		}
		w.mu.Lock()
		queued := len(w.queued)
		w.mu.Unlock()
		if queued != max {
			t.Errorf("%d bytes buffered, want %d (the bound)", queued, max)
		}

		close(dst.release)
		synctest.Wait()
		if !returned.Load() {
			t.Fatal("Write still blocked after the destination caught up")
		}
		w.Close()
		if got, want := dst.text(), strings.Repeat(string(line), 6); got != want {
			t.Errorf("written %d bytes, want %d", len(got), len(want))
		}
	})
}

// A line longer than the whole buffer is still written, whole.
func TestLogWriterLongLine(t *testing.T) {
	dst := &gatedWriter{}
	w := newLogWriter(dst, 16)
	long := strings.Repeat("z", 100) + "\n"
	fmt.Fprint(w, "short\n")
	fmt.Fprint(w, long)
	fmt.Fprint(w, "short\n")
	w.Close()
	if got, want := dst.text(), "short\n"+long+"short\n"; got != want {
		t.Errorf("written %q, want %q", got, want)
	}
}
