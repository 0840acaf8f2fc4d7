#!/usr/bin/env bash
# Installs the pinned tools the Go tests look for into ./bin (repository
# root), so a test can find them by a path relative to the module:
#
#   bin/pebble               Let's Encrypt's test ACME server (cmd/tokenrelay ACME test)
#   bin/pebble-challtestsrv  its companion DNS/challenge test server
#
# Tests that need a tool skip when it is missing, and fail instead when
# CI=true. Safe to run again: an installed tool of the pinned version is
# kept.
set -euo pipefail
cd "$(dirname "$0")/.."

PEBBLE_VERSION=v2.10.1

log() { printf 'install-test-tools: %s\n' "$*"; }

bin="$PWD/bin"
mkdir -p "$bin"
stamp="$bin/.pebble-$PEBBLE_VERSION"
if [ -x "$bin/pebble" ] && [ -x "$bin/pebble-challtestsrv" ] && [ -f "$stamp" ]; then
	log "pebble $PEBBLE_VERSION already in bin/"
	exit 0
fi
log "go install pebble and pebble-challtestsrv $PEBBLE_VERSION into bin/"
GOBIN="$bin" go install \
	"github.com/letsencrypt/pebble/v2/cmd/pebble@$PEBBLE_VERSION" \
	"github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@$PEBBLE_VERSION"
rm -f "$bin"/.pebble-*
touch "$stamp"
log "done: $("$bin/pebble" -version 2>&1 | head -n 1 || true)"
