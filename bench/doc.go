// Package bench holds tokenrelay's performance benchmarks (DESIGN.md,
// "Performance targets"; docs/performance.md). It has no code of its own:
// the harness lives in _test.go files.
//
// `make bench` runs BenchmarkSteadyState and BenchmarkRefreshStorm once and
// writes bench/results/latest.json and latest.md (BENCH_LABEL=baseline
// writes baseline-<date>.*):
//
//   - steady state: direct calls to an upstream API, a bare
//     httputil.ReverseProxy, and tokenrelay (the real binary) with the
//     memory store and with Redis, at 1, 16 and 64 keep-alive clients, in
//     interleaved rounds; requests/s, p50/p99/p99.9, CPU seconds per 10k
//     requests and allocations per request of each process, ratios to the
//     bare proxy; plus tokenrelay's handler alone, in-process, with
//     allocations per call (BenchmarkHandler, -benchmem style);
//   - refresh storm: N sessions × M concurrent requests right after
//     expiry, through 1 and 2 replicas sharing Redis, beside the floor
//     (the token endpoint's own latency for N concurrent refreshes) and
//     the same bursts with fresh tokens.
//
// `make bench-profile` runs BenchmarkProfile: CPU, allocation, mutex and
// block profiles and an execution trace of tokenrelay at 64 clients, with
// each store, written to bench/out/profiles with text summaries.
//
// `make soak` runs BenchmarkSoak for SOAK (10m by default): the memory and
// Redis relays side by side under users who loop over a login, requests
// across refreshes and a logout, and start a login they never finish;
// goroutines, heap in use and RSS are read from /metrics and must not keep
// growing. It writes bench/results/soak-<date>.md.
//
// Every server runs in its own process: tokenrelay is built from
// cmd/tokenrelay; the upstream, the bare proxy and a small OpenID Provider
// run in re-executed copies of the test binary (TestMain, BENCH_ROLE);
// redis-server is started by internal/redistest. The load generator runs
// in the test process. Knobs are flags after -args (-bench.rounds,
// -bench.phase, -bench.clients, -bench.storm.*, ...; see main_test.go);
// -bench.hold keeps the steady-state targets up for an outside load
// generator such as wrk.
//
// Benchmarks measure; they never fail on timing. They fail when the
// behaviour they rely on breaks (and the soak when memory keeps growing): a request not answered 200 (the upstream
// verifies every token), a refresh call too many or too few in a storm, a
// refresh token presented twice. `make test` compiles this package but
// runs no benchmark.
package bench
