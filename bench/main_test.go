package bench

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Knobs of `make bench`. The defaults keep a run at about two minutes on a
// 2-core machine; every load loop is bounded in time (the phase) and in
// count (maxPerWorker).
var (
	flagRounds  = flag.Int("bench.rounds", 3, "steady state: rounds; each loads every target once per concurrency, in a rotated order")
	flagPhase   = flag.Duration("bench.phase", 2*time.Second, "steady state: how long one target is loaded in one round")
	flagClients = flag.String("bench.clients", "1,16,64", "steady state: concurrent keep-alive clients, comma-separated")
	flagVerify  = flag.Bool("bench.upstream.verify", true, "the upstream verifies the RS256 JWT bearer token on every request (false: it answers without looking)")
	flagBody    = flag.Int("bench.upstream.body", 1024, "bytes of JSON the upstream answers")
	flagPolicy  = flag.Bool("bench.policy", true, "steady state: also measure "+tMemoryPolicy+", the memory relay's route with a 3-rule CEL policy and the default identity headers, beside its plain route")

	flagStormSessions = flag.Int("bench.storm.sessions", 50, "refresh storm: sessions whose access token has just expired")
	flagStormRequests = flag.Int("bench.storm.requests", 20, "refresh storm: concurrent requests per session")
	flagStormRounds   = flag.Int("bench.storm.rounds", 5, "refresh storm: rounds; each runs the floor, the storms and their fresh-token references in a rotated order")
	flagStormLatency  = flag.Duration("bench.storm.latency", 20*time.Millisecond, "refresh storm: time the token endpoint spends per call on top of its real work (a provider's database write)")

	flagLogLevel = flag.String("bench.relay.loglevel", "info", "tokenrelay's log.level (info writes the access log; warn turns it off)")
	flagRelayLog = flag.String("bench.relay.log", "pipe", "where tokenrelay's log goes: pipe (drained by the harness, as a container runtime reads stderr), file or null")
	flagAgainst  = flag.String("bench.against", "", "steady state: path of another tokenrelay binary (say, main's) to measure beside this tree's, in the same rounds, as against-memory and against-redis")
	flagHold     = flag.Duration("bench.hold", 0, "steady state: start everything, print each target's URL and headers (as wrk arguments), keep them up this long for an outside load generator, and measure nothing")

	flagOut   = flag.String("bench.out", "results", "directory the results are written to (relative to bench/)")
	flagLabel = flag.String("bench.label", "latest", `results file name: "latest" writes latest.json and latest.md; any other label writes <label>-<date>.json and .md`)

	flagProfileDir     = flag.String("bench.profile.dir", "out/profiles", "profile run: where the profiles and their summaries go (relative to bench/)")
	flagProfileSeconds = flag.Int("bench.profile.seconds", 10, "profile run: seconds each profile covers")
)

// maxPerWorker bounds one client's requests in one phase, whatever the
// phase length.
const maxPerWorker = 2_000_000

// TestMain runs the benchmarks, or, when the harness re-executes this test
// binary with BENCH_ROLE set, one of the helper servers (upstream, bare
// proxy, OpenID Provider) in a process of its own.
func TestMain(m *testing.M) {
	if role := os.Getenv(envRole); role != "" {
		if err := runRole(role); err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", role, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	removeBinaries()
	if code == 0 && !run.empty() {
		if err := run.write(outDir(*flagOut), *flagLabel); err != nil {
			fmt.Fprintf(os.Stderr, "bench: writing results: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// clientCounts parses -bench.clients.
func clientCounts() ([]int, error) {
	var out []int
	for _, f := range strings.Split(*flagClients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("-bench.clients: %q is not a count between 1 and 1024", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// outDir resolves a directory given relative to bench/ (go test runs in
// the package directory).
func outDir(dir string) string {
	if filepath.IsAbs(dir) {
		return dir
	}
	wd, err := os.Getwd()
	if err != nil {
		return dir
	}
	return filepath.Join(wd, dir)
}
