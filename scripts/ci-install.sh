#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to run `make test`:
# Redis (server, Sentinel, CLI) for the store tests, nginx for the
# forward-auth test, make, Node.js and npm when missing, jq and shellcheck
# for the release checks, the OpenID Provider's packages from its lock file, and the pinned Go test tools
# (scripts/install-test-tools.sh, when present).
# Go itself must already be installed. Safe to run again: it installs only
# what is missing, so `make test` runs it first every time.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'ci-install: %s\n' "$*"; }

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	sudo=(sudo)
fi

if ! command -v go >/dev/null; then
	log "Go is not installed; install Go $(sed -n 's/^go //p' go.mod) or later first" >&2
	exit 1
fi

packages=()
command -v redis-server >/dev/null || packages+=(redis-server)
command -v redis-sentinel >/dev/null || packages+=(redis-sentinel)
command -v redis-cli >/dev/null || packages+=(redis-tools)
command -v make >/dev/null || packages+=(make)
# promtool checks and unit-tests the example alerting rules.
command -v promtool >/dev/null || packages+=(prometheus)
command -v git >/dev/null || packages+=(git)
# scripts/check-release.sh reads GoReleaser's JSON output with jq;
# actionlint runs shellcheck on the workflows' scripts when it is there.
command -v jq >/dev/null || packages+=(jq)
command -v shellcheck >/dev/null || packages+=(shellcheck)
# e2e/chromium_demo_test.go drives a real browser through the demo.
command -v chromium >/dev/null || packages+=(chromium)
# e2e/ingress_test.go runs a real nginx (auth_request is in nginx-light) in
# front of tokenrelay's forward-auth endpoint. apt does not start it; the
# test runs its own on a loopback port. /usr/sbin is not on every PATH.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || packages+=(nginx-light)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	packages+=(nodejs npm)
fi
if [ ${#packages[@]} -gt 0 ]; then
	log "apt-get install ${packages[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -q
	"${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
else
	log "system packages present"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
	log "warning: Node.js $(node --version) is older than 20; the OpenID Provider (oidc-provider 9) wants 20 or 22" >&2
fi

# npm ci again only when the lock file changed since the last install.
op=examples/demo/op
if [ ! -f "$op/node_modules/.package-lock.json" ] || [ "$op/package-lock.json" -nt "$op/node_modules/.package-lock.json" ]; then
	log "npm ci in $op (node $(node --version), npm $(npm --version))"
	(cd "$op" && npm ci --no-audit --no-fund)
else
	log "$op/node_modules up to date"
fi

if [ -f scripts/install-test-tools.sh ]; then
	log "scripts/install-test-tools.sh"
	bash scripts/install-test-tools.sh
fi
log "done"
