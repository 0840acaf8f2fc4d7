#!/usr/bin/env bash
# Lints the Dockerfile with BuildKit's own rules (the ones `docker build
# --check` applies), offline: tools/dockerlint resolves base images with a
# stub instead of a registry. Also runs the linter's own tests, which prove it
# reports each broken rule. Exit status is non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cd tools/dockerlint
go vet ./...
go test -count=1 ./...
go run . "$root/Dockerfile"
