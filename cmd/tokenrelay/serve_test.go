package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestServeAdminEndpoints(t *testing.T) {
	ta := newTestApp()
	notReady := failedCheck("store", errors.New("session: redis ping: dial tcp 127.0.0.1:6391: connect: connection refused"))
	ready := make(chan error, 1)
	ready <- nil
	ta.ready = func(context.Context) error {
		err := <-ready
		ready <- err
		return err
	}
	path := writeFile(t, t.TempDir(), "c.yaml", minimalYAML)
	r := startServe(t, &cli{buildApp: ta.build, noSignals: true}, path)
	admin := "http://" + r.addrs["admin"]

	if code, body := get(t, "http://"+r.addrs["main"]+"/"); code != 200 || body != "hello" {
		t.Errorf("main GET / = %d %q, want 200 \"hello\"", code, body)
	}
	if code, body := get(t, admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 \"ok\\n\"", code, body)
	}
	if code, body := get(t, admin+"/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz = %d %q, want 200 \"ok\\n\"", code, body)
	}
	<-ready
	ready <- notReady
	// The answer names the failed check; the cause (an internal address)
	// goes to the log only.
	if code, body := get(t, admin+"/readyz"); code != 503 || body != "not ready: store: unavailable\n" {
		t.Errorf("/readyz when not ready = %d %q, want 503 \"not ready: store: unavailable\\n\"", code, body)
	}
	if !strings.Contains(r.stderr.String(), "127.0.0.1:6391") {
		t.Errorf("the cause of the readiness failure is not in the log:\n%s", r.stderr)
	}
	if code, body := get(t, admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz when not ready = %d %q, want 200 (liveness does not follow readiness)", code, body)
	}

	code, metrics := get(t, admin+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`tokenrelay_build_info{goversion="` + runtime.Version() + `",version="dev"} 1`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !hasLine(metrics, want) {
			t.Errorf("/metrics has no line with %q", want)
		}
	}
	problems, err := promlint.New(strings.NewReader(metrics)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if code, _ := get(t, "http://"+r.addrs["admin"]+"/nope"); code != 404 {
		t.Errorf("admin GET /nope = %d, want 404", code)
	}
}

// TestServeProviderUnavailable runs the real buildApp against a provider that
// does not answer: tokenrelay still starts, answers 503 provider_unavailable,
// and /readyz fails until the metadata loads.
func TestServeProviderUnavailable(t *testing.T) {
	path := writeFile(t, t.TempDir(), "c.yaml", minimalYAML)
	// A Kubernetes service link is no configuration and stops nothing.
	environ := []string{"TOKENRELAY_SERVICE_HOST=10.96.0.10"}
	r := startServe(t, &cli{noSignals: true, environ: environ}, path) // the real buildApp

	client := &http.Client{Timeout: testDeadline}
	resp, err := client.Get("http://" + r.addrs["main"] + "/api/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantBody := `{"error":"provider_unavailable","message":"the identity provider's metadata has not loaded yet"}` + "\n"
	if resp.StatusCode != 503 || string(body) != wantBody || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" || resp.Header.Get("Retry-After") != "5" {
		t.Errorf("before the provider loads: %d %q %q, want 503 application/json %s", resp.StatusCode, resp.Header.Get("Content-Type"), body, wantBody)
	}
	if code, body := get(t, "http://"+r.addrs["admin"]+"/readyz"); code != 503 || body != "not ready: provider: unavailable\n" {
		t.Errorf("/readyz = %d %q, want 503", code, body)
	}
	// The memory store without a secret warns at start, in the JSON log.
	if !hasLine(r.stderr.String(), `"level":"WARN","msg":"config: not set: a random secret is generated at start, and sessions end with the process","key":"session.secret"`) {
		t.Errorf("no config warning in the log:\n%s", r.stderr)
	}
	if !hasLine(r.stderr.String(), `"level":"DEBUG","msg":"config: ignored: a Kubernetes service-link variable (set enableServiceLinks: false in the pod spec)","key":"TOKENRELAY_SERVICE_HOST"`) {
		t.Errorf("no debug line for the ignored service link in the log:\n%s", r.stderr)
	}
}

