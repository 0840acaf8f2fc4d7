package redisstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// defaultMaxGetBatch bounds how many Gets go in one pipeline (two commands
// each). A proxy has at most as many Gets waiting as requests in flight, so
// this rarely binds; it keeps one pipeline's write and reply small.
const defaultMaxGetBatch = 128

// errStoreClosed is what a Get gets once Store.Close has run.
var errStoreClosed = errors.New("store closed")

// getBatcher sends concurrent Gets to Redis together ("auto-pipelining", as
// rueidis does). A Get that finds no pipeline in flight sends its own at
// once, on its own context, so an idle proxy adds no latency and no
// goroutine hop. Gets that arrive while a pipeline is in flight queue up;
// when it returns, one flusher goroutine sends everything queued (up to
// maxBatch Gets) in one pipeline, and again until the queue is empty. There
// is no timer: a batch leaves as soon as the connection's previous round
// trip is over, so batching only ever replaces waiting for a turn.
//
// Under load this turns N round trips (N client writes and reads, N wake-ups
// of redis-server, N go-redis pool checkouts) into one, which on a small
// machine running both the proxy and Redis is most of a Get's cost.
//
// Every Get still reads Redis: batching shares the round trip, not results.
// A Cluster client splits a pipeline by node itself (ClusterClient groups
// its commands by slot and runs one pipeline per node), so the batcher works
// for every topology.
//
// getBatcher is safe for concurrent use.
type getBatcher struct {
	client   redis.UniversalClient
	maxBatch int
	// timeout bounds one batched pipeline, retries included, so a stall
	// does not hold the Gets queued behind it past their own deadlines.
	timeout time.Duration

	// ctx is the context of batched pipelines: they serve several callers,
	// so no one caller's cancellation may abort them. timeout bounds each;
	// close cancels ctx to abort one in flight.
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// queue holds the Gets waiting for the pipeline in flight to return;
	// busy says a pipeline (direct or batched) is in flight or a flusher
	// is about to send one; closed is set by close. All guarded by mu.
	queue  []*getCall
	busy   bool
	closed bool

	// flushers counts running flusher goroutines (at most one), so close
	// can wait for them.
	flushers sync.WaitGroup

	// calls recycles getCalls, with their done channels: a Get should
	// cost the proxy as little as the round trip allows.
	calls sync.Pool
}

// getCall is one Get. For a queued one, the flusher (or close) fills get
// and pttl (or err) and then sends on done, once. A call whose caller
// stopped waiting is never reused: its flusher may still write to it.
type getCall struct {
	ctx  context.Context
	get  *redis.StringCmd
	pttl *redis.DurationCmd
	err  error
	done chan struct{} // buffered: the flusher never waits for the caller
}

// newCall prepares a call of GET and PTTL on key.
func (b *getBatcher) newCall(ctx context.Context, key string) *getCall {
	c, _ := b.calls.Get().(*getCall)
	if c == nil {
		c = &getCall{done: make(chan struct{}, 1)}
	}
	k := any(key) // boxed once for both commands
	c.ctx, c.err = ctx, nil
	c.get = redis.NewStringCmd(ctx, "get", k)
	c.pttl = redis.NewDurationCmd(ctx, time.Millisecond, "pttl", k)
	return c
}

// release hands back c's results and recycles it.
func (b *getBatcher) release(c *getCall) (*redis.StringCmd, *redis.DurationCmd, error) {
	get, pttl, err := c.get, c.pttl, c.err
	*c = getCall{done: c.done}
	b.calls.Put(c)
	return get, pttl, err
}

func newGetBatcher(client redis.UniversalClient, maxBatch int, timeout time.Duration) *getBatcher {
	if maxBatch <= 0 {
		maxBatch = defaultMaxGetBatch
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &getBatcher{client: client, maxBatch: maxBatch, timeout: timeout, ctx: ctx, cancel: cancel}
}

// do runs GET and PTTL on key (already prefixed) and returns the commands
// with their replies. err is an error of the round trip (network, closed,
// ctx); a missing key is get.Err() == redis.Nil. A caller whose ctx ends
// while queued returns ctx's error at once; its Get is then left out of
// the batch, or its reply dropped.
func (b *getBatcher) do(ctx context.Context, key string) (*redis.StringCmd, *redis.DurationCmd, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	c := b.newCall(ctx, key)
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		b.release(c)
		return nil, nil, errStoreClosed
	case !b.busy:
		// Nothing in flight: send it now, on the caller's own context.
		b.busy = true
		b.mu.Unlock()
		one := [1]*getCall{c}
		b.exec(ctx, one[:])
		b.handOff()
		return b.release(c)
	}
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	select {
	case <-c.done:
		return b.release(c)
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// handOff ends a direct Get's turn: Gets queued meanwhile go to a flusher
// goroutine, so the caller that sent the direct Get returns at once.
func (b *getBatcher) handOff() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || len(b.queue) == 0 {
		b.busy = false
		return
	}
	b.flushers.Add(1)
	go b.flush()
}

// flush sends the queue in pipelines of at most maxBatch Gets, one after
// the other, until it is empty.
func (b *getBatcher) flush() {
	defer b.flushers.Done()
	batch := make([]*getCall, 0, b.maxBatch)
	for {
		b.mu.Lock()
		if b.closed || len(b.queue) == 0 {
			b.busy = false
			b.mu.Unlock()
			return
		}
		batch = batch[:0]
		for _, c := range b.queue {
			if len(batch) == b.maxBatch {
				break
			}
			batch = append(batch, c)
		}
		n := copy(b.queue, b.queue[len(batch):])
		clear(b.queue[n:])
		b.queue = b.queue[:n]
		b.mu.Unlock()

		ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
		b.exec(ctx, batch)
		cancel()
		for _, c := range batch {
			c.done <- struct{}{}
		}
	}
}

// exec sends the Gets of calls whose callers still wait in one pipeline.
// A Redis reply (a value, nil, or an error reply) stays on its command; a
// failure of the round trip itself goes to every call.
func (b *getBatcher) exec(ctx context.Context, calls []*getCall) {
	live := 0
	p := b.client.Pipeline()
	for _, c := range calls {
		if err := c.ctx.Err(); err != nil {
			c.err = err // its caller has gone (or is about to)
			continue
		}
		live++
		_ = p.Process(ctx, c.get)
		_ = p.Process(ctx, c.pttl)
	}
	if live == 0 {
		return
	}
	_, err := p.Exec(ctx)
	if err == nil || isRedisReply(err) {
		return
	}
	for _, c := range calls {
		if c.err == nil {
			c.err = err
		}
	}
}

// isRedisReply says whether err came from Redis's answer to one command
// (not found, or an error reply such as WRONGTYPE) rather than from the
// round trip.
func isRedisReply(err error) bool {
	var re redis.Error
	return errors.Is(err, redis.Nil) || errors.As(err, &re)
}

// close fails every queued Get, aborts a batched pipeline in flight, and
// waits for the flusher to stop. Later Gets fail with errStoreClosed. A
// direct Get in flight runs to its end on its caller's context.
func (b *getBatcher) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	queued := b.queue
	b.queue = nil
	b.mu.Unlock()

	b.cancel()
	for _, c := range queued {
		c.err = errStoreClosed
		c.done <- struct{}{}
	}
	b.flushers.Wait()
}
