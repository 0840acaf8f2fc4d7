package bench

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// run collects the results of one `go test -bench` invocation; TestMain
// writes them when every benchmark has finished.
var run = &results{}

// results is the JSON document a run writes. Safe for concurrent use.
type results struct {
	mu sync.Mutex

	Machine  machine        `json:"machine"`
	Settings map[string]any `json:"settings"`
	// Load is the machine's load average (1, 5, 15 min) around each part.
	Load    map[string][2]string `json:"load_average"`
	Steady  []steadyRow          `json:"steady_state,omitempty"`
	Handler []handlerResult      `json:"handler_in_process,omitempty"`
	Storm   *stormResult         `json:"refresh_storm,omitempty"`
	Notes   []string             `json:"notes"`
}

// machine says where and on what code a run happened.
type machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Date      string `json:"date"`
	Commit    string `json:"commit"`
	Dirty     bool   `json:"dirty"`
}

// steadyRow is one target at one concurrency. Pointer fields are null
// where they do not apply (no proxy process for direct, no Redis for the
// others).
type steadyRow struct {
	Target      string  `json:"target"`
	Clients     int     `json:"clients"`
	Requests    int     `json:"requests"`
	Failed      int     `json:"failed"`
	Seconds     float64 `json:"seconds"`
	ReqPerSec   float64 `json:"req_per_s"`
	RatioToBare float64 `json:"ratio_to_bare"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	P999us      float64 `json:"p99_9_us"`
	AddedP50us  float64 `json:"added_p50_us_over_bare"`
	AddedP99us  float64 `json:"added_p99_us_over_bare"`
	// CPU seconds per 10 000 requests, per process.
	ProxyCPUPer10k    *float64 `json:"proxy_cpu_s_per_10k"`
	UpstreamCPUPer10k float64  `json:"upstream_cpu_s_per_10k"`
	RedisCPUPer10k    *float64 `json:"redis_cpu_s_per_10k"`
	LoadgenCPUPer10k  float64  `json:"loadgen_cpu_s_per_10k"`
	// Heap objects allocated per request, per process.
	ProxyAllocsPerReq    *float64 `json:"proxy_allocs_per_req"`
	AddedAllocsPerReq    float64  `json:"added_allocs_per_req_over_bare"`
	UpstreamAllocsPerReq float64  `json:"upstream_allocs_per_req"`
	RedisCmdsPerReq      *float64 `json:"redis_commands_per_req"`
	// OtherCPUCores is how many cores, on average, the rest of the machine
	// kept busy during this cell's phases: other programs on a shared
	// machine (and this run's idle processes). Near 0 on a quiet machine.
	OtherCPUCores float64 `json:"other_cpu_cores"`
}

func (r *results) empty() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Steady == nil && r.Storm == nil
}

// start records the machine and the load average before a part of the
// run.
func (r *results) start(b *testing.B) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Machine.Date == "" {
		r.Machine = describeMachine()
		r.Settings = settings()
		r.Load = map[string][2]string{}
	}
	r.Load[b.Name()] = [2]string{loadAvg(), ""}
	b.Logf("load average before %s: %s", b.Name(), loadAvg())
}

// finish records the load average after a part of the run.
func (r *results) finish(b *testing.B) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.Load[b.Name()]
	l[1] = loadAvg()
	r.Load[b.Name()] = l
	b.Logf("load average after %s: %s", b.Name(), l[1])
}

func (r *results) setSteady(rows []steadyRow, h []handlerResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Steady, r.Handler = rows, h
}

func (r *results) setStorm(s *stormResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Storm = s
}

// write saves the results as <label>.json and <label>.md in dir (for a
// label other than "latest", <label>-<date>.*).
func (r *results) write(dir, label string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = notes
	name := label
	if label != "latest" {
		name = label + "-" + time.Now().Format("2006-01-02")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := r.markdown()
	if err := os.WriteFile(filepath.Join(dir, name+".md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Printf("bench: results written to %s.{json,md}\n\n%s", filepath.Join(dir, name), md)
	return nil
}

// notes explain what the figures include; they go into every results file.
var notes = []string{
	"Every server is its own process on loopback: the upstream, the bare proxy and the OpenID Provider are re-executed copies of the test binary; tokenrelay is the real binary (go build -trimpath ./cmd/tokenrelay, CGO_ENABLED=0) with an operator's default configuration (JSON access log at info to a pipe); redis-server is a real one. The load generator (Go net/http client, closed-loop keep-alive clients) runs in the test process and shares the machine's cores with all of them.",
	"CPU s/10k: user+system CPU time of that process alone (/proc/<pid>/stat) over the measured phases, per 10 000 requests. The proxy column is the bare proxy's or tokenrelay's process; redis-server's is apart; the load generator's is getrusage of the test process.",
	"allocs/req: heap objects allocated by the proxy process per request (runtime counters of the process: /gc/heap/allocs:objects + tiny for the bare proxy, go_memstats_mallocs_total from tokenrelay's /metrics; the cost of reading them is subtracted). It includes net/http's server and transport; added allocs/req is over the bare proxy's.",
	"The upstream verifies the RS256 JWT bearer of every request (signature, iss, exp) and answers a JSON body of -bench.upstream.body bytes; this makes it a realistic resource server and keeps the proxy's relative cost from being exaggerated by a free upstream.",
	"The bare proxy is httputil.ReverseProxy with Rewrite (SetURL, SetXForwarded), a transport keeping 256 idle connections per host (as tokenrelay's) and a copy-buffer pool (as tokenrelay's).",
	"Refresh storm: two tokenrelay processes sharing one redis-server; 1 replica sends every request to the first. Sessions come from real logins through tokenrelay. The floor is the same token endpoint answering the same number of concurrent refresh requests sent straight from the load generator, in the same run.",
}

func settings() map[string]any {
	out := map[string]any{}
	flag.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "bench.") {
			out[strings.TrimPrefix(f.Name, "bench.")] = f.Value.String()
		}
	})
	return out
}

func describeMachine() machine {
	m := machine{
		CPU:       cpuModel(),
		Cores:     runtime.NumCPU(),
		GoVersion: runtime.Version(),
		OS:        runtime.GOOS + "/" + runtime.GOARCH,
		Date:      time.Now().UTC().Format(time.RFC3339),
	}
	if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		m.Dirty = len(strings.TrimSpace(string(out))) > 0
	}
	return m
}

// cpuModel is /proc/cpuinfo's first "model name".
func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
