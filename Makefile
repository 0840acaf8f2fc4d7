# tokenrelay — build, test and demo.
#
#   make test        what CI runs: installs what is missing (scripts/ci-install.sh),
#                    vet, all tests with the race detector
#                    (unit, Redis, end-to-end), short fuzz runs, extra checks
#   make build       bin/tokenrelay, the version stamped from git describe
#   make demo        the demo stack: OpenID Provider, sample API, tokenrelay
#   make e2e         only the end-to-end tests, verbose
#   make chaos       only the fault-injection suite (e2e TestChaos), and its table
#   make fuzz-short  each fuzz target for FUZZTIME (default 10s)
#   make checks      every scripts/check-*.sh, lint-*.sh and test-*.sh
#   make release-snapshot  what a release builds (every platform, archives,
#                    checksums, SBOMs), unsigned, into a temporary directory
#   make bench       performance: tokenrelay (Redis and memory stores) vs a
#                    bare ReverseProxy vs direct calls, and a refresh storm;
#                    results in bench/results (BENCH_LABEL=baseline keeps a
#                    dated copy); knobs: BENCH_ARGS="-bench.rounds=5 ..."
#   make bench-profile  CPU, allocation, mutex, block profiles and a trace
#                    of tokenrelay at 64 clients, in bench/out/profiles
#
# Extra checks: drop a scripts/check-<name>.sh, lint-<name>.sh or
# test-<name>.sh (bash) that exits non-zero on a finding; `make test` runs
# it. Fuzz targets are discovered with `go test -list`, so new ones are picked
# up without editing this file.

SHELL       := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

GO        ?= go
FUZZTIME  ?= 10s
# The whole suite must fit CI's budget; one package may take this long.
TEST_TIMEOUT ?= 15m

# What `tokenrelay version` prints; the Dockerfile (--build-arg VERSION) and
# .goreleaser.yaml stamp main.version the same way.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: test deps vet unit fuzz-short checks build demo e2e chaos bench bench-profile soak clean release-snapshot

test: deps vet unit fuzz-short checks

# What the tests need (Redis, promtool, Chromium, Node packages, pinned Go
# tools); installs only what is missing.
deps:
	scripts/ci-install.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# `go test -list '^Fuzz' ./...` prints each package's fuzz targets, then an
# "ok <package>" line; run every target alone for FUZZTIME.
fuzz-short:
	@list=$$($(GO) test -list '^Fuzz' ./...); \
	targets=(); pending=(); \
	while read -r first second _; do \
	  case "$$first" in \
	    Fuzz*) pending+=("$$first") ;; \
	    ok) for f in "$${pending[@]}"; do targets+=("$$second $$f"); done; pending=() ;; \
	    *) pending=() ;; \
	  esac; \
	done <<<"$$list"; \
	if [ $${#targets[@]} -eq 0 ]; then echo "fuzz-short: no fuzz targets"; exit 0; fi; \
	for t in "$${targets[@]}"; do \
	  read -r pkg fn <<<"$$t"; \
	  echo "fuzz-short: $$pkg $$fn ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	done

checks:
	@shopt -s nullglob; ran=0; \
	for s in scripts/check-*.sh scripts/lint-*.sh scripts/test-*.sh; do \
	  echo "checks: $$s"; bash "$$s"; ran=$$((ran+1)); \
	done; \
	echo "checks: $$ran script(s) passed"

build:
	mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o bin/tokenrelay ./cmd/tokenrelay

release-snapshot:
	RELEASE_CHECK_FULL=1 bash scripts/check-release.sh

demo:
	examples/demo/run.sh

e2e:
	$(GO) test -race -count=1 -v -timeout $(TEST_TIMEOUT) ./e2e/

# The fault-injection suite alone (also part of `make test`), about a minute;
# prints one table row per scenario.
chaos:
	$(GO) test -race -count=1 -v -run '^TestChaos$$' ./e2e/ | grep -E '^\s+(\||---)|^(ok|FAIL|---)'

# Needs redis-server; about 3 minutes on 2 cores (bench/doc.go says what
# runs). The benchmarks run once each (-benchtime 1x): each bounds its own
# rounds and phases.
BENCH_LABEL ?= latest
BENCH_ARGS  ?=
bench:
	$(GO) test -count=1 -timeout 30m -run '^$$' -bench '^Benchmark(SteadyState|RefreshStorm)$$' -benchtime 1x ./bench/ \
	  -args -bench.label=$(BENCH_LABEL) $(BENCH_ARGS)

# Ten minutes by default (SOAK=10m): the memory and Redis relays under a
# churning load of logins, refreshes, logouts and abandoned logins; fails
# when goroutines or the heap keep growing (see BenchmarkSoak).
SOAK ?= 10m
soak:
	$(GO) test -count=1 -timeout 60m -run '^$$' -bench '^BenchmarkSoak$$' -benchtime 1x ./bench/ \
	  -args -bench.soak.duration=$(SOAK) $(BENCH_ARGS)

# About 2 minutes; see BenchmarkProfile.
bench-profile:
	$(GO) test -count=1 -timeout 30m -run '^$$' -bench '^BenchmarkProfile$$' -benchtime 1x ./bench/ -args $(BENCH_ARGS)

clean:
	rm -rf bin
