#!/usr/bin/env bash
# Checks and unit-tests the example Prometheus alerting rules with promtool
# (Debian: apt-get install prometheus; this script installs nothing).
#   1. promtool check rules  — syntax, PromQL, templates
#   2. promtool test rules   — every alert firing and not firing
#   3. mutation check        — each alert's rule, weakened or broken on
#      purpose, must make the unit tests fail, so no test passes vacuously
set -euo pipefail
cd "$(dirname "$0")/../examples/prometheus"

if ! command -v promtool >/dev/null; then
	echo "promtool not found (apt-get install prometheus)" >&2
	exit 1
fi

promtool check rules tokenrelay-alerts.yaml
promtool test rules tokenrelay-alerts_test.yaml

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp tokenrelay-alerts_test.yaml "$work/"

# Each line: a sed expression that changes exactly one alert.
mutations=(
	's/  > 0\.10$/  > 0.20/'                                         # RefreshFailing threshold
	's/  > 0\.50$/  > 0.90/'                                         # RefreshFailingCritical threshold
	's/  > 0\.20$/  > 0.40/'                                         # RefreshRejectedSpike share
	's/{result="rejected"}\[10m\])) > 0\.02$/{result="rejected"}[10m])) > 0/' # RefreshRejectedSpike floor
	's/rate(tokenrelay_store_errors_total\[5m\])) > 0$/rate(tokenrelay_store_errors_total[5m])) >= 0/' # StoreErrors
	's/up{job=~"\.\*tokenrelay\.\*"} == 0/up == 0/'                    # TargetDown job filter
	's/kube_pod_init_container_status_ready{/kube_pod_init_container_status_readyx{/' # NotReady native sidecar
	's/{code=~"5\.\."}/{code=~"[45].."}/'                             # High5xxRate
	's/(tokenrelay_provider_client_rejected) > 0$/(tokenrelay_provider_client_rejected) > 1/' # ProviderRejectsClient
	's/^        for: 10m$/        for: 1m/'                           # every 10m hold-down
)
failed=0
for m in "${mutations[@]}"; do
	sed -e "$m" tokenrelay-alerts.yaml >"$work/tokenrelay-alerts.yaml"
	if cmp -s tokenrelay-alerts.yaml "$work/tokenrelay-alerts.yaml"; then
		echo "mutation did not apply: $m" >&2
		failed=1
		continue
	fi
	if (cd "$work" && promtool test rules tokenrelay-alerts_test.yaml >/dev/null 2>&1); then
		echo "tests still pass with mutation: $m" >&2
		failed=1
	fi
done
if [ "$failed" -ne 0 ]; then
	exit 1
fi
echo "mutation check: all ${#mutations[@]} mutations caught"
