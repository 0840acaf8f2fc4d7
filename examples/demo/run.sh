#!/usr/bin/env bash
# Runs the demo stack until Ctrl-C: the OpenID Provider (node oidc-provider),
# the sample API, and tokenrelay in front of both.
#
# Ports (environment): RELAY_PORT=8080 ADMIN_PORT=9090 OP_PORT=9000 API_PORT=3000.
# ACCESS_TTL=30 sets the access token lifetime in seconds.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

RELAY_PORT=${RELAY_PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9090}
OP_PORT=${OP_PORT:-9000}
API_PORT=${API_PORT:-3000}
ACCESS_TTL=${ACCESS_TTL:-30}

log() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "Go is not installed"
command -v node >/dev/null || die "Node.js is not installed (the OpenID Provider runs on it)"

if [ ! -d "$here/op/node_modules" ]; then
	log "installing the OpenID Provider's packages (npm ci)"
	(cd "$here/op" && npm ci --no-audit --no-fund)
fi

bin="$root/bin"
mkdir -p "$bin"
log "building tokenrelay and the sample API"
(cd "$root" && go build -o "$bin/tokenrelay" ./cmd/tokenrelay && go build -o "$bin/demo-api" ./examples/demo/api)

logs=$(mktemp -d "${TMPDIR:-/tmp}/tokenrelay-demo.XXXXXX")
pids=()
tailpid=""

stop() {
	trap - EXIT INT TERM
	[ -n "$tailpid" ] && kill "$tailpid" 2>/dev/null
	if [ ${#pids[@]} -gt 0 ]; then
		log "stopping"
		kill "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	log "logs are in $logs"
}
trap stop EXIT
trap 'exit 130' INT TERM

# http_ok HOST PORT PATH: true when GET answers 200 (bash only, no curl).
http_ok() {
	local line=""
	{ exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
	printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$3" "$1" "$2" >&3
	IFS= read -r -t 2 line <&3 || true
	exec 3<&- 3>&-
	[[ $line == HTTP/1.?" 200"* ]]
}

# wait_ready NAME PID PORT PATH: wait up to 30 s for a 200.
wait_ready() {
	local name=$1 pid=$2 port=$3 path=$4
	for _ in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || { tail -n 20 "$logs/$name.log" >&2; die "$name exited; see $logs/$name.log"; }
		http_ok 127.0.0.1 "$port" "$path" && return 0
		sleep 0.1
	done
	tail -n 20 "$logs/$name.log" >&2
	die "$name not ready on port $port after 30s; see $logs/$name.log"
}

public="http://localhost:$RELAY_PORT"
issuer="http://127.0.0.1:$OP_PORT"

(cd "$here/op" && exec node op.js \
	--port="$OP_PORT" \
	--redirect-uris="$public/.auth/callback" \
	--post-logout-redirect-uris="$public/" \
	--backchannel-logout-uri="$public/.auth/backchannel-logout" \
	--access-ttl="$ACCESS_TTL") >"$logs/op.log" 2>&1 &
pids+=($!)
wait_ready op "$!" "$OP_PORT" /.well-known/openid-configuration
log "OpenID Provider on $issuer"

"$bin/demo-api" -listen="127.0.0.1:$API_PORT" -issuer="$issuer" \
	-metrics-url="http://127.0.0.1:$ADMIN_PORT/metrics" >"$logs/api.log" 2>&1 &
pids+=($!)
wait_ready api "$!" "$API_PORT" /healthz
log "sample API on http://127.0.0.1:$API_PORT"

TOKENRELAY_LISTEN="127.0.0.1:$RELAY_PORT" \
TOKENRELAY_ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT" \
TOKENRELAY_PUBLIC_URL="$public" \
TOKENRELAY_PROVIDER_ISSUER="$issuer" \
TOKENRELAY_ROUTES_0_UPSTREAM="http://127.0.0.1:$API_PORT" \
TOKENRELAY_ROUTES_1_UPSTREAM="http://127.0.0.1:$API_PORT" \
	"$bin/tokenrelay" serve -config "$here/tokenrelay.yaml" >"$logs/tokenrelay.log" 2>&1 &
pids+=($!)
wait_ready tokenrelay "$!" "$ADMIN_PORT" /readyz
log "tokenrelay on $public (metrics on http://127.0.0.1:$ADMIN_PORT/metrics)"

echo
echo "Open $public/ and log in with any username and password"
echo "(access tokens live ${ACCESS_TTL}s; watch the page get new ones). Ctrl-C stops everything."
echo "The page's \"tokenrelay's refreshes\" table counts the refreshes live; the raw counters:"
echo "  curl -s http://127.0.0.1:$ADMIN_PORT/metrics | grep '^tokenrelay_refresh_total'"
echo

# Show tokenrelay's log, and stop everything when any child exits.
tail -n +1 -f "$logs/tokenrelay.log" &
tailpid=$!
set +e
wait -n "${pids[@]}"
status=$?
die "a process of the demo exited (status $status); see $logs"
