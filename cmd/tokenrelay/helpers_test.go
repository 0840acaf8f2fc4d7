package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenrelay/tokenrelay/config"
)

// testDeadline bounds every wait on a condition in these tests.
const testDeadline = 30 * time.Second

// syncBuffer is a bytes.Buffer safe for the server's concurrent log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// minimalYAML is a valid configuration on free loopback ports.
const minimalYAML = `
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
public_url: http://localhost:8080
log: {level: debug}
provider: {issuer: "http://127.0.0.1:9", client_id: test}
routes: [{path: /, upstream: "http://127.0.0.1:9"}]
`

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testApp is an app whose handler answers "hello", except /slow, which
// holds the request until release is closed.
type testApp struct {
	started chan struct{} // one value per /slow request that began
	release chan struct{}
	ready   func(context.Context) error
	closed  chan struct{}
}

func newTestApp() *testApp {
	return &testApp{
		started: make(chan struct{}, 8),
		release: make(chan struct{}),
		ready:   func(context.Context) error { return nil },
		closed:  make(chan struct{}),
	}
}

func (ta *testApp) build(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*app, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ta.started <- struct{}{}
		<-ta.release
		_, _ = io.WriteString(w, "slow done")
	})
	// /upgrade hijacks the connection, as the proxy does for a WebSocket,
	// and holds it until release.
	mux.HandleFunc("/upgrade", func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
		_ = buf.Flush()
		ta.started <- struct{}{}
		<-ta.release
		_, _ = buf.WriteString("tunnel done")
		_ = buf.Flush()
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	})
	return &app{
		Handler: mux,
		ForwardAuth: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "verify "+r.URL.Path)
		}),
		Ready: func(ctx context.Context) error { return ta.ready(ctx) },
		Close: func() error {
			close(ta.closed)
			return nil
		},
	}, nil
}

// running is a server started in-process by run.
type running struct {
	addrs  map[string]string // listener name -> address
	cancel context.CancelFunc
	done   chan int // run's exit code
	stderr *syncBuffer
	stdout *syncBuffer
}

// startServe runs `serve --config path` with c's seams and waits until the
// listeners in want are bound.
func startServe(t *testing.T, c *cli, configPath string, want ...string) *running {
	t.Helper()
	if len(want) == 0 {
		want = []string{"main", "admin"}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{addrs: map[string]string{}, cancel: cancel, done: make(chan int, 1), stderr: &syncBuffer{}, stdout: &syncBuffer{}}
	c.stdout, c.stderr = r.stdout, r.stderr
	bound := make(chan [2]string, 4)
	c.listening = func(name, addr string) { bound <- [2]string{name, addr} }
	go func() { r.done <- c.run(ctx, []string{"serve", "--config", configPath}) }()

	deadline := time.After(testDeadline)
	for len(r.addrs) < len(want) {
		select {
		case b := <-bound:
			r.addrs[b[0]] = b[1]
		case code := <-r.done:
			cancel()
			t.Fatalf("serve exited with %d before listening; stderr:\n%s", code, r.stderr)
		case <-deadline:
			cancel()
			t.Fatalf("listeners %v not bound within %s; stderr:\n%s", want, testDeadline, r.stderr)
		}
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(testDeadline):
			t.Errorf("serve still running %s after cancel", testDeadline)
		}
		if t.Failed() {
			t.Logf("serve stderr:\n%s", r.stderr)
		}
	})
	return r
}

// wait returns run's exit code, failing the test if it does not come.
func (r *running) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.done:
		r.done <- code // keep it for Cleanup
		return code
	case <-time.After(testDeadline):
		t.Fatalf("serve did not exit within %s; stderr:\n%s", testDeadline, r.stderr)
		return -1
	}
}

// get does one GET on a fresh connection and returns status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: testDeadline}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// waitFor polls cond until it holds, failing the test after testDeadline.
// It is for conditions only observable from outside (an HTTP status), not
// a substitute for synchronisation.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(testDeadline)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// statusOf returns the status of GET url, or 0 when the request fails.
func statusOf(url string) int {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func hasLine(out, substr string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, substr) {
			return true
		}
	}
	return false
}
