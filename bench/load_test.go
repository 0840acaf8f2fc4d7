package bench

import (
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"
)

// newLoadClient is the load generator's HTTP client for one target:
// keep-alive connections enough for every client, no compression (the
// upstream does not compress either), and a timeout so that a stuck
// request ends the phase instead of hanging it.
func newLoadClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 2048,
			IdleConnTimeout:     5 * time.Minute,
			DisableCompression:  true,
		},
	}
}

// phaseResult is what a pool of closed-loop clients saw in one phase.
type phaseResult struct {
	n, failed int
	elapsed   time.Duration
	latencies []time.Duration
}

// load runs clients closed-loop clients, each sending GET url with header
// and waiting for the whole answer before the next, until d has passed
// (and at most maxPerWorker requests each). A request fails unless it is
// answered 200.
func load(client *http.Client, url string, header http.Header, clients int, d time.Duration) phaseResult {
	start := time.Now()
	deadline := start.Add(d)
	per := make([]phaseResult, clients)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Go(func() { per[w] = loadOne(client, url, header, deadline) })
	}
	wg.Wait()
	total := phaseResult{elapsed: time.Since(start)}
	for _, r := range per {
		total.n += r.n
		total.failed += r.failed
		total.latencies = append(total.latencies, r.latencies...)
	}
	return total
}

// loadOne is one client of load. It reuses one request: the client never
// changes it, and each use ends (body read and closed) before the next.
func loadOne(client *http.Client, url string, header http.Header, deadline time.Time) phaseResult {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return phaseResult{n: 1, failed: 1}
	}
	req.Header = header.Clone()
	res := phaseResult{latencies: make([]time.Duration, 0, 16<<10)}
	for range maxPerWorker {
		t0 := time.Now()
		if !t0.Before(deadline) {
			break
		}
		ok := do(client, req)
		res.latencies = append(res.latencies, time.Since(t0))
		res.n++
		if !ok {
			res.failed++
		}
	}
	return res
}

// do sends req, reads the whole answer and reports whether it was 200.
func do(client *http.Client, req *http.Request) bool {
	res, err := client.Do(req)
	if err != nil {
		return false
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return err == nil && res.StatusCode == http.StatusOK
}

// burst sends n requests at once, made by mk(i), and returns each one's
// latency and whether it was answered 2xx. It opens the connections a
// storm needs when used as a warm-up.
func burst(client *http.Client, n int, mk func(i int) *http.Request) ([]time.Duration, []bool) {
	lat := make([]time.Duration, n)
	ok := make([]bool, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req := mk(i)
			<-start
			t0 := time.Now()
			res, err := client.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				ok[i] = err == nil && res.StatusCode/100 == 2
			}
			lat[i] = time.Since(t0)
		})
	}
	close(start)
	wg.Wait()
	return lat, ok
}

// percentile is the p-quantile (0 < p < 1) of sorted latencies, nearest
// rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

func sortUint64(d []uint64) { slices.Sort(d) }

// us is d in microseconds.
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