// TestServeForwardAuthListener: forward_auth.listen binds a third listener
// that serves the app's forward-auth handler, and only there: the main
// listener never reaches it. A route may then have no upstream.
func TestServeForwardAuthListener(t *testing.T) {
	ta := newTestApp()
	cfg := strings.Replace(minimalYAML, `routes: [{path: /, upstream: "http://127.0.0.1:9"}]`, `routes: [{path: /api/}]`, 1) +
		"forward_auth: {listen: 127.0.0.1:0}\n"
	path := writeFile(t, t.TempDir(), "c.yaml", cfg)
	r := startServe(t, &cli{buildApp: ta.build}, path, "main", "admin", "forward-auth")
	if code, body := get(t, "http://"+r.addrs["forward-auth"]+"/.auth/verify"); code != 200 || body != "verify /.auth/verify" {
		t.Errorf("forward-auth listener: %d %q, want the forward-auth handler", code, body)
	}
	if code, body := get(t, "http://"+r.addrs["main"]+"/.auth/verify"); code != 200 || body != "hello" {
		t.Errorf("main listener: %d %q, want the main handler", code, body)
	}
	if !hasLine(r.stderr.String(), `"msg":"listening","listener":"forward-auth"`) {
		t.Errorf("no listening line for the forward-auth listener:\n%s", r.stderr)
	}
}

