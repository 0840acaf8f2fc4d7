// Package redistest starts real Redis processes for tests: a standalone
// redis-server on a free loopback port, a Sentinel set (master, replica,
// sentinel) and a three-node Cluster. Every process runs in its own
// temporary directory and is stopped by its PID (SIGTERM) when the test, or
// the package run, ends.
//
// A package whose tests share one server per run calls Main from its
// TestMain and Shared from each test, and gives each test its own key space
// with KeyPrefix.
//
// When the Redis binaries are missing, tests are skipped with a message
// saying how to install them, except under CI=true, where they fail.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Bounds on how long the harness waits for processes. They are generous
// because the test machines are small and shared.
const (
	startTimeout = 15 * time.Second
	stopTimeout  = 15 * time.Second
	pollInterval = 10 * time.Millisecond
)

// Options shape a redis-server process.
type Options struct {
	// AppendOnly turns on the append-only file, so data written before Stop
	// is there again after Restart.
	AppendOnly bool
	// Args are extra redis-server arguments ("--maxmemory", "10mb", ...).
	Args []string
}

// Server is one Redis process (redis-server or redis-sentinel) listening on
// a loopback port. Its methods are safe for concurrent use.
type Server struct {
	// Addr is host:port, always on 127.0.0.1.
	Addr string
	// Port is the TCP port of Addr.
	Port int
	// Dir is the process's working directory (AOF, cluster and sentinel
	// config files, redis.log).
	Dir string

	bin string
	// argv builds the process arguments for the port; it may write config
	// files (redis-sentinel reads its port from one).
	argv func(port int) ([]string, error)

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// binary finds name in PATH, or skips (fails under CI=true) the test.
func binary(tb testing.TB, name string) string {
	tb.Helper()
	path, err := lookBinary(name)
	if err != nil {
		missing(tb, err)
	}
	return path
}

func lookBinary(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("redistest: %s not found in PATH (install it with apt-get install redis-server redis-sentinel redis-tools): %w", name, err)
	}
	return path, nil
}

func missing(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%v; CI=true, so Redis tests must run", err)
	}
	tb.Skipf("skipping: %v", err)
}

// Start runs a redis-server on a free loopback port in a fresh temporary
// directory and stops it when tb's test ends.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	bin := binary(tb, "redis-server")
	s, err := startServer(bin, tb.TempDir(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.stop(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

func startServer(bin, dir string, opts Options) (*Server, error) {
	appendOnly := "no"
	if opts.AppendOnly {
		appendOnly = "yes"
	}
	args := []string{
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", appendOnly,
		"--daemonize", "no",
		"--logfile", filepath.Join(dir, "redis.log"),
	}
	args = append(args, opts.Args...)
	return startOnFreePort(bin, dir, func(port int) ([]string, error) {
		return append(args[:len(args):len(args)], "--port", strconv.Itoa(port)), nil
	})
}

// startOnFreePort picks a free port and starts the process on it; when
// another program takes the port between the probe and the bind, it tries
// again with another port.
func startOnFreePort(bin, dir string, argv func(port int) ([]string, error)) (*Server, error) {
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			Port: port,
			Dir:  dir,
			bin:  bin,
			argv: argv,
		}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
		if !strings.Contains(s.Log(), "Address already in use") {
			return nil, lastErr
		}
	}
	return nil, lastErr
}

// FreePort returns a loopback TCP port that was free a moment ago, for a
// second listener of a server (such as --tls-port).
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start launches the process and waits until it answers PING.
func (s *Server) start() error {
	args, err := s.argv(s.Port)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.Dir
	out, err := os.OpenFile(filepath.Join(s.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	// If the test binary dies without running its cleanups (a timeout
	// panic), the kernel kills the server instead of leaving it behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	if err := s.waitReady(done); err != nil {
		_ = s.stop()
		return err
	}
	return nil
}

// waitReady polls PING until the process answers PONG (not LOADING), it
// exits, or startTimeout passes.
func (s *Server) waitReady(done <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			return fmt.Errorf("redistest: %s on %s exited during start:\n%s", filepath.Base(s.bin), s.Addr, s.Log())
		default:
		}
		if err := rawPing(s.Addr); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("redistest: %s on %s not ready after %s: %v\n%s", filepath.Base(s.bin), s.Addr, startTimeout, err, s.Log())
		}
		time.Sleep(pollInterval)
	}
}

// rawPing sends PING over a plain connection, so readiness checks need no
// client library state.
func rawPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// PID returns the process id, or 0 when the process is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || isClosed(s.done) {
		return 0
	}
	return s.cmd.Process.Pid
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the process and waits until it has exited (SIGKILL
// after stopTimeout). Stopping a stopped server does nothing.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if err := s.stop(); err != nil {
		tb.Fatal(err)
	}
}

func (s *Server) stop() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil || isClosed(done) {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("redistest: SIGTERM pid %d: %w", cmd.Process.Pid, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("redistest: pid %d (%s) ignored SIGTERM for %s and was killed", cmd.Process.Pid, s.Addr, stopTimeout)
}

// Restart starts the stopped process again on the same port and in the same
// directory; with Options.AppendOnly the data written before Stop is back.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if s.PID() != 0 {
		tb.Fatalf("redistest: Restart of %s, which is running", s.Addr)
	}
	if err := s.start(); err != nil {
		tb.Fatal(err)
	}
}

// Log returns what the process wrote to its log files, for failure
// messages.
func (s *Server) Log() string {
	var b strings.Builder
	for _, name := range []string{"redis.log", "stdout.log"} {
		data, err := os.ReadFile(filepath.Join(s.Dir, name))
		if err == nil && len(data) > 0 {
			fmt.Fprintf(&b, "--- %s ---\n%s", name, data)
		}
	}
	return b.String()
}

// Client returns a plain go-redis client for s, closed when the test ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// The shared server of one package run (see Shared and Main). A test
// harness is the one place where such package state is the point.
var shared struct {
	once sync.Once
	srv  *Server
	err  error
	// missing is set when the binary is not installed, so every test skips
	// (or fails under CI) with the same message.
	missing bool
}

// Shared returns the package run's one redis-server, starting it on first
// use. Tests sharing it must keep to their own keys (see KeyPrefix) and must
// not stop it. The package's TestMain must call Main, which stops it.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.once.Do(func() {
		bin, err := lookBinary("redis-server")
		if err != nil {
			shared.err, shared.missing = err, true
			return
		}
		dir, err := os.MkdirTemp("", "redistest-shared-")
		if err != nil {
			shared.err = fmt.Errorf("redistest: %w", err)
			return
		}
		shared.srv, shared.err = startServer(bin, dir, Options{})
	})
	if shared.missing {
		missing(tb, shared.err)
	}
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.srv
}

// Main runs the tests and then stops the shared server (if a test started
// it) and removes its directory. Use it as
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if s := shared.srv; s != nil {
		if err := s.stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
		_ = os.RemoveAll(s.Dir)
	}
	return code
}

var prefixSeq atomic.Uint64

// KeyPrefix returns a key prefix no other test of this run uses, readable
// in MONITOR output: "t<n>:<test name>:".
func KeyPrefix(tb testing.TB) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, tb.Name())
	return fmt.Sprintf("t%d:%s:", prefixSeq.Add(1), name)
}

// waitFor polls cond until it returns nil or timeout passes, and returns
// the last error.
func waitFor(ctx context.Context, timeout time.Duration, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval * 5)
	defer tick.Stop()
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (after %s)", err, timeout)
		case <-tick.C:
		}
	}
}
