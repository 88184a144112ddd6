#!/usr/bin/env bash
# The data path's throughput (issue 21): `vdpad-bench datapath` against a release vdpad, with the
# VMM-side driver (preload/dpdriver.c) under the preload library, beside the driver's in-process limit.
#   scripts/bench-datapath.sh [SECONDS] [--json] [--rounds N] [--workloads W,...] [--goals]
# default 2 seconds per run, 3 interleaved rounds (every figure is the median of its rounds);
# --goals judges issue 21's goals on those medians (exit status 1 when one is not met)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-2}
shift || true
swift build -c release --product vdpad >/dev/null
swift build -c release --product vdpad-run >/dev/null
swift build -c release --product vdpad-bench >/dev/null
make -s -C preload OUT="$PWD/.build/release"
exec .build/release/vdpad-bench datapath --seconds "$seconds" "$@"