// TestServeSIGTERM sends the process a real SIGTERM while a request is in
// flight: /readyz fails first, the listener stops accepting, the request
// still completes, then serve exits 0 and closes the app.
func TestServeSIGTERM(t *testing.T) {
	ta := newTestApp()
	path := writeFile(t, t.TempDir(), "c.yaml", minimalYAML+"shutdown_grace: 30s\n")
	r := startServe(t, &cli{buildApp: ta.build}, path)
	main, admin := "http://"+r.addrs["main"], "http://"+r.addrs["admin"]

	type result struct {
		code int
		body string
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		client := &http.Client{Timeout: testDeadline}
		resp, err := client.Get(main + "/slow")
		if err != nil {
			inflight <- result{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- result{resp.StatusCode, string(body), err}
	}()
	select {
	case <-ta.started:
	case <-time.After(testDeadline):
		t.Fatal("the slow request did not reach the handler")
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/readyz to answer 503", func() bool { return statusOf(admin+"/readyz") == 503 })
	if code, body := get(t, admin+"/readyz"); body != "shutting down\n" {
		t.Errorf("/readyz = %d %q, want 503 \"shutting down\\n\"", code, body)
	}
	assertDrainingWith(t, r, ta, "a request was in flight")

	close(ta.release)
	res := <-inflight
	if res.err != nil || res.code != 200 || res.body != "slow done" {
		t.Errorf("in-flight request = %d %q %v, want 200 \"slow done\"", res.code, res.body, res.err)
	}
	if code := r.wait(t); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
	select {
	case <-ta.closed:
	default:
		t.Error("app not closed after shutdown")
	}
	log := r.stderr.String()
	for _, want := range []string{`"msg":"shutdown requested","delay":"0s","grace":"30s"`, `"msg":"stopped"`} {
		if !hasLine(log, want) {
			t.Errorf("log has no line with %s", want)
		}
	}
}

// TestServeShutdownWaitsForUpgrades: http.Server.Shutdown does not wait
// for hijacked connections; serve does, so a proxied WebSocket open at
// SIGTERM finishes within shutdown_grace instead of being cut at exit.
func TestServeShutdownWaitsForUpgrades(t *testing.T) {
	ta := newTestApp()
	path := writeFile(t, t.TempDir(), "c.yaml", minimalYAML+"shutdown_grace: 30s\n")
	r := startServe(t, &cli{buildApp: ta.build, noSignals: true}, path)

	conn, err := net.Dial("tcp", r.addrs["main"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade = %v %v, want 101", resp, err)
	}
	select {
	case <-ta.started:
	case <-time.After(testDeadline):
		t.Fatal("the upgraded connection did not reach the handler")
	}

	r.cancel() // as SIGTERM does
	assertDrainingWith(t, r, ta, "an upgraded connection was open")

	close(ta.release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "tunnel done" {
		t.Errorf("tunnel after release = %q %v, want \"tunnel done\"", rest, err)
	}
	if code := r.wait(t); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
}

// TestServeShutdownDelay: during shutdown_delay /readyz fails but the main
// listener still serves new requests; the listener closes only after it.
func TestServeShutdownDelay(t *testing.T) {
	ta := newTestApp()
	path := writeFile(t, t.TempDir(), "c.yaml", minimalYAML+"shutdown_delay: 1h\n")
	delays := make(chan time.Duration, 1)
	fire := make(chan time.Time)
	c := &cli{buildApp: ta.build, noSignals: true, after: func(d time.Duration) <-chan time.Time {
		delays <- d
		return fire
	}}
	r := startServe(t, c, path)
	main, admin := "http://"+r.addrs["main"], "http://"+r.addrs["admin"]

	r.cancel()
	if got := <-delays; got != time.Hour {
		t.Errorf("waited %s, want shutdown_delay 1h", got)
	}
	if code, _ := get(t, admin+"/readyz"); code != 503 {
		t.Errorf("/readyz during the delay = %d, want 503", code)
	}
	if code, body := get(t, main+"/"); code != 200 || body != "hello" {
		t.Errorf("main during the delay = %d %q, want 200 \"hello\"", code, body)
	}
	close(fire)
	if code := r.wait(t); code != 0 {
		t.Errorf("exit code = %d, want 0", code)
	}
	if _, err := net.Dial("tcp", r.addrs["main"]); err == nil {
		t.Error("main listener still accepts after shutdown")
	}
}

// TestServeGraceExceeded: a request that outlives shutdown_grace is cut
// off and serve reports it with exit code 1.
func TestServeGraceExceeded(t *testing.T) {
	ta := newTestApp()
	defer close(ta.release)
	path := writeFile(t, t.TempDir(), "c.yaml", minimalYAML+"shutdown_grace: 50ms\n")
	r := startServe(t, &cli{buildApp: ta.build, noSignals: true}, path)

	errc := make(chan error, 1)
	go func() {
		client := &http.Client{Timeout: testDeadline}
		resp, err := client.Get("http://" + r.addrs["main"] + "/slow")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	<-ta.started
	r.cancel()
	if code := r.wait(t); code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	if err := <-errc; err == nil {
		t.Error("the cut-off request succeeded")
	}
	if !hasLine(r.stderr.String(), "main server: in-flight requests cut off after shutdown_grace 50ms: context deadline exceeded") {
		t.Errorf("log does not report the cut-off:\n%s", r.stderr)
	}
}

func TestServeStartupErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()

	tests := []struct {
		name       string
		yaml       string
		wantCode   int
		wantStderr string
	}{
		{"port taken", strings.Replace(minimalYAML, "listen: 127.0.0.1:0", "listen: "+taken.Addr().String(), 1), 1,
			"main listener: listen tcp " + taken.Addr().String() + ": bind: address already in use"},
		{"invalid config", minimalYAML + "refresh: {ahead: 60}\n", 2,
			`  refresh.ahead: 60 is a bare number; write a duration with a unit, such as "60s" (line 8)`},
		{"tls files missing", minimalYAML + "tls: {mode: files, cert_file: " + dir + "/none.pem, key_file: " + dir + "/none.key}\n", 1,
			"tls: stat " + dir + "/none.pem: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, dir, "c.yaml", tt.yaml)
			stderr := &syncBuffer{}
			c := &cli{stdout: io.Discard, stderr: stderr, buildApp: newTestApp().build, noSignals: true}
			code := c.run(context.Background(), []string{"serve", "--config", path})
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("serve = %d, stderr:\n%s\nwant %d and %q", code, stderr, tt.wantCode, tt.wantStderr)
			}
		})
	}
}

// assertDrainingWith waits until the main listener refuses connections and
// checks that serve is still running, and the app still open, because of
// what (work the shutdown must wait for).
func assertDrainingWith(t *testing.T, r *running, ta *testApp, what string) {
	t.Helper()
	waitFor(t, "the main listener to refuse connections", func() bool {
		c, err := net.Dial("tcp", r.addrs["main"])
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case code := <-r.done:
		t.Fatalf("serve exited (%d) while %s", code, what)
	case <-ta.closed:
		t.Fatalf("app closed while %s", what)
	default:
	}
}
