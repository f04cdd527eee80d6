#!/usr/bin/env bash
# screenshot.sh: open chainraft HTML pages (report.html, index.html, ...)
# from disk in headless Chromium, offline, and save a PNG of each.
#
#   scripts/screenshot.sh [-o OUTDIR] [-w WIDTHxHEIGHT] PAGE.html[#FRAGMENT]...
#
# A fragment is passed to the page (a Porcupine page opens at a zoom and a
# fault with k003.html#zoom=1&fault=0). The README's images are made with
#
#   scripts/screenshot.sh -o docs -w 1280x2600 runs/<compare>/compare.html runs/<compare>/chain/report.html
#   scripts/screenshot.sh -o docs -w 1280x420 'runs/<compare>/chain/porcupine/k000.html#zoom=1&fault=0'
#
# Background networking is off and every host name resolves to nothing, so
# a page that tried to fetch a script, style or font from elsewhere would
# render without it. The check that no request leaves the machine is the Go
# test TestPagesRenderOffline (harness/report), which reads Chromium's net
# log; this script is for looking at the pages.
set -euo pipefail

out=""
size="1280,2600"
while getopts "o:w:" opt; do
	case $opt in
	o) out=$OPTARG ;;
	w) size=${OPTARG/x/,} ;;
	*) echo "usage: $0 [-o OUTDIR] [-w WIDTHxHEIGHT] PAGE.html..." >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: $0 [-o OUTDIR] [-w WIDTHxHEIGHT] PAGE.html..." >&2; exit 2; }

browser=""
for b in chromium chromium-browser google-chrome; do
	if command -v "$b" >/dev/null 2>&1; then browser=$b; break; fi
done
[ -n "$browser" ] || { echo "$0: no chromium (apt-get install -y chromium)" >&2; exit 2; }

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

for arg in "$@"; do
	page=${arg%%#*}
	frag=""
	[ "$page" = "$arg" ] || frag="#${arg#*#}"
	[ -f "$page" ] || { echo "$0: $page: no such file" >&2; exit 2; }
	abs=$(cd "$(dirname "$page")" && pwd)/$(basename "$page")
	dir=${out:-$(dirname "$abs")}
	mkdir -p "$dir"
	name=$(basename "$(dirname "$abs")")-$(basename "$abs" .html).png
	png=$dir/$name
	"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
		--disable-component-update --disable-sync --no-first-run --disable-dev-shm-usage \
		--host-resolver-rules="MAP * ~NOTFOUND" --hide-scrollbars \
		--user-data-dir="$profile" --window-size="$size" --screenshot="$png" \
		"file://$abs$frag" >/dev/null 2>&1
	echo "$png"
done
