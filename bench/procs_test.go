package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds on waiting for processes; generous, as the machines are small and
// shared.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 10 * time.Second
)

// child is a process the harness started. It is stopped by its PID when
// the benchmark ends.
type child struct {
	name   string
	cmd    *exec.Cmd
	out    *tail
	exited chan struct{} // closed when the process has exited
}

// Pid is the child's process id.
func (c *child) Pid() int { return c.cmd.Process.Pid }

// startChild runs bin with args and env (on top of a minimal environment),
// keeping the tail of its output for error messages. stdout and stderr,
// when not nil, receive the child's standard output and error instead.
func startChild(b *testing.B, name, bin string, args, env []string, stdout, stderr io.Writer) *child {
	b.Helper()
	c := &child{name: name, out: &tail{max: 32 << 10}, exited: make(chan struct{})}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Env = append(baseEnv(), env...)
	c.cmd.Stderr = c.out
	c.cmd.Stdout = c.out
	if stdout != nil {
		c.cmd.Stdout = stdout
	}
	if stderr != nil {
		c.cmd.Stderr = stderr
	}
	c.cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: a Ctrl-C reaches the harness, which stops
		// its children in order.
		Setpgid: true,
		// When the harness dies without cleaning up (a panic, a timeout,
		// SIGKILL), the kernel kills the child rather than leaving a server
		// behind. Linux sends it when the thread that started the child
		// exits; Go keeps its threads for the life of the process unless a
		// goroutine locked to one exits, which the harness never does.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := c.cmd.Start(); err != nil {
		b.Fatalf("%s: start %s: %v", name, bin, err)
	}
	go func() {
		_ = c.cmd.Wait()
		close(c.exited)
	}()
	b.Cleanup(func() { c.stop(b) })
	return c
}

// stop sends SIGTERM to the child's PID, and SIGKILL when it has not exited
// after stopTimeout.
func (c *child) stop(b *testing.B) {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
		b.Logf("%s did not stop within %s of SIGTERM; killed", c.name, stopTimeout)
	}
}

// baseEnv is what children inherit: enough to run, and nothing that
// changes tokenrelay's configuration by accident (no TOKENRELAY_*).
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "HOME", "TMPDIR", "LANG":
			env = append(env, kv)
		}
	}
	return env
}

// tail keeps the last max bytes written to it. Safe for concurrent use.
type tail struct {
	max int
	mu  sync.Mutex
	buf []byte // guarded by mu
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// role is a helper server (upstream, bare proxy, OP) running in a re-executed
// copy of this test binary.
type role struct {
	*child
	URL   string // base URL of its traffic listener
	stats string // URL of its statistics
}

// startRole runs role in a child process and waits for its ready line.
func startRole(b *testing.B, name string, env ...string) *role {
	b.Helper()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	pr, pw := io.Pipe()
	c := startChild(b, name, self, []string{"-test.run=^$"}, append(env, envRole+"="+name), pw, nil)
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), readyPrefix); ok {
				ready <- line
				break
			}
		}
		_, _ = io.Copy(c.out, pr)
	}()
	select {
	case line := <-ready:
		r := &role{child: c}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "url="); ok {
				r.URL = v
			} else if v, ok := strings.CutPrefix(f, "stats="); ok {
				r.stats = v
			}
		}
		return r
	case <-c.exited:
		b.Fatalf("%s exited before it was ready:\n%s", name, c.out)
	case <-time.After(startTimeout):
		b.Fatalf("%s not ready within %s:\n%s", name, startTimeout, c.out)
	}
	return nil
}

// Stats reads the role's counters and its allocation count ("mallocs").
func (r *role) Stats(b *testing.B) map[string]int64 {
	b.Helper()
	var out map[string]int64
	if err := getJSON(r.stats, &out); err != nil {
		b.Fatalf("%s stats: %v", r.name, err)
	}
	return out
}

func getJSON(url string, v any) error {
	res, err := http.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(v)
}

// cpuTime is the user+system CPU time a process has used so far, all its
// threads together (/proc/<pid>/stat fields 14 and 15, in clock ticks of
// 10 ms).
func cpuTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count after its ')'.
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat line")
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat line")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(utime+stime) * tick, nil
}

// machineCPU is the CPU time every core of the machine has spent running
// processes so far (/proc/stat: user, nice and system; 10 ms ticks).
// Interrupt and softirq time are left out: loopback networking, this run's
// own traffic included, is accounted there and to no process.
func machineCPU() time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3} {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// selfCPU is this process's user+system CPU time (the load generator's, as
// every server runs in a child process).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// freeAddr returns a loopback address that was free a moment ago, for a
// process whose port must be known before it starts (tokenrelay's public
// URL names its port).
func freeAddr(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// writeKey generates the provider's RSA key and writes it as PKCS#8 PEM.
func writeKey(b *testing.B, dir string) (*rsa.PrivateKey, string) {
	b.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "op-key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		b.Fatal(err)
	}
	return key, path
}

// waitOK polls url until it answers 200, c exits, or startTimeout passes.
func waitOK(b *testing.B, c *child, url string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		res, err := client.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
			last = res.Status
		} else {
			last = err.Error()
		}
		select {
		case <-tick.C:
		case <-c.exited:
			b.Fatalf("%s exited before %s answered:\n%s", c.name, url, c.out)
		case <-ctx.Done():
			b.Fatalf("%s: %s not ready within %s (last: %s):\n%s", c.name, url, startTimeout, last, c.out)
		}
	}
}
