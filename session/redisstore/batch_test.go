package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/redistest"
	"github.com/tokenrelay/tokenrelay/session/storage"
)

// pipelineGate is a go-redis hook that records the keys of the GETs in each
// pipeline holding any and can hold chosen pipelines (1-based) until released, so a test
// can line Gets up behind one in flight.
type pipelineGate struct {
	mu        sync.Mutex
	pipelines [][]string // guarded by mu

	entered map[int]chan struct{} // closed when pipeline n starts
	release map[int]chan struct{} // pipeline n waits for this (or its ctx)
}

func newPipelineGate(hold ...int) *pipelineGate {
	g := &pipelineGate{entered: map[int]chan struct{}{}, release: map[int]chan struct{}{}}
	for _, n := range hold {
		g.entered[n] = make(chan struct{})
		g.release[n] = make(chan struct{})
	}
	return g
}

func (g *pipelineGate) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (g *pipelineGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (g *pipelineGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var keys []string
		for _, c := range cmds {
			if c.Name() == "get" {
				keys = append(keys, fmt.Sprint(c.Args()[1]))
			}
		}
		if len(keys) == 0 {
			return next(ctx, cmds) // go-redis's own, such as a connection's HELLO
		}
		g.mu.Lock()
		g.pipelines = append(g.pipelines, keys)
		n := len(g.pipelines)
		g.mu.Unlock()
		if release, ok := g.release[n]; ok {
			close(g.entered[n])
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return next(ctx, cmds)
	}
}

// recorded returns the GET keys of each pipeline so far, without the
// store's key prefix.
func (g *pipelineGate) recorded(prefix string) [][]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([][]string, len(g.pipelines))
	for i, p := range g.pipelines {
		for _, k := range p {
			out[i] = append(out[i], strings.TrimPrefix(k, prefix))
		}
	}
	return out
}

// waitEntered waits until pipeline n has started.
func (g *pipelineGate) waitEntered(t *testing.T, n int) {
	t.Helper()
	select {
	case <-g.entered[n]:
	case <-time.After(10 * time.Second):
		t.Fatalf("pipeline %d did not start", n)
	}
}

// newBatchStore returns a store on the shared redis-server whose Gets batch
// at most maxBatch at a time, with gate hooked into its client.
func newBatchStore(t *testing.T, maxBatch int, gate *pipelineGate) (*Store, string) {
	t.Helper()
	srv := redistest.Shared(t)
	c := newTestRedisClient(t, Options{URL: "redis://" + srv.Addr})
	if gate != nil {
		c.AddHook(gate)
	}
	prefix := redistest.KeyPrefix(t)
	s := New(c, Options{KeyPrefix: prefix}, nil)
	s.gets = newGetBatcher(c, maxBatch, s.opTimeout)
	t.Cleanup(func() { _ = s.Close() })
	return s, prefix
}

// waitQueued waits until n Gets are queued behind the pipeline in flight.
func waitQueued(t *testing.T, b *getBatcher, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		got := len(b.queue)
		b.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Gets queued, want %d", got, n)
		}
		runtime.Gosched()
	}
}

type getReply struct {
	e   storage.Entry
	err error
}

// goGet starts a Get and returns the channel its result arrives on.
func goGet(ctx context.Context, s *Store, key string) <-chan getReply {
	ch := make(chan getReply, 1)
	go func() {
		e, err := s.Get(ctx, key)
		ch <- getReply{e, err}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan getReply) getReply {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Get did not return")
		return getReply{}
	}
}

