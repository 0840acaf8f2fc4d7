# tokenrelay — build, test and demo.
#
#   make test        what CI runs: installs what is missing (scripts/ci-install.sh),
#                    vet, all tests with the race detector
#                    (unit, Redis, end-to-end), short fuzz runs, extra checks
#   make build       bin/tokenrelay
#   make demo        the demo stack: OpenID Provider, sample API, tokenrelay
#   make e2e         only the end-to-end tests, verbose
#   make fuzz-short  each fuzz target for FUZZTIME (default 10s)
#   make checks      every scripts/check-*.sh, lint-*.sh and test-*.sh
#   make bench       performance: tokenrelay (Redis and memory stores) vs a
#                    bare ReverseProxy vs direct calls, and a refresh storm
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

.PHONY: test deps vet unit fuzz-short checks build demo e2e bench clean

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
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/tokenrelay ./cmd/tokenrelay

demo:
	examples/demo/run.sh

e2e:
	$(GO) test -race -count=1 -v -timeout $(TEST_TIMEOUT) ./e2e/

# Needs redis-server; about 30 s. Knobs after -args: -perf.rounds, -perf.workers, …
bench:
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./bench/

clean:
	rm -rf bin
