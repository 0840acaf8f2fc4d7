package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// binaries built once by TestMain.
var bins struct {
	dir        string // temp dir holding them
	root       string // module root
	tokenrelay string
	api        string
	err        error // build failure, reported by every test
}

func TestMain(m *testing.M) {
	flag.Parse()
	listing := flag.Lookup("test.list") != nil && flag.Lookup("test.list").Value.String() != ""
	if !testing.Short() && !listing {
		if bins.root, bins.err = moduleRoot(); bins.err == nil {
			bins.err = buildBinaries()
		}
	}
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the tokenrelay module")
	}
	return filepath.Dir(gomod), nil
}

func buildBinaries() error {
	var err error
	bins.dir, err = os.MkdirTemp("", "tokenrelay-e2e-")
	if err != nil {
		return err
	}
	bins.tokenrelay = filepath.Join(bins.dir, "tokenrelay")
	bins.api = filepath.Join(bins.dir, "demo-api")
	builds := []struct {
		out  string
		pkg  string
		race bool
	}{
		// The binary under test runs with the race detector: a data race in
		// any request path fails the test that triggered it.
		{bins.tokenrelay, "./cmd/tokenrelay", true},
		{bins.api, "./examples/demo/api", false},
	}
	for _, b := range builds {
		args := []string{"build", "-o", b.out}
		if b.race {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Dir = bins.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(cmd.Args[1:], " "), err, out)
		}
	}
	return nil
}

// requireBinaries skips in -short mode and fails when the build failed.
func requireBinaries(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	if bins.err != nil {
		t.Fatalf("e2e: building the binaries failed: %v", bins.err)
	}
}

// inCI reports whether the tests run in CI, where missing tools are failures
// rather than reasons to skip.
func inCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// logSink keeps a process's combined output in memory and in a file, and
// wakes waiters at every write.
type logSink struct {
	mu      sync.Mutex
	f       *os.File
	buf     bytes.Buffer  // guarded by mu
	changed chan struct{} // closed and replaced at every write; guarded by mu
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	close(s.changed)
	s.changed = make(chan struct{})
	return s.f.Write(p)
}

func (s *logSink) snapshot() (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String(), s.changed
}

// process is a child process started by a test and stopped by its cleanup.
type process struct {
	name    string
	cmd     *exec.Cmd
	log     *logSink
	logPath string
	exited  chan struct{} // closed when the process has exited
	waitErr error         // set before exited is closed
	stopped bool          // set when stop sent the signal
}

// startProcess runs bin with args and env (added to a minimal environment),
// capturing stdout and stderr into <name>.log under the test's temp dir. The
// process is stopped by PID when the test ends; when the test failed, the
// tail of its output is printed.
func startProcess(t *testing.T, name, dir string, env []string, bin string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p := &process{
		name:    name,
		log:     &logSink{f: f, changed: make(chan struct{})},
		logPath: logPath,
		exited:  make(chan struct{}),
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(baseEnv(), env...)
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	// Its own process group, so a Ctrl-C in the terminal reaches the test
	// first and the test stops its children in order.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("%s: start %s: %v", name, bin, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop(t)
		f.Close()
		if t.Failed() {
			t.Logf("---- last lines of %s (%s) ----\n%s", name, logPath, p.tail(60))
		}
	})
	return p
}

// baseEnv is the environment children inherit: enough to run, nothing that
// changes their behaviour by accident (no TOKENRELAY_* from the developer's
// shell).
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "HOME", "TMPDIR", "LANG", "NODE_PATH", "GORACE":
			env = append(env, kv)
		}
	}
	return env
}

// stop sends SIGTERM and waits up to 15 seconds before SIGKILL. It reports
// a data race or panic found in the output as a test failure.
func (p *process) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
	default:
		p.stopped = true
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			t.Errorf("%s: still running 15s after SIGTERM; killing pid %d", p.name, p.cmd.Process.Pid)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	out, _ := p.log.snapshot()
	for _, bad := range []string{"WARNING: DATA RACE", "panic: ", "fatal error: "} {
		if strings.Contains(out, bad) {
			t.Errorf("%s: output contains %q (see %s)", p.name, bad, p.logPath)
		}
	}
}

// tail returns the last n lines of the output.
func (p *process) tail(n int) string {
	out, _ := p.log.snapshot()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitOutput waits until the output matches re and returns the submatches.
// It fails the test when the process exits first or timeout passes.
func (p *process) waitOutput(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		out, changed := p.log.snapshot()
		if m := re.FindStringSubmatch(out); m != nil {
			return m
		}
		select {
		case <-changed:
		case <-p.exited:
			out, _ := p.log.snapshot()
			if m := re.FindStringSubmatch(out); m != nil {
				return m
			}
			t.Fatalf("%s exited (%v) before printing %q; output:\n%s", p.name, p.waitErr, re, p.tail(40))
		case <-deadline.C:
			t.Fatalf("%s did not print %q within %s; output:\n%s", p.name, re, timeout, p.tail(40))
		}
	}
}

// freePort returns a loopback port for a process that binds it later. Used
// only where a port must be known before the process that binds it starts
// (the redirect URI registered at the provider names tokenrelay's port).
//
// The ports come from 17100–17999, below the kernel's ephemeral range
// (32768–60999 by default), so no process binding port 0 meanwhile (the OP,
// the API, a relay, another test's listener) can take one between this call
// and the bind; a counter keeps this test process from handing one out
// twice. A port some other program holds is skipped.
func freePort(t *testing.T) int {
	t.Helper()
	for range freePortSpan {
		port := freePortFirst + int(nextFreePort.Add(1))%freePortSpan
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatalf("free port: none left in %d–%d", freePortFirst, freePortFirst+freePortSpan-1)
	return 0
}

const (
	freePortFirst = 17100
	freePortSpan  = 900
)

// nextFreePort starts at a random offset, so test binaries run one after
// the other do not retrace the same ports.
var nextFreePort = func() *atomic.Int64 {
	var n atomic.Int64
	n.Store(int64(mrand.IntN(freePortSpan)))
	return &n
}()

// waitReady polls url until it answers 200, the process exits, or timeout
// passes.
func waitReady(t *testing.T, p *process, url string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-tick.C:
		case <-p.exited:
			t.Fatalf("%s exited (%v) before %s was ready; output:\n%s", p.name, p.waitErr, url, p.tail(40))
		case <-ctx.Done():
			t.Fatalf("%s: %s not ready within %s (last: %s); output:\n%s", p.name, url, timeout, last, p.tail(40))
		}
	}
}

// eventually calls cond every interval until it reports true, for at most
// limit, and tells whether it did. The processes under test run on the
// real clock, so what they do is waited for, not assumed.
func eventually(limit, interval time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			return cond()
		}
	}
	return true
}

// waitUntil blocks until the wall clock passes at, failing the test if that
// is further away than limit. End-to-end tests wait for real token expiry:
// the processes under test run on the real clock.
func waitUntil(t *testing.T, at time.Time, limit time.Duration) {
	t.Helper()
	d := time.Until(at)
	if d > limit {
		t.Fatalf("waiting until %s would take %s, more than the %s allowed", at.Format(time.RFC3339Nano), d, limit)
	}
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-t.Context().Done():
		t.Fatalf("test ended while waiting until %s", at)
	}
}
