#!/usr/bin/env bash
# Installs pinned Go tools into ./bin (repository root), so tests and
# scripts find them by a path relative to the module:
#
#   bin/pebble               Let's Encrypt's test ACME server (cmd/tokenrelay ACME test)
#   bin/pebble-challtestsrv  its companion DNS/challenge test server
#   bin/actionlint           lints .github/workflows (scripts/check-release.sh)
#   bin/goreleaser           checks .goreleaser.yaml, snapshot builds (scripts/check-release.sh)
#   bin/caddy                a real Caddy for the forward-auth end-to-end test
#                            (e2e/ingress_test.go); built here so it stays out of
#                            the root go.mod
#
# and, only when named on the command line (the release workflow and
# RELEASE_CHECK_FULL=1 need them, `make test` does not):
#
#   bin/syft                 SBOMs for GoReleaser's `sboms`
#   bin/helm                 packages and pushes the chart (release workflow)
#
#   scripts/install-test-tools.sh              the default set
#   scripts/install-test-tools.sh syft helm    just those
#
# Tests that need a tool skip when it is missing, and fail instead when
# CI=true. Safe to run again: an installed tool of the pinned version is
# kept (a stamp file bin/.<tool>-<version> records what was installed).
set -euo pipefail
cd "$(dirname "$0")/.."

PEBBLE_VERSION=v2.10.1
ACTIONLINT_VERSION=v1.7.12
# Also the version .github/workflows/release.yaml runs; check-release.sh
# fails when the two differ.
GORELEASER_VERSION=v2.17.0
SYFT_VERSION=v1.57.2
HELM_VERSION=v3.22.0
# forward_auth is built in; examples/forward-auth/Caddyfile is written for it.
CADDY_VERSION=v2.11.9

log() { printf 'install-test-tools: %s\n' "$*"; }

bin="$PWD/bin"
mkdir -p "$bin"

# install NAME VERSION PACKAGE... installs the packages at VERSION unless
# the stamp says this version is there already.
install() {
	local name=$1 version=$2
	shift 2
	local stamp="$bin/.$name-$version" present=1 p b
	for p in "$@"; do
		# go install names a binary after the last path element that is
		# not a major-version suffix (.../goreleaser/v2 -> goreleaser).
		b=${p##*/}
		if [[ $b =~ ^v[0-9]+$ ]]; then
			b=${p%/*}
			b=${b##*/}
		fi
		[ -x "$bin/$b" ] || present=0
	done
	if [ -f "$stamp" ] && [ "$present" -eq 1 ]; then
		log "$name $version already in bin/"
		return
	fi
	log "go install $name $version into bin/"
	local pkgs=()
	for p in "$@"; do
		pkgs+=("$p@$version")
	done
	GOBIN="$bin" go install "${pkgs[@]}"
	rm -f "$bin/.$name-"*
	touch "$stamp"
}

tool() {
	case "$1" in
	pebble)
		install pebble "$PEBBLE_VERSION" \
			github.com/letsencrypt/pebble/v2/cmd/pebble \
			github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv
		;;
	actionlint) install actionlint "$ACTIONLINT_VERSION" github.com/rhysd/actionlint/cmd/actionlint ;;
	goreleaser) install goreleaser "$GORELEASER_VERSION" github.com/goreleaser/goreleaser/v2 ;;
	syft) install syft "$SYFT_VERSION" github.com/anchore/syft/cmd/syft ;;
	helm) install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm ;;
	caddy) install caddy "$CADDY_VERSION" github.com/caddyserver/caddy/v2/cmd/caddy ;;
	*)
		log "unknown tool: $1" >&2
		exit 2
		;;
	esac
}

if [ $# -eq 0 ]; then
	set -- pebble actionlint goreleaser caddy
fi
for t in "$@"; do
	tool "$t"
done
log "done"
