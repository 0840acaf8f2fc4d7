package bench

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokenrelay/tokenrelay/internal/redistest"
)

// profileClients is the load of the profile run: the concurrency at which
// the throughput target is set.
const profileClients = 64

// BenchmarkProfile (`make bench-profile`) profiles tokenrelay at 64
// keep-alive clients, one session with a fresh token, with the Redis store
// and with the memory store, in the same setup as the steady state (real
// binary, JWT-verifying upstream, OIDC session from a real login). The
// binary is built with testdata/pprof_overlay.go added through
// `go build -overlay`, which serves net/http/pprof on BENCH_PPROF_ADDR.
//
// For each store it takes, each under its own load of
// -bench.profile.seconds: a CPU profile; an allocation profile (the delta
// of /debug/pprof/allocs over the window); and, with the mutex profile
// fraction at 1 and the block profile rate at 10 µs, the mutex and block
// profiles. They go to -bench.profile.dir with `go tool pprof -top`
// summaries beside them, with an execution trace and the waiting profiles
// derived from it (see trace), and the requests/s of each window is logged
// (profiling costs throughput; compare stores within this run only).
func BenchmarkProfile(b *testing.B) {
	dir := outDir(*flagProfileDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	_, keyPath := writeKey(b, b.TempDir())
	rs := redistest.Start(b, redistest.Options{})
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	b.Cleanup(func() { _ = rdb.Close() })
	op := startRole(b, "op", envKey+"="+keyPath, envLatency+"=0s")
	up := startRole(b, "upstream", envKey+"="+keyPath, envIssuer+"="+op.URL, envVerify+"=1", envBody+"="+strconv.Itoa(*flagBody))
	secret := newSecret()
	run.start(b)
	for _, store := range []string{"redis", "memory"} {
		pprofAddr := freeAddr(b)
		r := startRelay(b, relayOptions{name: "tokenrelay-" + store, variant: "pprof", store: store, redisAddr: rs.Addr,
			keyPrefix: "bench:profile:", issuer: op.URL, upstream: up.URL, secret: secret,
			env: []string{"BENCH_PPROF_ADDR=" + pprofAddr}})
		p := &profiler{b: b, dir: dir, store: store, pprof: "http://" + pprofAddr,
			url: r.URL + "/api/items", header: sessionHeader(b, r, "profile-"+store), client: newLoadClient(),
			meters: []*meter{{name: r.name, pid: r.Pid()}, {name: up.name, pid: up.Pid()}, {name: op.name, pid: op.Pid()}, redisMeter(rdb)}}
		p.header.Set("Accept", "application/json")
		load(p.client, p.url, p.header, profileClients, time.Second)
		p.take("cpu", "/debug/pprof/profile")
		p.take("allocs", "/debug/pprof/allocs")
		p.setRates(1, 10_000)
		p.take("mutex+block", "/debug/pprof/mutex", "/debug/pprof/block")
		p.setRates(0, 0)
		p.trace()
		r.stop(b)
	}
	run.finish(b)
	b.ReportMetric(0, "ns/op")
	b.Logf("profiles and summaries in %s", dir)
}

// profiler takes profiles of one tokenrelay process under load.
type profiler struct {
	b      *testing.B
	dir    string
	store  string
	pprof  string // base URL of the pprof listener
	url    string
	header http.Header
	client *http.Client
	meters []*meter // every process of the run but this one
}

// ourCPU is the CPU time this run's processes have used so far.
func (p *profiler) ourCPU() time.Duration {
	total := selfCPU()
	for _, m := range p.meters {
		total += m.read(p.b).cpu
	}
	return total
}

// take loads the relay for the profile window while fetching each of
// paths over that window, saves them and their summaries, and logs the
// requests/s of the window.
func (p *profiler) take(label string, paths ...string) {
	b := p.b
	secs := *flagProfileSeconds
	m0, o0, t0 := machineCPU(), p.ourCPU(), time.Now()
	var res phaseResult
	var wg sync.WaitGroup
	wg.Go(func() {
		res = load(p.client, p.url, p.header, profileClients, time.Duration(secs)*time.Second+time.Second)
	})
	errs := make([]error, len(paths))
	files := make([]string, len(paths))
	for i, path := range paths {
		files[i] = filepath.Join(p.dir, fmt.Sprintf("%s-%s.pb.gz", p.store, filepath.Base(path)))
		if filepath.Base(path) == "profile" {
			files[i] = filepath.Join(p.dir, p.store+"-cpu.pb.gz")
		}
		wg.Go(func() { errs[i] = fetch(p.pprof+path+"?seconds="+strconv.Itoa(secs), files[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			b.Fatalf("%s %s: %v", p.store, paths[i], err)
		}
		p.summarize(files[i])
	}
	if res.failed > 0 {
		b.Errorf("%s, %s window: %d of %d requests failed", p.store, label, res.failed, res.n)
	}
	other := max(0, machineCPU()-m0-(p.ourCPU()-o0)).Seconds() / time.Since(t0).Seconds()
	b.Logf("%s store, %s window: %.0f req/s at %d clients; other processes used %.2f cores", p.store, label,
		float64(res.n)/res.elapsed.Seconds(), profileClients, other)
}

// summarize writes `go tool pprof -top` of a profile next to it: flat and
// cumulative, and for allocations by object count.
func (p *profiler) summarize(file string) {
	base := strings.TrimSuffix(file, ".pb.gz")
	views := map[string][]string{"top": {"-top", "-nodecount=45"}, "cum": {"-top", "-cum", "-nodecount=60"}}
	if strings.HasSuffix(base, "allocs") {
		views["top"] = append(views["top"], "-sample_index=alloc_objects")
		views["cum"] = append(views["cum"], "-sample_index=alloc_objects")
	}
	for name, args := range views {
		out, err := exec.Command("go", append(append([]string{"tool", "pprof"}, args...), file)...).CombinedOutput()
		if err != nil {
			p.b.Errorf("go tool pprof %s: %v\n%s", file, err, out)
			continue
		}
		if err := os.WriteFile(base+"."+name+".txt", out, 0o644); err != nil {
			p.b.Fatal(err)
		}
	}
}

// traceSeconds is the length of the execution trace: a trace of a busy
// proxy grows by megabytes a second.
const traceSeconds = 2

// trace takes an execution trace under load and derives from it, with `go
// tool trace -pprof`, where goroutines waited: on synchronisation
// (sync), to be scheduled once runnable (sched), in system calls
// (syscall) and on the network (net).
func (p *profiler) trace() {
	b := p.b
	file := filepath.Join(p.dir, p.store+"-trace.out")
	var res phaseResult
	var wg sync.WaitGroup
	wg.Go(func() { res = load(p.client, p.url, p.header, profileClients, (traceSeconds+1)*time.Second) })
	err := fetch(p.pprof+"/debug/pprof/trace?seconds="+strconv.Itoa(traceSeconds), file)
	wg.Wait()
	if err != nil {
		b.Fatalf("%s trace: %v", p.store, err)
	}
	for _, kind := range []string{"sync", "sched", "syscall", "net"} {
		prof := filepath.Join(p.dir, fmt.Sprintf("%s-trace-%s.pb.gz", p.store, kind))
		out, err := exec.Command("go", "tool", "trace", "-pprof="+kind, file).Output()
		if err != nil {
			b.Errorf("go tool trace -pprof=%s: %v", kind, err)
			continue
		}
		if err := os.WriteFile(prof, out, 0o644); err != nil {
			b.Fatal(err)
		}
		p.summarize(prof)
	}
	b.Logf("%s store, trace window: %.0f req/s at %d clients", p.store, float64(res.n)/res.elapsed.Seconds(), profileClients)
}

// setRates sets the mutex profile fraction and block profile rate (ns).
func (p *profiler) setRates(mutex, block int) {
	res, err := http.Get(fmt.Sprintf("%s/debug/bench/rates?mutex=%d&block=%d", p.pprof, mutex, block))
	if err != nil {
		p.b.Fatal(err)
	}
	res.Body.Close()
}

// fetch saves the body of GET url to file.
func fetch(url, file string) error {
	res, err := http.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return fmt.Errorf("%s: %s", res.Status, body)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
