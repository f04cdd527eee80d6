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
#
# SHARD=i/N runs shard i of N of the matrix (each with the whole budget, on a
# runner of its own): its runs land in the same runs/nightly-<date>/ under
# runs-shard-i-of-N.jsonl, and nothing is summed up. Once every shard's
# directory has been copied into one runs/nightly-<date>/, `nightly.sh merge`
# (make nightly-merge) sums the night up as an unsharded night ends: trend,
# trend page, README table and the night's index.html. NIGHTLY_DATE (UTC,
# YYYY-MM-DD) names the night, so that shards that start either side of
# midnight still share one.
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

date="${NIGHTLY_DATE:-$(date -u +%Y-%m-%d)}"
if [[ ! "$date" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]]; then
	echo "nightly: NIGHTLY_DATE=$date: want YYYY-MM-DD" >&2
	exit 2
fi
dir="$PWD/runs/nightly-$date"
trend="$PWD/runs/nightly"
mkdir -p "$dir" "$trend"
commit="$(git describe --tags --always --dirty 2>/dev/null || echo unknown)"

mode="${1:-run}"
shard="${SHARD:-}"
case "$mode" in
run)
	test=TestNightly
	log="$dir/nightly.log"
	if [[ -n "$shard" ]]; then
		if [[ ! "$shard" =~ ^([0-9]+)/([0-9]+)$ ]] || ((BASH_REMATCH[1] < 1 || BASH_REMATCH[1] > BASH_REMATCH[2])); then
			echo "nightly: SHARD=$shard: want i/N with 1 <= i <= N, e.g. 2/4" >&2
			exit 2
		fi
		log="$dir/nightly-shard-${BASH_REMATCH[1]}-of-${BASH_REMATCH[2]}.log"
		echo "nightly: shard $shard, budget $budget, runs in $dir (make nightly-merge sums the shards up)"
	else
		echo "nightly: budget $budget, runs in $dir, trend in $trend/trend.html"
	fi
	;;
merge)
	test=TestNightlyMerge
	log="$dir/nightly-merge.log"
	timeout_s=600
	echo "nightly: merging the shards in $dir, trend in $trend/trend.html"
	;;
*)
	echo "nightly: unknown mode $mode: want run (default) or merge" >&2
	exit 2
	;;
esac
status=0
CHAINRAFT_NIGHTLY_DIR="$dir" \
	CHAINRAFT_NIGHTLY_SHARD="$shard" \
	CHAINRAFT_NIGHTLY_MERGE="$([[ "$mode" == merge ]] && echo 1 || true)" \
	CHAINRAFT_NIGHTLY_DATE="$date" \
	CHAINRAFT_NIGHTLY_TREND="$trend" \
	CHAINRAFT_NIGHTLY_README="$PWD/README.md" \
	CHAINRAFT_NIGHTLY_COMMIT="$commit" \
	NIGHTLY_BUDGET="$budget" \
	GOTRACEBACK=all \
	go test -count=1 -timeout "${timeout_s}s" -run "^$test\$" -v ./chainrafttest/ 2>&1 | tee -a "$log" || status=$?
if [[ -f "$trend/trend.html" ]]; then
	echo "nightly: trend page $trend/trend.html"
fi
exit "$status"
