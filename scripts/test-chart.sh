#!/usr/bin/env bash
# Tests the Helm charts (charts/tokenrelay and charts/examples/sidecar-app)
# with the Helm SDK in tools/charttest, a separate Go module:
#   - helm lint --strict for every charts/tokenrelay/ci/*.yaml and the app chart
#   - helm template for each, every manifest strictly decoded into its
#     Kubernetes API type, references between objects checked
#   - `tokenrelay check-config` on each rendered config.yaml, with the mounted
#     secret files in place (the binary is built here from cmd/tokenrelay)
#   - one test per option that changes the output, and the schema kept in
#     step with config/config.go
# Offline once the module cache holds tools/charttest's dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

go build -trimpath -o "$work/tokenrelay" ./cmd/tokenrelay

cd tools/charttest
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt needed: $unformatted" >&2
	exit 1
fi
go vet ./...
TOKENRELAY_BIN="$work/tokenrelay" go test -count=1 "$@" ./...
echo "charts OK ($root/charts)"
