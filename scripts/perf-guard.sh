#!/usr/bin/env bash
# Regression guard for the RPC path and the data path on counts that do not
# depend on the machine's load: instructions (valgrind callgrind) and heap
# allocations (valgrind DHAT) per request of `vdpad-bench inproc` — the
# daemon's whole inbound path (request stream, fast parser, service, device,
# reply bytes) without the socket; (frames64) a frame looped by the data path
# on shared memory without a worker thread or a VMM; (worker64) the same
# frames served by the daemon's worker thread, kicked and answered through
# eventfds; (blk512) a sector read served by a vdpasim_blk RAM disk on shared
# memory without a worker thread or a VMM.  Each count is the difference
# between a run of N and of 2N requests, divided by N, so start-up and set-up
# cancel out.
#
#   scripts/perf-guard.sh            check against scripts/perf-budget.txt
#   scripts/perf-guard.sh --print    only print the measured counts
#
# Exit 1 when a count is over its budget: find what made the path dearer
# (callgrind_annotate on a run of `vdpad-bench inproc`), or raise the budget
# in the same change with the reason in the commit message.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "perf-guard: valgrind is missing (scripts/setup.sh installs it)" >&2; exit 1; }
swift build -c release --product vdpad-bench >/dev/null
# Counted on a copy without debug info: valgrind 3.19 gives up on the DWARF 5 forms of the C++ code
# (TOMLKit's toml++) that vdpad-bench links for `flows`, and the counts need no symbols.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
strip --strip-debug -o "$work/vdpad-bench" .build/release/vdpad-bench
bench=$work/vdpad-bench
n=4096

count() {  # count TOOL SHAPE REQUESTS -> the tool's total; says why and fails when valgrind gave none
    local tool=$1 shape=$2 requests=$3 out total
    if [ "$tool" = callgrind ]; then
        out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bench" inproc "$shape" --requests "$requests" 2>&1)
        total=$(grep -oE 'Collected : [0-9]+' <<<"$out" | grep -oE '[0-9]+' || true)
    else
        out=$(valgrind --tool=dhat --dhat-out-file=/dev/null "$bench" inproc "$shape" --requests "$requests" 2>&1)
        total=$(grep -oE 'in [0-9,]+ blocks' <<<"$out" | tr -d ', ' | grep -oE '[0-9]+' || true)
    fi
    if [ -z "$total" ]; then
        echo "perf-guard: $tool gave no count for $shape; its last words:" >&2
        tail -n 5 <<<"$out" >&2
        return 1
    fi
    echo "$total"
}

status=0
while read -r shape metric budget _; do
    case "$shape" in ''|'#'*) continue ;; esac
    tool=callgrind
    [ "$metric" = allocations ] && tool=dhat
    small=$(count "$tool" "$shape" "$n")
    large=$(count "$tool" "$shape" $((2 * n)))
    per=$(awk -v a="$small" -v b="$large" -v n="$n" 'BEGIN { v = (b - a) / n; if (v < 0 && v > -0.0005) v = 0; printf "%.3f", v }')
    if [ "${1:-}" = --print ]; then
        echo "perf-guard: $shape $metric per request = $per (budget $budget)"
    elif awk -v p="$per" -v b="$budget" 'BEGIN { exit !(p > b) }'; then
        echo "perf-guard: FAIL $shape $metric per request = $per, over the budget $budget" >&2
        status=1
    else
        echo "perf-guard: ok $shape $metric per request = $per (budget $budget)"
    fi
done <scripts/perf-budget.txt
exit $status
