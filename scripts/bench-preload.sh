#!/usr/bin/env bash
# The cost of one ioctl through libvdpad-vhost.so against the raw Unix-socket
# round trip of ../shared/anchors/uds, in the same run, alternating, medians:
#   scripts/bench-preload.sh [RUNS] [NREQ] [ANCHORS]     default 5, 50000, ../shared/anchors
# The ioctl is VHOST_GET_VRING_BASE (vmm_probe bench): an ioctl that reaches
# the daemon (get_vring), with its struct in and out, against a release vdpad.
# Then ppoll over 20 pipes with a session open, through the library and as a
# bare system call (vmm_probe poll-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5} nreq=${2:-50000} anchors=${3:-../shared/anchors}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cp -r "$anchors/uds" "$work/uds"   # the anchors are read-only: build a copy
cc -O2 -pthread -o "$work/uds_server" "$work/uds/uds_server.c"
cc -O2 -pthread -o "$work/uds_client" "$work/uds/uds_client.c"
cc -O2 -pthread -o "$work/vmm_probe" tests/preload/vmm_probe.c
swift build -c release --product vdpad >/dev/null
swift build -c release --product vdpad-run >/dev/null
make -s -C preload OUT="$PWD/.build/release"
"$work/uds_server" "$work/uds.sock" threads 2>/dev/null &
.build/release/vdpad --socket "$work/vdpad.sock" --state-dir "$work/state" 2>/dev/null &
for _ in $(seq 100); do [ -S "$work/vdpad.sock" ] && [ -S "$work/uds.sock" ] && break; sleep 0.05; done
.build/release/vdpad-cli -s "$work/vdpad.sock" dev add name bench0 mgmtdev vdpasim_net >/dev/null 2>&1 \
    || swift run -c release vdpad-cli -s "$work/vdpad.sock" dev add name bench0 mgmtdev vdpasim_net >/dev/null
raw=() lib=()
for r in $(seq "$runs"); do
    raw+=("$("$work/uds_client" "$work/uds.sock" seq "$nreq" | sed -n 's/.*mean_us=\([0-9.]*\).*/\1/p')")
    lib+=("$(.build/release/vdpad-run -s "$work/vdpad.sock" --device /dev/vhost-vdpa-0=bench0 -- \
        "$work/vmm_probe" bench /dev/vhost-vdpa-0 "$nreq" | sed -n 's/.* \([0-9]*\) ns mean.*/\1/p')")
    echo "run $r: raw uds seq mean ${raw[-1]} us, ioctl through the library $(awk "BEGIN{print ${lib[-1]}/1000}") us"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
m_raw=$(median "${raw[@]}") m_lib=$(awk "BEGIN{print $(median "${lib[@]}")/1000}")
echo "median of $runs: raw $m_raw us, ioctl $m_lib us, ratio $(awk "BEGIN{printf \"%.2f\", $m_lib/$m_raw}")x (target <= 1.3x)"
# What the library's poll and select cost a VMM's main loop while a session is open (no goal: the figure in
# docs/performance.md).
.build/release/vdpad-run -s "$work/vdpad.sock" --device /dev/vhost-vdpa-0=bench0 -- \
    "$work/vmm_probe" poll-bench /dev/vhost-vdpa-0 "$nreq"
