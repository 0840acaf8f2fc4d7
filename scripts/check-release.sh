#!/usr/bin/env bash
# Checks the release machinery offline, with the tools pinned in
# scripts/install-test-tools.sh (installed there when missing):
#   1. actionlint on .github/workflows (it runs shellcheck on each `run:`
#      script when shellcheck is installed; scripts/ci-install.sh installs it)
#   2. the GoReleaser version the release workflow runs is the pinned one
#   3. goreleaser check on .goreleaser.yaml (unknown keys are errors)
#   4. Dockerfile.release linted with BuildKit's rules (tools/dockerlint)
#   5. a snapshot build with GoReleaser: the host platform's binary only
#      (`goreleaser build --snapshot --single-target`), or with
#      RELEASE_CHECK_FULL=1 every platform plus archives, checksums and SBOMs
#      (`goreleaser release --snapshot --skip=docker,sign`; syft is
#      installed for it). Publishing, signing and images are always
#      skipped: they need GitHub's OIDC token, a registry and a Docker
#      daemon.
#   6. the built binary's `tokenrelay version` prints the version GoReleaser
#      stamped, and it was built with -trimpath and CGO_ENABLED=0
# The build goes to a temporary directory; the tree is left as it was.
# Needs git, jq and Go.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { printf 'check-release: %s\n' "$*"; }
fail() {
	printf 'check-release: %s\n' "$*" >&2
	exit 1
}

tools=(actionlint goreleaser)
full=${RELEASE_CHECK_FULL:-0}
if [ "$full" = 1 ]; then
	tools+=(syft)
fi
scripts/install-test-tools.sh "${tools[@]}" >/dev/null
PATH="$root/bin:$PATH"

log "actionlint $(actionlint -version | head -n 1)$(command -v shellcheck >/dev/null && echo ' (with shellcheck)')"
actionlint

pinned=$(sed -n 's/^GORELEASER_VERSION=//p' scripts/install-test-tools.sh)
in_workflow=$(sed -n 's/^ *version: *\(v[0-9.]*\) *$/\1/p' .github/workflows/release.yaml)
if [ "$in_workflow" != "$pinned" ]; then
	fail "release.yaml runs GoReleaser '$in_workflow', scripts/install-test-tools.sh pins '$pinned'"
fi

log "goreleaser check"
goreleaser check --quiet

log "Dockerfile.release"
(cd tools/dockerlint && go run . "$root/Dockerfile.release")

# GoReleaser builds the working tree as it is; its output goes to a
# temporary dist (a copy of the configuration names it). GoReleaser reads
# the git remote's URL, which a local clone may lack: the environment gives
# one to git for these commands only.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dist="$work/dist"
cp .goreleaser.yaml "$work/goreleaser.yaml"
printf '\ndist: %s\n' "$dist" >>"$work/goreleaser.yaml"
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=remote.origin.url GIT_CONFIG_VALUE_0=https://github.com/tokenrelay/tokenrelay

started=$SECONDS
if [ "$full" = 1 ]; then
	log "goreleaser release --snapshot (every platform, archives, checksums, SBOMs; no images, no signing)"
	goreleaser release --config "$work/goreleaser.yaml" --snapshot --clean --skip=docker,sign
else
	log "goreleaser build --snapshot --single-target"
	goreleaser build --config "$work/goreleaser.yaml" --snapshot --clean --single-target
fi
log "snapshot built in $((SECONDS - started))s"

version=$(jq -r .version "$dist/metadata.json")
[ -n "$version" ] && [ "$version" != null ] || fail "no version in dist/metadata.json"
host=$(go env GOOS)/$(go env GOARCH)
binaries=$(jq -r '.[] | select(.type == "Binary") | .path' "$dist/artifacts.json")
[ -n "$binaries" ] || fail "the snapshot built no binaries"
for b in $binaries; do
	info=$(go version -m "$b")
	for want in $'\tbuild\t-trimpath=true' $'\tbuild\tCGO_ENABLED=0'; do
		grep -qF -- "$want" <<<"$info" || fail "$b: built without ${want##*$'\t'}"
	done
done
bin=$(jq -r --arg os "$(go env GOOS)" --arg arch "$(go env GOARCH)" \
	'.[] | select(.type == "Binary" and .goos == $os and .goarch == $arch) | .path' "$dist/artifacts.json")
[ -n "$bin" ] || fail "no $host binary in the snapshot"
got=$("$bin" version)
want="tokenrelay v$version $(go env GOVERSION) $host"
if [ "$got" != "$want" ]; then
	fail "tokenrelay version printed '$got', want '$want'"
fi
log "tokenrelay version: $got"

if [ "$full" = 1 ]; then
	want_platforms="darwin/amd64 darwin/arm64 linux/amd64 linux/arm64"
	got_platforms=$(jq -r '[.[] | select(.type == "Binary") | "\(.goos)/\(.goarch)"] | sort | join(" ")' "$dist/artifacts.json")
	[ "$got_platforms" = "$want_platforms" ] || fail "binaries for '$got_platforms', want '$want_platforms'"
	archives=$(jq -r '.[] | select(.type == "Archive") | .name' "$dist/artifacts.json")
	[ "$(wc -l <<<"$archives")" -eq 4 ] || fail "want 4 archives, got: $archives"
	for a in $archives; do
		grep -q "  $a\$" "$dist/checksums.txt" || fail "$a is not in checksums.txt"
		sbom="$dist/$a.spdx.json"
		[ "$(jq -r .spdxVersion "$sbom")" = SPDX-2.3 ] || fail "$sbom is not an SPDX 2.3 document"
		grep -q "  $a.spdx.json\$" "$dist/checksums.txt" || fail "$a.spdx.json is not in checksums.txt"
	done
	(cd "$dist" && sha256sum --quiet -c checksums.txt) || fail "checksums.txt does not match the files"
	log "archives, SBOMs and checksums OK"
fi
log "OK"
