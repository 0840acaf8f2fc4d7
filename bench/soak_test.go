package bench

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenrelay/tokenrelay/internal/redistest"
)

var (
	flagSoakDuration = flag.Duration("bench.soak.duration", 10*time.Minute, "soak: how long the load runs")
	flagSoakUsers    = flag.Int("bench.soak.users", 8, "soak: concurrent users per relay, each looping login → requests across refreshes → logout")
	flagSoakSample   = flag.Duration("bench.soak.sample", 5*time.Second, "soak: how often each relay's /metrics is read")
)

// soakAccessTTL is the access-token lifetime of the soak's logins: short,
// so that every session's first token is refreshed while it is in use
// (the benchmark's provider makes refreshed tokens live an hour).
const soakAccessTTL = 3

// soakLimits are what "flat" means: the median of the last fifth of the
// samples against the median of the second fifth (the first is warm-up).
const (
	soakHeapGrowth       = 0.25 // heap in use may grow by at most a quarter
	soakGoroutinesGrowth = 20   // goroutines may grow by at most this many
)

// soakSample is one reading of a relay's /metrics.
type soakSample struct {
	at         time.Duration
	goroutines float64
	heapInuse  float64
	rss        float64
}

// soakUserStats counts what the users did.
type soakUserStats struct {
	loops, requests, failed, abandoned atomic.Int64
}

