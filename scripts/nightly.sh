#!/usr/bin/env bash
# make nightly: the nightly matrix — both stores × fault mixes × seeds, plus
# the seeded bugs — for a time budget (NIGHTLY_BUDGET, a Go duration,
# default 10m; NIGHTLY_RUN_TIME is one run's workload time, default 10s).
#
# Every run is kept under runs/nightly-<date>/ (runs.jsonl lists them,
# night.json sums the night up); the night is appended to
# runs/nightly/trend.jsonl, the self-contained trend page
# runs/nightly/trend.html is redrawn, and the README's "What it catches"
# table is rewritten. The work is chainrafttest.TestNightly; this script gives it
# its environment and a go test timeout derived from the budget.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"

budget="${NIGHTLY_BUDGET:-10m}"
# Seconds in a Go duration made of h, m and s parts ("1h30m", "90s", "10m").
seconds() {
	local d="$1" total=0 n unit
	while [[ "$d" =~ ^([0-9]+)(h|m|s)(.*)$ ]]; do
		n="${BASH_REMATCH[1]}" unit="${BASH_REMATCH[2]}" d="${BASH_REMATCH[3]}"
		case "$unit" in h) total=$((total + n * 3600)) ;; m) total=$((total + n * 60)) ;; s) total=$((total + n)) ;; esac
	done
	if [[ -n "$d" || "$total" -eq 0 ]]; then
		echo "nightly: NIGHTLY_BUDGET=$1: want a duration like 10m, 1h30m or 600s" >&2
		exit 2
	fi
	echo "$total"
}
budget_s="$(seconds "$budget")"
# The last run may start just inside the budget and a check may take its
# full budget: allow ten minutes past it before go test calls it hung.
timeout_s=$((budget_s + 600))

date="$(date -u +%Y-%m-%d)"
dir="$PWD/runs/nightly-$date"
trend="$PWD/runs/nightly"
mkdir -p "$dir" "$trend"
commit="$(git describe --tags --always --dirty 2>/dev/null || echo unknown)"

echo "nightly: budget $budget, runs in $dir, trend in $trend/trend.html"
status=0
CHAINRAFT_NIGHTLY_DIR="$dir" \
	CHAINRAFT_NIGHTLY_TREND="$trend" \
	CHAINRAFT_NIGHTLY_README="$PWD/README.md" \
	CHAINRAFT_NIGHTLY_COMMIT="$commit" \
	NIGHTLY_BUDGET="$budget" \
	GOTRACEBACK=all \
	go test -count=1 -timeout "${timeout_s}s" -run '^TestNightly$' -v ./chainrafttest/ 2>&1 | tee -a "$dir/nightly.log" || status=$?
if [[ -f "$trend/trend.html" ]]; then
	echo "nightly: trend page $trend/trend.html"
fi
exit "$status"
