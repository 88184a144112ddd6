#!/usr/bin/env bash
# The control queue's cost, and its isolation (issue 17), against a release vdpad:
#   1. control-command latency, kick to call (vmm_probe cvq-bench: MAC_ADDR_SET through a CVQ in ASID 1);
#   2. one ioctl's RPC round trip on another device (vmm_probe bench: GET_VRING_BASE), with that device's
#      neighbour idle, then while the neighbour's control queue is kept busy.
#   scripts/bench-cvq.sh [COMMANDS] [IOCTLS]     default 20000 and 30000
set -euo pipefail
cd "$(dirname "$0")/.."
commands=${1:-20000} ioctls=${2:-30000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cc -O2 -pthread -o "$work/vmm_probe" tests/preload/vmm_probe.c
swift build -c release --product vdpad >/dev/null
swift build -c release --product vdpad-run >/dev/null
swift build -c release --product vdpad-cli >/dev/null
make -s -C preload OUT="$PWD/.build/release"
.build/release/vdpad --socket "$work/s.sock" --state-dir "$work/state" 2>/dev/null &
for _ in $(seq 100); do [ -S "$work/s.sock" ] && break; sleep 0.05; done
cli() { .build/release/vdpad-cli -s "$work/s.sock" "$@" >/dev/null; }
cli dev add name busy mgmtdev vdpasim_net
cli dev add name calm mgmtdev vdpasim_net
run() { .build/release/vdpad-run -s "$work/s.sock" --device "/dev/vhost-vdpa-0=$1" -- "$work/vmm_probe" "$2" /dev/vhost-vdpa-0 "$3"; }
echo "1. $(run busy cvq-bench "$commands" | head -1)"
echo "2. idle neighbour:  $(run calm bench "$ioctls" | head -1)"
run busy cvq-bench $((commands * 50)) >/dev/null &
sleep 0.5
echo "   busy neighbour:  $(run calm bench "$ioctls" | head -1)"
