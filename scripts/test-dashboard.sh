#!/usr/bin/env bash
# Tests the Grafana dashboard (examples/grafana/tokenrelay.json) with
# tools/dashboardtest, a separate Go module: every panel and variable query
# is parsed with the Prometheus parser, and every metric, label and label
# value it names must be one the real tokenrelay binary (built here from
# cmd/tokenrelay) exports on /metrics. The chart's copy of the dashboard is
# checked by scripts/test-chart.sh. Offline once the module cache holds
# tools/dashboardtest's dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

go build -trimpath -o "$work/tokenrelay" ./cmd/tokenrelay

cd tools/dashboardtest
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt needed: $unformatted" >&2
	exit 1
fi
go vet ./...
TOKENRELAY_BIN="$work/tokenrelay" go test -count=1 "$@" ./...