// BenchmarkSoak (`make soak`, about -bench.soak.duration) runs tokenrelay
// with the memory store and with Redis, side by side, under a churning
// load for -bench.soak.duration: each of -bench.soak.users users per
// relay loops over a login (access tokens living 3 s), requests for 7 s
// (so each session is refreshed once), and a logout; every loop also
// starts a login it never finishes (the login state lives in the
// browser's cookie, so that must cost the server nothing). Each relay's
// goroutines, heap in use and resident memory are read every
// -bench.soak.sample from /metrics. The run fails when the median of the
// last fifth of the samples has grown beyond soakHeapGrowth or
// soakGoroutinesGrowth over the second fifth's, or when a request failed.
// A table goes to results/soak-<date>.md.
func BenchmarkSoak(b *testing.B) {
	_, keyPath := writeKey(b, b.TempDir())
	rs := redistest.Start(b, redistest.Options{})
	op := startRole(b, "op", envKey+"="+keyPath, envLatency+"=0s")
	up := startRole(b, "upstream", envKey+"="+keyPath, envIssuer+"="+op.URL, envVerify+"=1", envBody+"="+strconv.Itoa(*flagBody))
	secret := newSecret()
	relays := []*relay{
		startRelay(b, relayOptions{name: "tokenrelay-memory", store: "memory", issuer: op.URL, upstream: up.URL, secret: secret}),
		startRelay(b, relayOptions{name: "tokenrelay-redis", store: "redis", redisAddr: rs.Addr, keyPrefix: "bench:soak:",
			issuer: op.URL, upstream: up.URL, secret: secret}),
	}
	start := time.Now()
	deadline := start.Add(*flagSoakDuration)
	samples := make([][]soakSample, len(relays))
	stats := make([]soakUserStats, len(relays))
	var wg sync.WaitGroup
	for i, r := range relays {
		for u := range *flagSoakUsers {
			wg.Go(func() { soakUser(r, fmt.Sprintf("soak-%d-%d", i, u), deadline, &stats[i]) })
		}
		wg.Go(func() { samples[i] = sampleRelay(r, start, deadline, *flagSoakSample) })
	}
	wg.Wait()
	// One more reading once the load has stopped and idle connections
	// had a moment to close.
	time.Sleep(2 * time.Second)
	var report strings.Builder
	m := describeMachine()
	fmt.Fprintf(&report, "Machine: %s, %d cores, %s %s; %s; commit %.12s.\n", m.CPU, m.Cores, m.GoVersion, m.OS, m.Date, m.Commit)
	fmt.Fprintf(&report, "Soak: %s, %d users per relay, access tokens living %d s, /metrics read every %s.\n\n", *flagSoakDuration, *flagSoakUsers, soakAccessTTL, *flagSoakSample)
	report.WriteString("| relay | loops | requests | failed | abandoned logins | goroutines 2nd fifth → last fifth → idle | heap in use MiB 2nd fifth → last fifth | RSS MiB 2nd fifth → last fifth |\n|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for i, r := range relays {
		idle, err := readSoakSample(r, time.Since(start))
		if err != nil {
			b.Fatalf("%s: %v", r.name, err)
		}
		s := samples[i]
		if len(s) < 10 {
			b.Fatalf("%s: %d samples; run longer or sample more often (10 at least)", r.name, len(s))
		}
		early, late := s[len(s)/5:2*len(s)/5], s[4*len(s)/5:]
		g0, g1 := median(early, func(x soakSample) float64 { return x.goroutines }), median(late, func(x soakSample) float64 { return x.goroutines })
		h0, h1 := median(early, func(x soakSample) float64 { return x.heapInuse }), median(late, func(x soakSample) float64 { return x.heapInuse })
		r0, r1 := median(early, func(x soakSample) float64 { return x.rss }), median(late, func(x soakSample) float64 { return x.rss })
		st := &stats[i]
		fmt.Fprintf(&report, "| %s | %d | %d | %d | %d | %.0f → %.0f → %.0f | %.1f → %.1f | %.1f → %.1f |\n", r.name,
			st.loops.Load(), st.requests.Load(), st.failed.Load(), st.abandoned.Load(),
			g0, g1, idle.goroutines, h0/(1<<20), h1/(1<<20), r0/(1<<20), r1/(1<<20))
		if st.failed.Load() > 0 {
			b.Errorf("%s: %d of %d requests failed", r.name, st.failed.Load(), st.requests.Load())
		}
		if h1 > h0*(1+soakHeapGrowth) {
			b.Errorf("%s: heap in use grew from %.1f to %.1f MiB (more than %.0f%%)", r.name, h0/(1<<20), h1/(1<<20), soakHeapGrowth*100)
		}
		if g1 > g0+soakGoroutinesGrowth {
			b.Errorf("%s: goroutines grew from %.0f to %.0f", r.name, g0, g1)
		}
	}
	refreshes := op.Stats(b)["refreshes"]
	fmt.Fprintf(&report, "\nThe provider answered %d refreshes and saw %d refresh tokens reused.\n", refreshes, op.Stats(b)["reuse"])
	if reuse := op.Stats(b)["reuse"]; reuse > 0 {
		b.Errorf("%d refresh tokens were used twice", reuse)
	}
	b.Log("\n" + report.String())
	dir := outDir(*flagOut)
	name := filepath.Join(dir, "soak-"+time.Now().UTC().Format("2006-01-02")+".md")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(report.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}

// soakUser loops until deadline: a login, requests every 100 ms for 7 s,
// a logout, and a login it abandons after the redirect to the provider.
func soakUser(r *relay, sub string, deadline time.Time, st *soakUserStats) {
	client := newLoadClient()
	for loop := 0; time.Now().Before(deadline); loop++ {
		if res, err := noRedirect.Get(r.URL + "/.auth/login?return_to=/api/items"); err == nil {
			drain(res)
			st.abandoned.Add(1)
		}
		cookie, err := login(r.URL, sub+"-"+strconv.Itoa(loop), soakAccessTTL)
		if err != nil {
			st.failed.Add(1)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		until := time.Now().Add(7 * time.Second)
		for time.Now().Before(until) && time.Now().Before(deadline) {
			req, _ := http.NewRequest(http.MethodGet, r.URL+"/api/items", nil)
			req.Header.Set("Cookie", cookie)
			req.Header.Set("Accept", "application/json")
			res, err := client.Do(req)
			st.requests.Add(1)
			if err != nil || res.StatusCode != http.StatusOK {
				st.failed.Add(1)
			}
			if err == nil {
				drain(res)
			}
			time.Sleep(100 * time.Millisecond)
		}
		req, _ := http.NewRequest(http.MethodPost, r.URL+"/.auth/logout", nil)
		req.Header.Set("Cookie", cookie)
		req.Header.Set("X-CSRF", "1")
		req.Header.Set("Accept", "application/json")
		if res, err := client.Do(req); err != nil || res.StatusCode != http.StatusOK {
			st.failed.Add(1)
		} else {
			drain(res)
		}
		st.loops.Add(1)
	}
	client.CloseIdleConnections()
}

func drain(res *http.Response) {
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
}

// sampleRelay reads r's /metrics every period until deadline.
func sampleRelay(r *relay, start, deadline time.Time, period time.Duration) []soakSample {
	var out []soakSample
	tick := time.NewTicker(period)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		<-tick.C
		if s, err := readSoakSample(r, time.Since(start)); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// readSoakSample reads the three gauges the soak watches.
func readSoakSample(r *relay, at time.Duration) (soakSample, error) {
	res, err := http.Get(r.Admin + "/metrics")
	if err != nil {
		return soakSample{}, err
	}
	defer res.Body.Close()
	s := soakSample{at: at}
	want := map[string]*float64{
		"go_goroutines":                 &s.goroutines,
		"go_memstats_heap_inuse_bytes":  &s.heapInuse,
		"process_resident_memory_bytes": &s.rss,
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if p := want[name]; ok && p != nil {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				*p = f
				delete(want, name)
			}
		}
	}
	if len(want) > 0 {
		return s, fmt.Errorf("/metrics lacks %d of the soak's gauges", len(want))
	}
	return s, sc.Err()
}

func median(s []soakSample, f func(soakSample) float64) float64 {
	v := make([]float64, len(s))
	for i, x := range s {
		v[i] = f(x)
	}
	slices.Sort(v)
	return v[len(v)/2]
}
