#!/usr/bin/env bash
# Checks the forward-auth examples no test can run here (no Envoy binary, no
# Kubernetes cluster) with tools/forwardauthtest, a separate Go module:
# examples/forward-auth/envoy.yaml is decoded into Envoy's own configuration
# types (go-control-plane) and validated with Envoy's validation rules, and
# ingress-nginx.yaml is decoded strictly into Kubernetes Ingress objects,
# the Traefik examples are read for their ForwardAuth settings; then the
# settings tokenrelay depends on are asserted (docs/forward-auth.md).
# The nginx and Caddy examples are run for real by e2e/forward_auth_test.go.
# Offline once the module cache holds tools/forwardauthtest's dependencies.
set -euo pipefail
cd "$(dirname "$0")/../tools/forwardauthtest"

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt needed: $unformatted" >&2
	exit 1
fi
go vet ./...
go test -count=1 "$@" ./...
echo "forward-auth examples OK"
