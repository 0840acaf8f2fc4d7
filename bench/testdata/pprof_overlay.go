// This file is not part of tokenrelay. The benchmark harness adds it to
// package main with `go build -overlay` (bench/relay_test.go, variant
// "pprof") to profile the real binary without changing cmd/: when
// BENCH_PPROF_ADDR is set, net/http/pprof listens there, and
// /debug/bench/rates?mutex=N&block=NS sets the mutex profile fraction and
// the block profile rate (both off by default, as they cost time).

package main

import (
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
)

func init() {
	addr := os.Getenv("BENCH_PPROF_ADDR")
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/bench/rates", func(w http.ResponseWriter, r *http.Request) {
		mutex, _ := strconv.Atoi(r.URL.Query().Get("mutex"))
		block, _ := strconv.Atoi(r.URL.Query().Get("block"))
		runtime.SetMutexProfileFraction(mutex)
		runtime.SetBlockProfileRate(block)
	})
	go func() { _ = http.ListenAndServe(addr, mux) }()
}
