#!/usr/bin/env bash
# A CPU profile of one Nexmark query's in-process run: `perf record` (software cpu-clock
# events, DWARF call graphs; this machine has no hardware counters) around
# `rivulet-bench in-process`, then the hottest functions by self time and by inclusive time.
#
# usage: bench/scripts/profile.sh QUERY [EVENTS]   e.g. bench/scripts/profile.sh q5-heap 300000
# (the Flink comparison's query, tumble-heap, reads its uniform bids)
set -euo pipefail
query=${1:?usage: profile.sh QUERY [EVENTS] (e.g. q5-heap)}
events=${2:-300000}
target=${CARGO_TARGET_DIR:-$HOME/.cache/rivulet/target}
bench="$target/release/rivulet-bench"
if ! command -v perf >/dev/null; then
  echo "profile: installing perf (Debian package linux-perf)" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -q linux-perf; else sudo apt-get install -y -q linux-perf; fi
fi
[ -x "$bench" ] || { echo "$bench is missing: run make build" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
perf record -q -F 999 -e cpu-clock --call-graph dwarf,16384 -o "$out/perf.data" \
    "$bench" in-process --events "$events" --queries "$query" \
    $([[ "$query" == tumble-* ]] && echo --uniform-bids)
echo "== self time (top 25) =="
perf report -i "$out/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -25 || true
echo "== inclusive time, worker functions (generation excluded) (top 25) =="
perf report -i "$out/perf.data" --children --sort sym --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | grep -v '(inlined)' | grep 'rivulet_worker' | head -25 || true
