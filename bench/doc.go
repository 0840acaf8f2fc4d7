// Package bench holds tokenrelay's performance benchmarks (DESIGN.md,
// "Performance targets"). It has no code of its own: the benchmarks in
// proxy_bench_test.go wire the real proxy.Handler, session.Manager and
// session.RedisStore against a redis-server on loopback and compare them,
// in one run, with direct calls to the upstream and a bare
// httputil.ReverseProxy.
//
// Run them with `make bench`, or:
//
//	go test -run '^$' -bench . -benchtime 1x ./bench/
//
// Benchmarks measure; they never fail on timing. They do fail when the
// behaviour they rely on breaks (a token-endpoint call too many in the
// refresh storm, a request that did not reach the upstream with its token).
package bench