func TestRedisGetBatchManyGoroutines(t *testing.T) {
	for _, maxBatch := range []int{1, 3, defaultMaxGetBatch} {
		t.Run(fmt.Sprint("max", maxBatch), func(t *testing.T) {
			s, _ := newBatchStore(t, maxBatch, nil)
			ctx := context.Background()
			const stored, absent, goroutines = 40, 10, 400
			for i := range stored {
				key := fmt.Sprint("k", i)
				if err := s.Create(ctx, key, []byte("data-"+key), time.Hour); err != nil {
					t.Fatal(err)
				}
				if i%2 == 1 { // odd keys are at version 2
					if _, err := s.Update(ctx, key, 1, []byte("data2-"+key), time.Hour); err != nil {
						t.Fatal(err)
					}
				}
			}
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := range goroutines {
				wg.Go(func() {
					i := g % (stored + absent)
					key := fmt.Sprint("k", i)
					got, err := s.Get(ctx, key)
					switch {
					case i >= stored:
						if !errors.Is(err, storage.ErrNotFound) {
							errs <- fmt.Errorf("Get(%s) = %v, want storage.ErrNotFound", key, err)
						}
					case err != nil:
						errs <- fmt.Errorf("Get(%s): %v", key, err)
					default:
						want, wantV := "data-"+key, uint64(1)
						if i%2 == 1 {
							want, wantV = "data2-"+key, 2
						}
						if string(got.Data) != want || got.Version != wantV || got.TTL <= 59*time.Minute || got.TTL > time.Hour {
							errs <- fmt.Errorf("Get(%s) = %q v%d ttl %s, want %q v%d ttl (59m, 1h]", key, got.Data, got.Version, got.TTL, want, wantV)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestRedisGetBatchQueuesBehindPipeline: Gets that arrive while one is in
// flight go together in pipelines of at most maxBatch, in arrival order.
func TestRedisGetBatchQueuesBehindPipeline(t *testing.T) {
	gate := newPipelineGate(1)
	s, prefix := newBatchStore(t, 8, gate)
	ctx := context.Background()
	if err := s.Create(ctx, "k0", []byte("zero"), time.Hour); err != nil {
		t.Fatal(err)
	}

	first := goGet(ctx, s, "k0")
	gate.waitEntered(t, 1)
	var queued []<-chan getReply
	var want [][]string
	want = append(want, []string{"k0"})
	for i := 1; i <= 20; i++ {
		key := fmt.Sprint("k", i)
		queued = append(queued, goGet(ctx, s, key))
		waitQueued(t, s.gets, i) // one at a time, so the order is known
		if (i-1)%8 == 0 {
			want = append(want, nil)
		}
		want[len(want)-1] = append(want[len(want)-1], key)
	}
	close(gate.release[1])

	if r := receive(t, first); r.err != nil || string(r.e.Data) != "zero" {
		t.Errorf("first Get = %q, %v; want \"zero\", nil", r.e.Data, r.err)
	}
	for i, ch := range queued {
		if r := receive(t, ch); !errors.Is(r.err, storage.ErrNotFound) {
			t.Errorf("queued Get k%d = %v, want storage.ErrNotFound", i+1, r.err)
		}
	}
	if got := gate.recorded(prefix); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("pipelines = %q, want %q", got, want)
	}
}

// TestRedisGetBatchCancelledCaller: a queued caller whose context ends
// returns at once with its context's error, and its Get is left out of the
// batch; the others get their own results.
func TestRedisGetBatchCancelledCaller(t *testing.T) {
	gate := newPipelineGate(1)
	s, prefix := newBatchStore(t, 0, gate)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		if err := s.Create(ctx, k, []byte("v-"+k), time.Hour); err != nil {
			t.Fatal(err)
		}
	}

	first := goGet(ctx, s, "a")
	gate.waitEntered(t, 1)
	b := goGet(ctx, s, "b")
	waitQueued(t, s.gets, 1)
	cctx, cancel := context.WithCancel(ctx)
	cancelled := goGet(cctx, s, "gone")
	waitQueued(t, s.gets, 2)
	c := goGet(ctx, s, "c")
	waitQueued(t, s.gets, 3)

	cancel()
	// Pipeline 1 is still held: the cancelled caller returns without it.
	if r := receive(t, cancelled); !errors.Is(r.err, context.Canceled) || !strings.HasPrefix(r.err.Error(), "redisstore: get: ") {
		t.Errorf("cancelled Get = %v, want a \"redisstore: get: \" error wrapping context.Canceled", r.err)
	}
	close(gate.release[1])

	for _, tt := range []struct {
		key string
		ch  <-chan getReply
	}{{"a", first}, {"b", b}, {"c", c}} {
		if r := receive(t, tt.ch); r.err != nil || string(r.e.Data) != "v-"+tt.key || r.e.Version != 1 {
			t.Errorf("Get(%s) = %q v%d, %v; want %q v1", tt.key, r.e.Data, r.e.Version, r.err, "v-"+tt.key)
		}
	}
	want := [][]string{{"a"}, {"b", "c"}}
	if got := gate.recorded(prefix); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("pipelines = %q, want %q", got, want)
	}

	// Calls are recycled; the one whose caller left is not: later Gets
	// get their own answers.
	for range 3 {
		for _, k := range []string{"a", "b", "c"} {
			if e, err := s.Get(ctx, k); err != nil || string(e.Data) != "v-"+k {
				t.Errorf("later Get(%s) = %q, %v; want %q", k, e.Data, err, "v-"+k)
			}
		}
	}
}

// TestRedisGetBatchRedisDown: with nothing listening, every one of many
// concurrent Gets fails with a store error, promptly.
func TestRedisGetBatchRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // connections to addr are now refused

	c := newTestRedisClient(t, Options{URL: "redis://" + addr})
	s := New(c, Options{}, nil)
	t.Cleanup(func() { _ = s.Close() })

	const goroutines = 50
	const bound = 5 * time.Second // retries back off up to 512ms each
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, goroutines)
	for i := range goroutines {
		wg.Go(func() { _, errs[i] = s.Get(context.Background(), fmt.Sprint("k", i)) })
	}
	wg.Wait()
	took := time.Since(start)
	for i, err := range errs {
		if err == nil || errors.Is(err, storage.ErrNotFound) || !strings.HasPrefix(err.Error(), "redisstore: get: ") {
			t.Errorf("Get %d with Redis down = %v, want a \"redisstore: get: \" store error", i, err)
		}
	}
	if took > bound {
		t.Errorf("%d Gets with Redis down took %s, want ≤ %s", goroutines, took, bound)
	}
	t.Logf("%d Gets with Redis down all failed within %s", goroutines, took)
}

// TestRedisGetBatchClose: Close fails the queued Gets at once and aborts a
// batched pipeline in flight; a direct Get in flight completes; Gets after
// Close fail.
func TestRedisGetBatchClose(t *testing.T) {
	t.Run("queued", func(t *testing.T) {
		gate := newPipelineGate(1)
		s, _ := newBatchStore(t, 0, gate)
		ctx := context.Background()
		if err := s.Create(ctx, "a", []byte("v-a"), time.Hour); err != nil {
			t.Fatal(err)
		}
		first := goGet(ctx, s, "a")
		gate.waitEntered(t, 1)
		var queued []<-chan getReply
		for i := range 5 {
			queued = append(queued, goGet(ctx, s, fmt.Sprint("q", i)))
			waitQueued(t, s.gets, i+1)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		for i, ch := range queued {
			if r := receive(t, ch); !errors.Is(r.err, errStoreClosed) {
				t.Errorf("queued Get %d after Close = %v, want errStoreClosed", i, r.err)
			}
		}
		close(gate.release[1])
		if r := receive(t, first); r.err != nil || string(r.e.Data) != "v-a" {
			t.Errorf("direct Get across Close = %q, %v; want \"v-a\", nil", r.e.Data, r.err)
		}
		if _, err := s.Get(ctx, "a"); !errors.Is(err, errStoreClosed) {
			t.Errorf("Get after Close = %v, want errStoreClosed", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
	t.Run("batch in flight", func(t *testing.T) {
		gate := newPipelineGate(1, 2)
		s, _ := newBatchStore(t, 0, gate)
		ctx := context.Background()
		first := goGet(ctx, s, "a")
		gate.waitEntered(t, 1)
		b, c := goGet(ctx, s, "b"), goGet(ctx, s, "c")
		waitQueued(t, s.gets, 2)
		close(gate.release[1])
		if r := receive(t, first); !errors.Is(r.err, storage.ErrNotFound) {
			t.Errorf("direct Get = %v, want storage.ErrNotFound", r.err)
		}
		gate.waitEntered(t, 2) // the batch of b and c is in flight, held

		closed := make(chan error, 1)
		go func() { closed <- s.Close() }()
		for _, ch := range []<-chan getReply{b, c} {
			if r := receive(t, ch); !errors.Is(r.err, context.Canceled) {
				t.Errorf("batched Get across Close = %v, want context.Canceled", r.err)
			}
		}
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("Close: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return")
		}
	})
}
